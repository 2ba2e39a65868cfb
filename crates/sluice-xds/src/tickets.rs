//! TLS 1.3 session tickets sealed with keys from files
//! (`--xds-tls-ticket-key`), so a proxy resumes its TLS session after
//! sluice restarts, or on another replica given the same key files,
//! instead of a full handshake with certificates on both sides.
//!
//! rustls has a ticketer of its own, but its keys are random and live
//! in one process; this one derives them from files the operator
//! provides and rotates, as Envoy's `session_ticket_keys`, nginx's
//! `ssl_session_ticket_key` and HAProxy's `tls-ticket-keys` do.
//!
//! A ticket is `key id (16) ‖ nonce (12) ‖ AES-256-GCM(issued at (8, unix
//! seconds, big-endian) ‖ rustls's session state)`, the key id as
//! associated data. Each key file's bytes are the input keying material
//! of HKDF-SHA256; the salt also covers a `binding` (the client CA bundle
//! in force), so a changed client CA makes every earlier ticket useless
//! and those proxies go through a full handshake, certificate checked.
//! The first key seals; every key opens (rotation: put the new file first,
//! keep the old one for a [`LIFETIME`], then drop it). A ticket older
//! than [`LIFETIME`] is refused, whatever key sealed it.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// How long a ticket can be used to resume, in seconds: two hours, as
/// Envoy's `session_timeout` default. Told to clients as the lifetime hint
/// and enforced when a ticket comes back.
pub const LIFETIME: u32 = 2 * 60 * 60;

/// The fewest bytes a key file must hold (256 bits of key material);
/// `openssl rand 80 > FILE` makes a good one (Envoy's key files work too).
pub const MIN_KEY_BYTES: usize = 32;

const ID_LEN: usize = 16;
const TIME_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// Tickets issued up to this far in the future are accepted (replicas'
/// clocks differ a little).
const CLOCK_SKEW: u64 = 60;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0} bytes of key material; at least {MIN_KEY_BYTES} are needed (make one with `openssl rand 80`)")]
    TooShort(usize),
}

struct TicketKey {
    id: [u8; ID_LEN],
    aead: LessSafeKey,
}

/// Seals and opens session tickets with keys from files (see the module
/// docs).
pub struct FileTicketer {
    /// The first seals; all open.
    keys: Vec<TicketKey>,
    rng: SystemRandom,
}

