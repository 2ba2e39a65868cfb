//! Listener certificates: the PEM files a listener's `tls` names → checked
//! [`CertPair`]s, at load and on every poll of the rules watcher.
//!
//! This is the I/O edge for certificates. [`load`] reads every TLS
//! listener's files (relative to the rules file's directory) and fills
//! [`ListenerTls::pair`], reporting a bad file as a diagnostic at the rules
//! line that names it; compile then needs no I/O. [`parse_pair`] is the
//! check itself: both files parse as PEM, the certificates as X.509, and
//! the key is of a type Envoy 1.40 serves and belongs to the leaf
//! certificate (rustls compares the key's public half with the
//! certificate's; see `x509` for P-521), so sluice never pushes a secret
//! Envoy would reject. It also reads the leaf's notAfter: an expiring
//! certificate is warned about ([`expiry_warning`]) but served.
//!
//! Rotation ([`Rotation`]) is decided without I/O: the watcher reads the
//! files and reports what it saw; a change is acted on once the same
//! content is seen on two polls in a row, so a rotation that renames the
//! certificate and then the key is not reported as a mismatched pair in
//! between. A rejected pair is logged once; the previous one stays served.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::model::{CertPair, Config, ListenerTls, Origin, PemFile};
use crate::rules::{Diagnostic, RulesError};

mod x509;

/// How long before its notAfter a served certificate is warned about.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Why a certificate/key pair was refused. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {file}: {reason}")]
    Read {
        part: Part,
        file: String,
        reason: String,
    },
    #[error("{file}: no PEM certificate (-----BEGIN CERTIFICATE-----) found")]
    NoCertificate { file: String },
    #[error("{file}: no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) found")]
    NoKey { file: String },
    #[error("{file}: malformed PEM: {reason}")]
    BadPem {
        part: Part,
        file: String,
        reason: String,
    },
    #[error("{file}: not a valid X.509 certificate: {reason}")]
    BadCertificate { file: String, reason: String },
    #[error("{file}: unusable private key: {reason}")]
    BadKey { file: String, reason: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
}

/// Which of the two files an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
}

/// What the watcher found at a listener's two paths on one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Files {
        cert: Vec<u8>,
        key: Vec<u8>,
    },
    /// A file could not be read (the message says which and why).
    Unreadable(String),
}

/// What to do about one listener after a poll.
#[derive(Debug)]
pub enum Verdict {
    /// The files hold what is served.
    Unchanged,
    /// New content, not yet seen twice in a row: look again next poll.
    Settling,
    /// New content, checked: serve it.
    Accept(CertPair),
    /// New content that fails the check (reported once per content): why.
    Reject(String),
    /// The same rejected content as before: already reported.
    StillRejected,
}

/// Per-listener memory of the rotation watcher (see the module doc).
#[derive(Debug, Default)]
pub struct Rotation {
    last: BTreeMap<String, Observed>,
    rejected: BTreeMap<String, Observed>,
}

/// `file` as a path: relative names are relative to `base`, the rules
/// file's directory.
pub fn resolve(base: &Path, file: &PemFile) -> PathBuf {
    base.join(&file.path)
}

/// Reads and checks the files of every TLS listener in `config`, setting
/// each `pair`. Every bad file is reported, at the rules position of the
/// field that names it.
pub fn load(config: &mut Config, base: &Path) -> Result<(), RulesError> {
    let mut diagnostics = Vec::new();
    let mut warnings = Vec::new();
    if config.listeners.iter().all(|l| l.tls.is_none()) {
        return Ok(());
    }
    for listener in config.listeners_mut() {
        let Some(tls) = listener.tls.as_mut() else {
            continue;
        };
        match read_pair(base, tls) {
            Ok(pair) => {
                if let Some(w) = expiry_warning(&pair, SystemTime::now()) {
                    warnings.push((listener.name.clone(), pair.fingerprint().to_owned(), w));
                }
                tls.pair = Some(Arc::new(pair));
            }
            Err(e) => diagnostics.push(diagnostic(origin_of(tls, &e), &e)),
        }
    }
    if diagnostics.is_empty() {
        // Only for a load that succeeds: a failed one is retried every
        // poll, and would repeat the warning each time.
        for (listener, fingerprint, w) in warnings {
            tracing::warn!(%listener, %fingerprint, "{w}");
        }
        Ok(())
    } else {
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(RulesError { diagnostics })
    }
}

