//! RS256 tokens for tests, signed with the test-only keys in
//! `tests/fixtures/jwt/`.

use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::Value;
use sha2::Sha256;

pub const PRIVATE: &str = include_str!("../fixtures/jwt/test-private.pem");
pub const PUBLIC: &str = include_str!("../fixtures/jwt/test-public.pem");
pub const OTHER_PRIVATE: &str = include_str!("../fixtures/jwt/other-private.pem");

pub fn b64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `header.claims.signature`, signed with `private_pem` (PKCS#8).
pub fn token(private_pem: &str, header: &Value, claims: &Value) -> String {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem).expect("private key");
    let signing = SigningKey::<Sha256>::new(key);
    let signed = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signing.sign(signed.as_bytes()).to_vec();
    format!("{signed}.{}", b64url(&sig))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
