//! Who may fetch configuration over xDS: the rules file's `xds_access`
//! section, validated. The decision itself (a stream's credentials against
//! these entries) is `xds::access`.

use serde::Serialize;

/// One `xds_access` entry: a credential and what it may claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    pub principal: Principal,
    /// Node groups a stream with this credential may join (exact names).
    pub groups: Vec<String>,
    /// Glob over the node id the stream claims; `None` allows any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

/// What a stream presents to match an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// A glob over one of the client certificate's URI SANs (a pattern
    /// with `://`, where `*` is one path segment) or DNS SANs (`*` is one
    /// DNS label).
    Identity(String),
    /// SHA-256 of a bearer token, as 64 lowercase hex digits; the token
    /// itself is never in the rules file.
    TokenSha256(String),
}

impl AccessEntry {
    pub fn is_token(&self) -> bool {
        matches!(self.principal, Principal::TokenSha256(_))
    }
}