/// Reads both files of `tls` and checks them.
pub fn read_pair(base: &Path, tls: &ListenerTls) -> Result<CertPair, TlsError> {
    let cert = read(base, &tls.cert_file, Part::Cert)?;
    let key = read(base, &tls.key_file, Part::Key)?;
    parse_pair(base, tls, cert, key)
}

/// Reads the two files of `tls` as they are now.
pub fn observe(base: &Path, tls: &ListenerTls) -> Observed {
    let cert = read(base, &tls.cert_file, Part::Cert);
    let key = read(base, &tls.key_file, Part::Key);
    match (cert, key) {
        (Ok(cert), Ok(key)) => Observed::Files { cert, key },
        (Err(e), _) | (_, Err(e)) => Observed::Unreadable(e.to_string()),
    }
}

/// Checks that `cert_pem` holds a certificate chain and `key_pem` the
/// private key of its first (leaf) certificate; the bytes are kept as read.
pub fn parse_pair(
    base: &Path,
    tls: &ListenerTls,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
) -> Result<CertPair, TlsError> {
    let cert_file = resolve(base, &tls.cert_file).display().to_string();
    let key_file = resolve(base, &tls.key_file).display().to_string();
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(Part::Cert, &cert_file, e))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate { file: cert_file });
    };
    let fingerprint = crate::digest::sha256_hex(leaf.as_ref());
    let bad_cert = |e: der::Error| TlsError::BadCertificate {
        file: cert_file.clone(),
        reason: e.to_string(),
    };
    let info = x509::leaf(leaf.as_ref()).map_err(bad_cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            file: key_file.clone(),
        },
        e => pem_error(Part::Key, &key_file, e),
    })?;
    let bad_key = |e: der::Error| TlsError::BadKey {
        file: key_file.clone(),
        reason: e.to_string(),
    };
    if x509::pkcs8_v2(&key).map_err(bad_key)? {
        return Err(TlsError::BadKey {
            file: key_file.clone(),
            reason: "PKCS#8 v2 keys (with the public key) cannot be read by Envoy; \
                     write it as PKCS#8 v1, as `openssl genpkey` does"
                .to_owned(),
        });
    }
    let ec_key = x509::ec_key(&key).map_err(bad_key)?;
    let p521 = Some(x509::P521);
    if info.curve == p521 || ec_key.as_ref().is_some_and(|k| k.curve == p521) {
        check_p521(&info, ec_key, &cert_file, &key_file)?;
        return Ok(CertPair::new(
            cert_pem,
            key_pem,
            fingerprint,
            info.not_after,
        ));
    }
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            file: key_file.clone(),
            reason: e.to_string(),
        })?;
    // What Envoy 1.40 (BoringSSL) serves: RSA of 2048 bits or more (ring
    // refuses smaller ones too), ECDSA on P-256, P-384 (here) and P-521
    // (above), and Ed25519.
    if !matches!(
        key.algorithm(),
        rustls::SignatureAlgorithm::RSA
            | rustls::SignatureAlgorithm::ECDSA
            | rustls::SignatureAlgorithm::ED25519
    ) {
        return Err(TlsError::BadKey {
            file: key_file,
            reason: format!(
                "{:?} keys are not supported; Envoy serves RSA, ECDSA and Ed25519 certificates",
                key.algorithm()
            ),
        });
    }
    match CertifiedKey::new(chain, key).keys_match() {
        Ok(()) => Ok(CertPair::new(
            cert_pem,
            key_pem,
            fingerprint,
            info.not_after,
        )),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_file,
            key: key_file,
        }),
        Err(e) => Err(TlsError::BadCertificate {
            file: cert_file,
            reason: e.to_string(),
        }),
    }
}

