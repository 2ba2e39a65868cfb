//! Content hashes: what says "this changed" for every piece of content
//! sluice keeps (encoded resources' versions, the rules file, a discovery
//! file), in one place below all of their modules.

use xxhash_rust::xxh3::Xxh3;

/// A short, stable content hash: XXH3-64 as 16 hex digits. Not a
/// cryptographic hash — versions only need to change when content does,
/// and XXH3 is an order of magnitude faster than SHA-256 on large
/// resources (see docs/benchmarks.md); its output is fixed by its spec,
/// so versions are the same in every process and release.
pub fn content_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Xxh3::new();
    for p in parts {
        hasher.update(p);
    }
    format!("{:016x}", hasher.digest())
}

/// SHA-256 as 64 lowercase hex digits: certificate fingerprints, and the
/// hash of a bearer token that `xds_access` entries name.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
