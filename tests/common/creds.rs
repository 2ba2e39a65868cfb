//! Proxy credentials made at test time: a CA, sluice's server certificate,
//! client certificates with URI (SPIFFE) and DNS SANs, and the SHA-256 of a
//! bearer token as the rules' `xds_access` names it.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

/// A test CA.
pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and key in PEM.
pub struct Pair {
    pub cert: String,
    pub key: String,
}

pub fn mk_ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca cert");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// sluice's server certificate: for 127.0.0.1 (Envoy checks the IP SAN)
/// and localhost.
pub fn mk_server(ca: &Ca) -> Pair {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let cert = params.signed_by(&key, &ca.issuer).expect("server cert");
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A proxy's client certificate whose only SAN is the URI `spiffe`.
pub fn mk_client(ca: &Ca, spiffe: &str) -> Pair {
    mk_client_sans(ca, &[spiffe], &[])
}

/// A proxy's client certificate with these URI SANs and DNS SANs.
pub fn mk_client_sans(ca: &Ca, uris: &[&str], dns: &[&str]) -> Pair {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    for uri in uris {
        let san = SanType::URI((*uri).try_into().expect("uri san"));
        params.subject_alt_names.push(san);
    }
    for name in dns {
        let san = SanType::DnsName((*name).try_into().expect("dns san"));
        params.subject_alt_names.push(san);
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("client cert");
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A client certificate for `spiffe` that expires `valid_for` from now.
pub fn mk_client_expiring(ca: &Ca, spiffe: &str, valid_for: std::time::Duration) -> Pair {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .subject_alt_names
        .push(SanType::URI(spiffe.try_into().expect("uri san")));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + valid_for;
    let cert = params.signed_by(&key, &ca.issuer).expect("client cert");
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// The SHA-256 of `t`, as the rules name a token.
pub fn sha256_hex(t: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(t.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