impl fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("FileTicketer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// HKDF output lengths for `ring`.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl FileTicketer {
    /// Keys from the files' contents (`keys[0]` seals), bound to
    /// `binding` (the client CA bundle's bytes, or empty without one).
    pub fn new(keys: &[Vec<u8>], binding: &[u8]) -> Result<FileTicketer, KeyError> {
        let salt = {
            let mut s = b"sluice xds session ticket v1\0".to_vec();
            s.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, binding).as_ref());
            hkdf::Salt::new(hkdf::HKDF_SHA256, &s)
        };
        let keys = keys
            .iter()
            .map(|material| {
                if material.len() < MIN_KEY_BYTES {
                    return Err(KeyError::TooShort(material.len()));
                }
                let prk = salt.extract(material);
                let mut id = [0u8; ID_LEN];
                let mut secret = [0u8; 32];
                // Infallible for these lengths (≤ 255 × 32 bytes).
                let expand = |info: &[u8], out: &mut [u8]| {
                    prk.expand(&[info], Len(out.len()))
                        .and_then(|okm| okm.fill(out))
                        .map_err(|_| KeyError::TooShort(material.len()))
                };
                expand(b"key id", &mut id)?;
                expand(b"aes-256-gcm", &mut secret)?;
                let unbound = UnboundKey::new(&aead::AES_256_GCM, &secret)
                    .map_err(|_| KeyError::TooShort(material.len()))?;
                Ok(TicketKey {
                    id,
                    aead: LessSafeKey::new(unbound),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FileTicketer {
            keys,
            rng: SystemRandom::new(),
        })
    }

    fn seal_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + TIME_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let mut body = Vec::with_capacity(TIME_LEN + plain.len() + TAG_LEN);
        body.extend_from_slice(&now.to_be_bytes());
        body.extend_from_slice(plain);
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.id),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < ID_LEN + NONCE_LEN + TIME_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = ticket.split_at(ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.id[..] == *id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(id), &mut body)
            .ok()?;
        let (issued, state) = plain.split_at(TIME_LEN);
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let fresh = issued <= now + CLOCK_SKEW && now.saturating_sub(issued) <= u64::from(LIFETIME);
        fresh.then(|| state.to_vec())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl rustls::server::ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key(b: u8) -> Vec<u8> {
        vec![b; 80]
    }

    #[test]
    fn a_ticket_opens_with_its_key_and_only_then() {
        let t = FileTicketer::new(&[key(1)], b"ca").expect("usable keys");
        let ticket = t.seal_at(b"session state", NOW).expect("sealed");
        assert_eq!(
            t.open_at(&ticket, NOW + 5).as_deref(),
            Some(&b"session state"[..])
        );
        // Nothing of the state shows in the ticket.
        assert!(!ticket.windows(7).any(|w| w == b"session"));

        let other = FileTicketer::new(&[key(2)], b"ca").expect("usable keys");
        assert_eq!(other.open_at(&ticket, NOW), None);
        // The same key file with another client CA: refused.
        let rebound = FileTicketer::new(&[key(1)], b"another ca").expect("usable keys");
        assert_eq!(rebound.open_at(&ticket, NOW), None);
    }

    #[test]
    fn every_byte_of_a_ticket_is_authenticated() {
        let t = FileTicketer::new(&[key(1)], b"").expect("usable keys");
        let ticket = t.seal_at(b"state", NOW).expect("sealed");
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 0x01;
            assert_eq!(t.open_at(&bad, NOW), None, "byte {i} flipped");
        }
        for n in 0..ticket.len() {
            assert_eq!(t.open_at(&ticket[..n], NOW), None, "cut to {n}");
        }
    }

    #[test]
    fn rotation_the_first_key_seals_and_every_key_opens() {
        let old = FileTicketer::new(&[key(1)], b"").expect("usable keys");
        let old_ticket = old.seal_at(b"old", NOW).expect("sealed");
        let rotated = FileTicketer::new(&[key(2), key(1)], b"").expect("usable keys");
        assert_eq!(
            rotated.open_at(&old_ticket, NOW).as_deref(),
            Some(&b"old"[..])
        );
        let new_ticket = rotated.seal_at(b"new", NOW).expect("sealed");
        assert_eq!(old.open_at(&new_ticket, NOW), None);
        let only_new = FileTicketer::new(&[key(2)], b"").expect("usable keys");
        assert_eq!(
            only_new.open_at(&new_ticket, NOW).as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(only_new.open_at(&old_ticket, NOW), None);
    }

    #[test]
    fn a_ticket_past_its_lifetime_or_from_the_future_is_refused() {
        let t = FileTicketer::new(&[key(1)], b"").expect("usable keys");
        let ticket = t.seal_at(b"s", NOW).expect("sealed");
        let life = u64::from(LIFETIME);
        assert!(t.open_at(&ticket, NOW + life).is_some());
        assert_eq!(t.open_at(&ticket, NOW + life + 1), None);
        assert!(t.open_at(&ticket, NOW - CLOCK_SKEW).is_some());
        assert_eq!(t.open_at(&ticket, NOW - CLOCK_SKEW - 1), None);
    }

    #[test]
    fn two_tickets_of_one_state_differ() {
        let t = FileTicketer::new(&[key(1)], b"").expect("usable keys");
        assert_ne!(t.seal_at(b"s", NOW), t.seal_at(b"s", NOW));
    }

    #[test]
    fn short_key_material_is_refused() {
        assert_eq!(
            FileTicketer::new(&[vec![7; 31]], b"").err(),
            Some(KeyError::TooShort(31))
        );
        assert!(FileTicketer::new(&[vec![7; 32]], b"").is_ok());
    }

    #[test]
    fn debug_output_shows_no_key() {
        let t = FileTicketer::new(&[key(0xab)], b"").expect("usable keys");
        assert_eq!(format!("{t:?}"), "FileTicketer { keys: 1 }");
    }
}