/// A warning to log when `pair` expires within [`EXPIRY_WARNING`] of
/// `now`, or has expired. Such a certificate is still served: refusing it
/// would take TLS away from every proxy, which is worse than an expired
/// certificate that clients may still accept.
pub fn expiry_warning(pair: &CertPair, now: SystemTime) -> Option<String> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let not_after = pair.not_after();
    if not_after < now {
        Some(format!(
            "certificate expired at {}; still serving it",
            pair.not_after_rfc3339()
        ))
    } else if not_after - now <= EXPIRY_WARNING.as_secs() {
        Some(format!(
            "certificate expires at {} (in {} hours)",
            pair.not_after_rfc3339(),
            (not_after - now) / 3600
        ))
    } else {
        None
    }
}

/// ring cannot load P-521 keys, so the pair is matched by the public key
/// the key file carries, on the certificate's curve.
fn check_p521(
    info: &x509::Leaf,
    key: Option<x509::EcKey>,
    cert_file: &str,
    key_file: &str,
) -> Result<(), TlsError> {
    let mismatch = || TlsError::KeyMismatch {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
    };
    let Some(key) = key else {
        return Err(mismatch());
    };
    if key.curve != info.curve {
        return Err(mismatch());
    }
    match key.public_key {
        Some(public) if public == info.public_key => Ok(()),
        Some(_) => Err(mismatch()),
        None => Err(TlsError::BadKey {
            file: key_file.to_owned(),
            reason: "this P-521 key does not carry its public key, so it cannot be matched \
                     to the certificate; write it with the public key (openssl pkey does)"
                .to_owned(),
        }),
    }
}

impl Rotation {
    /// Judges what was `seen` at `listener`'s files against the `served`
    /// pair. `check` parses new content (see [`parse_pair`]).
    pub fn observe(
        &mut self,
        listener: &str,
        served: &CertPair,
        seen: Observed,
        check: impl FnOnce(Vec<u8>, Vec<u8>) -> Result<CertPair, TlsError>,
    ) -> Verdict {
        let serving = matches!(&seen, Observed::Files { cert, key }
            if cert == served.cert_pem() && key == served.key_pem());
        if serving {
            self.last.remove(listener);
            self.rejected.remove(listener);
            return Verdict::Unchanged;
        }
        if self.rejected.get(listener) == Some(&seen) {
            return Verdict::StillRejected;
        }
        if self.last.get(listener) != Some(&seen) {
            self.last.insert(listener.to_owned(), seen);
            return Verdict::Settling;
        }
        self.last.remove(listener);
        let result = match seen.clone() {
            Observed::Files { cert, key } => check(cert, key).map_err(|e| e.to_string()),
            Observed::Unreadable(reason) => Err(reason),
        };
        match result {
            Ok(pair) => {
                self.rejected.remove(listener);
                Verdict::Accept(pair)
            }
            Err(e) => {
                self.rejected.insert(listener.to_owned(), seen);
                Verdict::Reject(e)
            }
        }
    }

    /// Forgets listeners that are no longer in the rules.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|l, _| keep(l));
        self.rejected.retain(|l, _| keep(l));
    }
}

/// The rules position a load error belongs to: the field naming the
/// file at fault.
fn origin_of<'a>(tls: &'a ListenerTls, e: &TlsError) -> &'a Origin {
    match e {
        TlsError::NoKey { .. }
        | TlsError::BadKey { .. }
        | TlsError::KeyMismatch { .. }
        | TlsError::Read {
            part: Part::Key, ..
        }
        | TlsError::BadPem {
            part: Part::Key, ..
        } => &tls.key_file.origin,
        _ => &tls.cert_file.origin,
    }
}

fn diagnostic(origin: &Origin, e: &TlsError) -> Diagnostic {
    Diagnostic::new(
        &origin.file,
        origin.line,
        origin.column,
        &origin.path,
        &e.to_string(),
    )
}

fn read(base: &Path, file: &PemFile, part: Part) -> Result<Vec<u8>, TlsError> {
    let path = resolve(base, file);
    std::fs::read(&path).map_err(|e| TlsError::Read {
        part,
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn pem_error(part: Part, file: &str, e: pem::Error) -> TlsError {
    let reason = match (part, e) {
        // The decoder's detail may quote a character of the key.
        (Part::Key, pem::Error::Base64Decode(_)) => "base64 decode error".to_owned(),
        (_, e) => e.to_string(),
    };
    TlsError::BadPem {
        part,
        file: file.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;
