//! Listener TLS: what the rules say (files, ALPN, minimum version) and the
//! certificate and key read from those files.
//!
//! The rules name files; `tls::load` (the I/O edge) reads and checks them
//! and fills [`ListenerTls::pair`] before compile, which turns the pair into
//! an SDS `Secret` and the rest into the listener's transport socket. The
//! private key never leaves [`CertPair`] except as the secret's bytes: its
//! `Debug` and `Serialize` (logs, `/debug/config`) print a placeholder.

use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::Serialize;

/// TLS termination on a listener.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PemFile,
    /// PEM private key of the leaf certificate.
    pub key_file: PemFile,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    /// What the files held when last read and accepted; `None` straight out
    /// of the rules parser (compile refuses a listener without it).
    #[serde(serialize_with = "serialize_pair")]
    pub pair: Option<Arc<CertPair>>,
}

/// A file named in the rules, with where it was named (for errors found
/// when it is read, after parsing).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PemFile {
    /// As written: relative paths are relative to the rules file's directory.
    pub path: String,
    #[serde(skip)]
    pub origin: Origin,
}

/// A position in a rules file and the field path there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub path: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// A certificate chain and its private key, both PEM, checked to parse and
/// to belong together (see `tls::parse_pair`).
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    fingerprint: String,
    not_after: u64,
}

impl ListenerTls {
    /// ALPN offered when the rules name none: HTTP/2, then HTTP/1.1 (the
    /// connection manager's codec follows what was negotiated).
    pub const DEFAULT_ALPN: [&'static str; 2] = ["h2", "http/1.1"];
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.path
        )
    }
}

impl CertPair {
    /// Only `tls::parse_pair` builds these, after checking both parts.
    pub fn new(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        fingerprint: String,
        not_after: u64,
    ) -> CertPair {
        CertPair {
            cert_pem,
            key_pem,
            fingerprint,
            not_after,
        }
    }

    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// The private key: for the SDS secret only; never log it.
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }

    /// SHA-256 of the leaf certificate's DER, lowercase hex (what
    /// `openssl x509 -noout -fingerprint -sha256` prints, without colons).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The leaf certificate's notAfter, seconds since the Unix epoch.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The leaf certificate's notAfter as RFC 3339 UTC
    /// (`2027-01-31T23:59:59Z`).
    pub fn not_after_rfc3339(&self) -> String {
        let since_epoch = std::time::Duration::from_secs(self.not_after);
        // Every X.509 time (years up to 9999) converts back.
        der::DateTime::from_unix_duration(since_epoch)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| format!("{} seconds after the epoch", self.not_after))
    }
}

fn serialize_pair<S: serde::Serializer>(
    pair: &Option<Arc<CertPair>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    pair.as_deref().serialize(s)
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for CertPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertPair")
            .field("fingerprint", &self.fingerprint)
            .field("key", &REDACTED)
            .finish()
    }
}

impl Serialize for CertPair {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CertPair", 2)?;
        st.serialize_field("fingerprint", &self.fingerprint)?;
        st.serialize_field("key", REDACTED)?;
        st.end()
    }
}
