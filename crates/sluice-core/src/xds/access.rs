//! Whether a stream may be served: its credentials (verified client
//! certificate SANs, a bearer token) against the rules' `xds_access`
//! entries, for the node id and group it claims.
//!
//! Pure: the transport verifies the certificate chain and hashes the token;
//! this only matches. Access control is *in force* when the server requires
//! client certificates or the rules have any `xds_access` entry; then a
//! stream is served only if one entry matches its credential, its group and
//! its node id. Otherwise every stream is served, unauthenticated.

use std::fmt;

use crate::model::{AccessEntry, Principal};

/// What a stream presented, as the transport established it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The verified client certificate's URI SANs then DNS SANs; empty
    /// without a client certificate.
    pub identities: Vec<String>,
    /// SHA-256 of the `authorization: Bearer` token, lowercase hex.
    pub token_sha256: Option<String>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.token_sha256.is_none()
    }

    /// The identity shown in logs and denials: the first SAN, else
    /// "token", else "none".
    pub fn shown(&self) -> &str {
        match (self.identities.first(), &self.token_sha256) {
            (Some(id), _) => id,
            (None, Some(_)) => "token",
            (None, None) => "none",
        }
    }
}

/// Why a stream was refused; the `reason` label of
/// `sluice_xds_denied_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DenyReason {
    /// Access control is in force and the stream presented neither a
    /// client certificate nor a token.
    NoCredentials,
    /// The certificate's SANs match no `identity` entry.
    UnknownIdentity,
    /// The token matches no `token_sha256` entry.
    UnknownToken,
    /// The credential matched, but no matching entry allows the group.
    GroupNotAllowed,
    /// The credential and group matched, but not the claimed node id.
    NodeIdNotAllowed,
}

impl DenyReason {
    pub const ALL: [DenyReason; 5] = [
        DenyReason::NoCredentials,
        DenyReason::UnknownIdentity,
        DenyReason::UnknownToken,
        DenyReason::GroupNotAllowed,
        DenyReason::NodeIdNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoCredentials => "no_credentials",
            DenyReason::UnknownIdentity => "unknown_identity",
            DenyReason::UnknownToken => "unknown_token",
            DenyReason::GroupNotAllowed => "group_not_allowed",
            DenyReason::NodeIdNotAllowed => "node_id_not_allowed",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream that may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Access control is not in force: served, but not authenticated
    /// (no secrets unless the operator allowed it).
    Open,
    /// An entry matched the stream's credential, group and node id.
    Authenticated,
}

/// Decides whether a stream with `creds`, claiming `node_id` in `group`,
/// is served. `enforce` is true when the server requires client
/// certificates; entries in `access` put access control in force too.
pub fn authorize(
    access: &[AccessEntry],
    enforce: bool,
    creds: &Credentials,
    node_id: &str,
    group: &str,
) -> Result<Grant, DenyReason> {
    if !enforce && access.is_empty() {
        return Ok(Grant::Open);
    }
    if creds.is_empty() {
        return Err(DenyReason::NoCredentials);
    }
    // The most specific failure among the entries the credential matches.
    let mut best: Option<DenyReason> = None;
    for entry in access.iter().filter(|e| presents(e, creds)) {
        if !entry.groups.iter().any(|g| g == group) {
            best.get_or_insert(DenyReason::GroupNotAllowed);
            continue;
        }
        if entry
            .node_id
            .as_deref()
            .is_some_and(|p| !node_id_matches(p, node_id))
        {
            best = Some(DenyReason::NodeIdNotAllowed);
            continue;
        }
        return Ok(Grant::Authenticated);
    }
    // No entry knows the credential: name the one the stream presented
    // (the certificate when it has both: the transport verified it).
    Err(best.unwrap_or(if creds.identities.is_empty() {
        DenyReason::UnknownToken
    } else {
        DenyReason::UnknownIdentity
    }))
}

/// Whether the stream presents the entry's credential.
fn presents(entry: &AccessEntry, creds: &Credentials) -> bool {
    match &entry.principal {
        Principal::Identity(pattern) => creds
            .identities
            .iter()
            .any(|id| identity_matches(pattern, id)),
        Principal::TokenSha256(hash) => creds
            .token_sha256
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), hash.as_bytes())),
    }
}

/// Matches an identity glob against one SAN. A pattern with `://` is a
/// URI pattern: `*` matches one or more characters of one path segment
/// (no `/`), scheme and authority compare case-insensitively. Otherwise
/// it is a DNS pattern: `*` matches one or more characters of one label
/// (no `.`), and the comparison ignores ASCII case.
pub fn identity_matches(pattern: &str, san: &str) -> bool {
    if pattern.contains("://") {
        let (p_head, p_path) = split_authority(pattern);
        let (s_head, s_path) = split_authority(san);
        glob(p_head.as_bytes(), s_head.as_bytes(), Some(b'/'), true)
            && glob(p_path.as_bytes(), s_path.as_bytes(), Some(b'/'), false)
    } else {
        glob(pattern.as_bytes(), san.as_bytes(), Some(b'.'), true)
    }
}

/// `scheme://authority` and the rest (from the first `/` after it).
fn split_authority(uri: &str) -> (&str, &str) {
    let after = uri.find("://").map_or(0, |i| i + 3);
    match uri[after..].find('/') {
        Some(i) => uri.split_at(after + i),
        None => (uri, ""),
    }
}

/// Matches a node id glob: `*` matches any characters, none included.
pub fn node_id_matches(pattern: &str, node_id: &str) -> bool {
    glob(pattern.as_bytes(), node_id.as_bytes(), None, false)
}

/// Glob match where `*` is the only special character. With `sep`, a `*`
/// matches one or more bytes other than `sep`; without, zero or more of
/// any byte. Iterative with one backtrack point per star (linear in
/// practice, no recursion on hostile input).
fn glob(pattern: &[u8], text: &[u8], sep: Option<u8>, fold_case: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if fold_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match sep {
        None => {
            let (mut p, mut t) = (0, 0);
            let mut star: Option<(usize, usize)> = None;
            while t < text.len() {
                if p < pattern.len() && pattern[p] == b'*' {
                    star = Some((p, t));
                    p += 1;
                } else if p < pattern.len() && eq(pattern[p], text[t]) {
                    p += 1;
                    t += 1;
                } else if let Some((sp, st)) = star {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                } else {
                    return false;
                }
            }
            pattern[p..].iter().all(|&c| c == b'*')
        }
        Some(sep) => {
            // Segment by segment: the separators must line up one to one,
            // so a star never crosses one.
            let mut ps = pattern.split(|&c| c == sep);
            let mut ts = text.split(|&c| c == sep);
            loop {
                match (ps.next(), ts.next()) {
                    (None, None) => return true,
                    (Some(p), Some(t)) => {
                        if !segment(p, t, &eq) {
                            return false;
                        }
                    }
                    _ => return false,
                }
            }
        }
    }
}

/// One segment: each `*` matches one or more bytes (the segment holds no
/// separator by construction).
fn segment(pattern: &[u8], text: &[u8], eq: &dyn Fn(u8, u8) -> bool) -> bool {
    if !pattern.contains(&b'*') {
        return pattern.len() == text.len() && pattern.iter().zip(text).all(|(&a, &b)| eq(a, b));
    }
    // Expand each star to "one byte, then any": `a*b` ≡ `a?` `*` `b`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            // Consume the one mandatory byte now.
            t += 1;
            p += 1;
            star = Some((p, t));
        } else if p < pattern.len() && eq(pattern[p], text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    // A trailing star still needs its one byte, which text no longer has.
    p == pattern.len()
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
