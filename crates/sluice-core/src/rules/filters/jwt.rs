//! `auth.jwt`: RS256 bearer tokens. Keys are PEM SubjectPublicKeyInfo
//! (`-----BEGIN PUBLIC KEY-----`), checked here by parsing them, so a bad
//! key is a rules error rather than a request-time failure in Envoy.

use std::time::Duration;

use crate::rules::yaml::Spanned;
use rsa::pkcs8::DecodePublicKey;

use super::raw::RawJwt;
use super::transform::header_name;
use crate::model::JwtAuth;
use crate::rules::check::duration;
use crate::rules::error::Diags;

pub(super) fn jwt(raw: &Spanned<RawJwt>, path: &str, d: &mut Diags) -> JwtAuth {
    let mut keys: Vec<(String, String)> = Vec::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let p = format!("{path}.keys[{i}]");
        let kid = k
            .kid
            .as_ref()
            .map_or_else(|| "*".to_string(), |s| s.to_string());
        if keys.iter().any(|(existing, _)| *existing == kid) {
            let what = if kid == "*" {
                "a key without `kid`".to_string()
            } else {
                format!("kid `{kid}`")
            };
            d.error(
                k.span(),
                format!("{p}.kid"),
                format!("{what} is listed twice"),
            );
            continue;
        }
        match der_base64(&k.pem) {
            Ok(der) => keys.push((kid, der)),
            Err(why) => d.error(k.pem.span(), format!("{p}.pem"), why),
        }
    }
    if raw.keys.is_empty() {
        d.error(
            raw.keys.span(),
            format!("{path}.keys"),
            "keys must not be empty",
        );
    }
    keys.sort();
    let skew = raw
        .clock_skew
        .as_ref()
        .and_then(|s| duration(d, s, &format!("{path}.clock_skew")));
    JwtAuth {
        header: raw.header.as_ref().map_or_else(
            || "authorization".to_string(),
            |h| header_name(h, &format!("{path}.header"), d),
        ),
        issuer: raw.issuer.as_ref().map(|s| s.to_string()),
        audiences: raw.audiences.iter().map(|s| s.to_string()).collect(),
        keys,
        consumer_claim: raw
            .consumer_claim
            .as_ref()
            .map_or_else(|| "sub".to_string(), |s| s.to_string()),
        plan_claim: raw.plan_claim.as_ref().map(|s| s.to_string()),
        clock_skew: skew.unwrap_or(Duration::from_secs(60)),
    }
}

/// The base64 body of a PEM public key, after checking it parses as RSA.
fn der_base64(pem: &str) -> Result<String, String> {
    let pem = pem.trim();
    if !pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        return Err(
            "expected a PEM `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) RSA key".into(),
        );
    }
    rsa::RsaPublicKey::from_public_key_pem(pem)
        .map_err(|e| format!("not a valid RSA public key: {e}"))?;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    Ok(body)
}
