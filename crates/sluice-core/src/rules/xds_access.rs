//! The top-level `xds_access` section: who may fetch configuration over
//! xDS, and as which node groups and node ids.

use serde::Deserialize;

use super::error::{shown, Diags};
use super::yaml::Spanned;
use crate::model::{AccessEntry, Principal};

type Str = Spanned<String>;

/// Longest identity or node id pattern accepted; SANs are short, and a
/// pattern is echoed in denials.
const MAX_PATTERN_LEN: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an xds_access entry mapping")]
pub struct RawAccess {
    #[serde(default)]
    pub identity: Option<Str>,
    #[serde(default)]
    pub token_sha256: Option<Str>,
    pub groups: Spanned<Vec<Str>>,
    #[serde(default)]
    pub node_id: Option<Str>,
}

/// The entries, each with its index in the file's list.
pub fn xds_access<'a>(
    raw: impl IntoIterator<Item = (usize, &'a Spanned<RawAccess>)>,
    d: &mut Diags,
) -> Vec<AccessEntry> {
    raw.into_iter()
        .filter_map(|(index, entry)| access_entry(index, entry, d))
        .collect()
}

fn access_entry(index: usize, raw: &Spanned<RawAccess>, d: &mut Diags) -> Option<AccessEntry> {
    let path = format!("xds_access[{index}]");
    let principal = match (&raw.identity, &raw.token_sha256) {
        (Some(identity), None) => {
            pattern(d, identity, &format!("{path}.identity"));
            Principal::Identity(identity.to_string())
        }
        (None, Some(token)) => Principal::TokenSha256(token_hash(d, token, &path)?),
        (Some(_), Some(token)) => {
            let msg =
                "give `identity` or `token_sha256`, not both: write two entries to allow either";
            d.error(token.span(), format!("{path}.token_sha256"), msg);
            return None;
        }
        (None, None) => {
            let msg = "an entry names who it allows: add `identity` (a glob over the client certificate's URI or DNS SANs) or `token_sha256`";
            d.error(raw.span(), &path, msg);
            return None;
        }
    };
    if raw.groups.is_empty() {
        let msg = "list the node groups this entry may join, e.g. [edge]";
        d.error(raw.groups.span(), format!("{path}.groups"), msg);
    }
    let mut groups = Vec::with_capacity(raw.groups.len());
    for (i, g) in raw.groups.iter().enumerate() {
        if g.is_empty() || g.contains('*') {
            let msg = format!(
                "`{}` is not a node group name: groups are matched exactly (no globs)",
                shown(g)
            );
            d.error(g.span(), format!("{path}.groups[{i}]"), msg);
        }
        groups.push(g.to_string());
    }
    let node_id = raw.node_id.as_ref().map(|n| {
        pattern(d, n, &format!("{path}.node_id"));
        n.to_string()
    });
    Some(AccessEntry {
        principal,
        groups,
        node_id,
    })
}

/// An identity or node id glob: not empty, no whitespace or control
/// characters (a SAN and an xDS node id have none), and bounded.
fn pattern(d: &mut Diags, value: &Str, path: &str) {
    let bad = value.chars().find(|c| c.is_whitespace() || c.is_control());
    let msg = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > MAX_PATTERN_LEN {
        format!("longer than {MAX_PATTERN_LEN} bytes")
    } else if let Some(c) = bad {
        format!(
            "`{}` holds {c:?}; identities and node ids have no whitespace or control characters",
            shown(value)
        )
    } else if value.contains("**") {
        format!("`{}`: `**` is not supported; `*` matches one path segment or DNS label (any characters in `node_id`)", shown(value))
    } else {
        return;
    };
    d.error(value.span(), path, msg);
}

/// The SHA-256 of a token, as 64 hex digits (normalised to lowercase).
fn token_hash(d: &mut Diags, value: &Str, path: &str) -> Option<String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(value.to_ascii_lowercase());
    }
    // Never echo the value: it may be the token itself, pasted by mistake.
    let msg = format!(
        "expected the token's SHA-256 as 64 hex digits (found {} characters), e.g. from `printf %s \"$TOKEN\" | sha256sum`; the token itself never goes in the rules file",
        value.chars().count()
    );
    d.error(value.span(), format!("{path}.token_sha256"), msg);
    None
}
