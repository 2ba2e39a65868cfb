//! Request hashing for ring hash and Maglev, as Envoy does it: xxHash64
//! (seed 0) of a header value, cookie value or source IP, and several hash
//! policies folded with Envoy's rotate-and-xor so that equal rules do not
//! cancel out.

use envoy_types::pb::envoy::config::route::v3::route_action::{hash_policy, HashPolicy as PbHash};

use super::decode::DecodeError;
use super::http::Request;

/// One compiled `hash_policy` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct HashPolicy {
    source: Source,
    terminal: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Source {
    Header(String),
    Cookie(String),
    Ip,
}

impl HashPolicy {
    pub fn compile(p: &PbHash) -> Result<HashPolicy, DecodeError> {
        let source = match &p.policy_specifier {
            Some(hash_policy::PolicySpecifier::Header(h)) => {
                Source::Header(h.header_name.to_ascii_lowercase())
            }
            Some(hash_policy::PolicySpecifier::Cookie(c)) => Source::Cookie(c.name.clone()),
            Some(hash_policy::PolicySpecifier::ConnectionProperties(c)) if c.source_ip => {
                Source::Ip
            }
            other => {
                return Err(DecodeError::Unsupported(format!("hash policy {other:?}")));
            }
        };
        Ok(HashPolicy {
            source,
            terminal: p.terminal,
        })
    }

    pub fn header(name: &str) -> HashPolicy {
        HashPolicy {
            source: Source::Header(name.to_ascii_lowercase()),
            terminal: false,
        }
    }

    fn evaluate(&self, req: &Request) -> Option<u64> {
        match &self.source {
            Source::Header(name) => req.header_value(name).map(|v| xxhash64(v.as_bytes(), 0)),
            Source::Cookie(name) => cookie(req, name).map(|v| xxhash64(v.as_bytes(), 0)),
            Source::Ip => req.source.map(|ip| xxhash64(ip.to_string().as_bytes(), 0)),
        }
    }
}

/// The hash of a request under a route's hash policies, `None` when no
/// policy produced one (the load balancer then picks at random).
pub struct RequestHash;

impl RequestHash {
    pub fn of(policies: &[HashPolicy], req: &Request) -> Option<u64> {
        let mut hash: Option<u64> = None;
        for p in policies {
            if let Some(new) = p.evaluate(req) {
                let old = hash.map_or(0, |h| h.rotate_left(1));
                hash = Some(old ^ new);
            }
            if p.terminal && hash.is_some() {
                break;
            }
        }
        hash
    }
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    let header = req.header_value("cookie")?;
    header.split([';', ',']).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

fn read64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn read32(b: &[u8]) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u64::from(u32::from_le_bytes(a))
}

/// xxHash64, the hash Envoy uses for ring hash, Maglev and hash policies.
pub fn xxhash64(input: &[u8], seed: u64) -> u64 {
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, read64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        h ^= round(0, read64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= read32(rest).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_reference_vectors() {
        assert_eq!(xxhash64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxhash64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn policies_fold_with_rotate_and_xor() {
        let req = Request::get("h", "/").header("x-user", "alice");
        let one = RequestHash::of(&[HashPolicy::header("x-user")], &req);
        assert_eq!(one, Some(xxhash64(b"alice", 0)));
        // Two equal rules must not cancel each other out.
        let two = RequestHash::of(
            &[HashPolicy::header("x-user"), HashPolicy::header("x-user")],
            &req,
        );
        let h = xxhash64(b"alice", 0);
        assert_eq!(two, Some(h.rotate_left(1) ^ h));
        assert_eq!(RequestHash::of(&[HashPolicy::header("x-none")], &req), None);
    }

    #[test]
    fn cookie_value_is_found_among_others() {
        let req = Request::get("h", "/").header("cookie", "a=1; session=xyz; b=2");
        assert_eq!(cookie(&req, "session").as_deref(), Some("xyz"));
        assert_eq!(cookie(&req, "nope"), None);
    }
}
