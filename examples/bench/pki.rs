//! `--mtls`: a throwaway CA, sluice's server certificate (SANs 127.0.0.1
//! and localhost) and one client certificate the whole fleet presents
//! (URI SAN [`IDENTITY`]), made at start and written to the run's work
//! directory. sluice gets `--xds-tls-cert/-key --xds-client-ca` and an
//! `xds_access` entry letting that identity join the fleet's group; each
//! simulated proxy then does its own TLS handshake. The floor stays
//! plaintext: it is the bound of the transport without TLS.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

/// The fleet's identity (its client certificate's only SAN).
pub const IDENTITY: &str = "spiffe://bench.test/fleet";
/// The name sluice's certificate is checked against.
pub const SERVER_NAME: &str = "localhost";

/// The PEM files of one run.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// `--xds-tls-ticket-key` (`bench --ticket-key`).
    pub ticket_key: Option<PathBuf>,
}

impl Pki {
    /// Makes the CA and both certificates (and, with `ticket_key`, a
    /// session ticket key) and writes them under `dir`.
    pub fn write(dir: &Path, ticket_key: bool) -> anyhow::Result<Pki> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bench CA");
        let ca_pem = ca_params.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let server_pem = server.signed_by(&server_key, &issuer)?.pem();

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .subject_alt_names
            .push(SanType::URI(IDENTITY.try_into().context("URI SAN")?));
        let client_pem = client.signed_by(&client_key, &issuer)?.pem();

        let file = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| p.display().to_string())?;
            Ok(p)
        };
        Ok(Pki {
            ca: file("ca.pem", &ca_pem)?,
            server_cert: file("sluice.pem", &server_pem)?,
            server_key: file("sluice.key", &server_key.serialize_pem())?,
            client_cert: file("fleet.pem", &client_pem)?,
            client_key: file("fleet.key", &client_key.serialize_pem())?,
            ticket_key: if ticket_key {
                // 80 bytes, as `openssl rand 80`; the key only has to be the
                // same across the restart, so a fresh one per run.
                let p = dir.join("ticket.key");
                let mut key = [0u8; 80];
                rustls::crypto::ring::default_provider()
                    .secure_random
                    .fill(&mut key)
                    .map_err(|_| anyhow::anyhow!("no system randomness"))?;
                std::fs::write(&p, key).with_context(|| p.display().to_string())?;
                Some(p)
            } else {
                None
            },
        })
    }

    /// `sluice serve`'s flags: TLS on the xDS port, client certificates
    /// required.
    pub fn serve_args(&self) -> Vec<String> {
        [
            ("--xds-tls-cert", &self.server_cert),
            ("--xds-tls-key", &self.server_key),
            ("--xds-client-ca", &self.ca),
        ]
        .into_iter()
        .chain(
            self.ticket_key
                .as_ref()
                .map(|k| ("--xds-tls-ticket-key", k)),
        )
        .flat_map(|(flag, p)| [flag.to_string(), p.display().to_string()])
        .collect()
    }

    /// `bench fleet`'s flags (read by [`client_tls`]).
    pub fn fleet_args(&self) -> Vec<String> {
        [
            ("--xds-ca", &self.ca),
            ("--client-cert", &self.client_cert),
            ("--client-key", &self.client_key),
        ]
        .into_iter()
        .flat_map(|(flag, p)| [flag.to_string(), p.display().to_string()])
        .collect()
    }
}

/// The rules' `xds_access`: the fleet's identity may join `group`.
pub fn access_rules(group: &str) -> String {
    format!("xds_access:\n  - identity: \"{IDENTITY}\"\n    groups: [{group}]\n")
}

/// The fleet's TLS client from `--xds-ca`, `--client-cert`, `--client-key`
/// (all or none).
pub fn client_tls(args: &[String]) -> anyhow::Result<Option<sluice::sim::xds_tls::ClientTls>> {
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(Path::new)
    };
    match (get("--xds-ca"), get("--client-cert"), get("--client-key")) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => Ok(Some(sluice::sim::xds_tls::ClientTls::from_files(
            ca,
            Some((cert, key)),
            SERVER_NAME,
        )?)),
        _ => anyhow::bail!("fleet: --xds-ca, --client-cert and --client-key go together"),
    }
}
