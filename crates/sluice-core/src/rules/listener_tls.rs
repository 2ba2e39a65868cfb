//! `tls` on a listener: raw YAML → [`model::ListenerTls`].
//!
//! Only the shape is checked here (file names present, known ALPN
//! protocols, a supported minimum version): the rules loader reads no file
//! but the rules file. Each file name keeps its position ([`Origin`]) so that
//! `tls::load`, which reads the files later, reports a missing or bad file
//! at the line that names it.

use crate::rules::yaml::Spanned;
use serde::Deserialize;

use super::check::Seen;
use super::error::Diags;
use crate::model::{ListenerTls, Origin, PemFile, TlsVersion};

type Str = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a tls mapping")]
pub struct RawListenerTls {
    pub cert_file: Str,
    pub key_file: Str,
    #[serde(default)]
    pub alpn: Option<Spanned<Vec<Str>>>,
    #[serde(default)]
    pub min_version: Option<Str>,
}

/// ALPN protocols the HTTP connection manager can speak.
const ALPN: [&str; 2] = ["h2", "http/1.1"];

pub fn listener_tls(raw: &RawListenerTls, path: &str, d: &mut Diags) -> ListenerTls {
    let alpn = match &raw.alpn {
        None => ListenerTls::DEFAULT_ALPN.map(String::from).to_vec(),
        Some(list) => alpn(list, &format!("{path}.alpn"), d),
    };
    let min_version = match &raw.min_version {
        None => TlsVersion::default(),
        Some(v) => match v.as_str() {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            other => {
                let msg = format!(
                    "unsupported TLS version `{other}`; valid versions are \"1.2\" and \"1.3\" \
                     (1.0 and 1.1 are not offered)"
                );
                d.error(v.span(), format!("{path}.min_version"), msg);
                TlsVersion::default()
            }
        },
    };
    ListenerTls {
        cert_file: pem_file(&raw.cert_file, &format!("{path}.cert_file"), d),
        key_file: pem_file(&raw.key_file, &format!("{path}.key_file"), d),
        alpn,
        min_version,
        pair: None,
    }
}

fn pem_file(raw: &Str, path: &str, d: &mut Diags) -> PemFile {
    if raw.trim().is_empty() {
        d.error(raw.span(), path, "file name must not be empty");
    }
    let loc = d.loc(raw.span());
    PemFile {
        path: raw.to_string(),
        origin: Origin {
            file: d.file().to_owned(),
            line: loc.line,
            column: loc.column,
            path: path.to_owned(),
        },
    }
}

fn alpn(list: &Spanned<Vec<Str>>, path: &str, d: &mut Diags) -> Vec<String> {
    if list.is_empty() {
        let msg = "alpn must not be empty; omit it to offer h2 and http/1.1";
        d.error(list.span(), path, msg);
    }
    let mut seen = Seen::default();
    for (i, proto) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !ALPN.contains(&proto.as_str()) {
            let msg = format!(
                "unknown ALPN protocol `{}`; valid protocols are h2, http/1.1",
                proto.as_str()
            );
            d.error(proto.span(), &p, msg);
        }
        seen.first(d, proto, &p, "ALPN protocol");
    }
    list.iter().map(|s| s.to_string()).collect()
}
