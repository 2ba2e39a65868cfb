//! Raw YAML shapes of `auth`, `validate` and `transform` (see `super`).

use crate::rules::yaml::Spanned;
use serde::Deserialize;

use crate::rules::spanned_map::SpannedMap;

type Str = Spanned<String>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "an auth mapping")]
pub struct RawAuth {
    #[serde(default)]
    pub api_key: Option<Spanned<RawApiKey>>,
    #[serde(default)]
    pub basic: Option<Spanned<RawBasic>>,
    #[serde(default)]
    pub jwt: Option<Spanned<RawJwt>>,
    #[serde(default)]
    pub ip: Option<Spanned<RawIp>>,
    #[serde(default)]
    pub consumer_header: Option<Str>,
    #[serde(default)]
    pub plan_header: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an api_key mapping")]
pub struct RawApiKey {
    #[serde(default)]
    pub header: Option<Str>,
    #[serde(default)]
    pub query: Option<Str>,
    #[serde(default)]
    pub json_field: Option<Str>,
    pub keys: Spanned<Vec<Spanned<RawCredential>>>,
}

/// An API key (`key` or `key_sha256`) or a Basic user (`user` with
/// `password` or `password_sha256`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a credential mapping")]
pub struct RawCredential {
    #[serde(default)]
    pub key: Option<Str>,
    #[serde(default)]
    pub key_sha256: Option<Str>,
    #[serde(default)]
    pub user: Option<Str>,
    #[serde(default)]
    pub password: Option<Str>,
    #[serde(default)]
    pub password_sha256: Option<Str>,
    #[serde(default)]
    pub consumer: Option<Str>,
    #[serde(default)]
    pub plan: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a basic mapping")]
pub struct RawBasic {
    #[serde(default)]
    pub realm: Option<Str>,
    pub users: Spanned<Vec<Spanned<RawCredential>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an ip mapping")]
pub struct RawIp {
    #[serde(default)]
    pub allow: Vec<Str>,
    #[serde(default)]
    pub deny: Vec<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a validate mapping")]
pub struct RawValidate {
    #[serde(default)]
    pub methods: Vec<Str>,
    #[serde(default)]
    pub required_headers: Vec<Str>,
    #[serde(default)]
    pub required_query: Vec<Str>,
    #[serde(default)]
    pub content_types: Vec<Str>,
    #[serde(default)]
    pub max_body_bytes: Option<Str>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a transform mapping with request and/or response"
)]
pub struct RawTransforms {
    #[serde(default)]
    pub request: Option<Spanned<RawTransform>>,
    #[serde(default)]
    pub response: Option<Spanned<RawTransform>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a transform mapping")]
pub struct RawTransform {
    #[serde(default)]
    pub remove_headers: Vec<Str>,
    #[serde(default)]
    pub rename_headers: SpannedMap<String>,
    #[serde(default)]
    pub set_headers: SpannedMap<String>,
    #[serde(default)]
    pub add_headers: SpannedMap<String>,
    #[serde(default)]
    pub query_to_header: SpannedMap<String>,
    #[serde(default)]
    pub rewrite_path: Option<Str>,
    #[serde(default)]
    pub json: Option<Spanned<RawJson>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a json mapping")]
pub struct RawJson {
    #[serde(default)]
    pub set: SpannedMap<String>,
    #[serde(default)]
    pub remove: Vec<Str>,
    #[serde(default)]
    pub rename: SpannedMap<String>,
    #[serde(default)]
    pub max_bytes: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a rate_limit mapping")]
pub struct RawRateLimit {
    #[serde(default)]
    pub key: Option<Str>,
    pub requests: Str,
    #[serde(default)]
    pub per: Option<Str>,
    #[serde(default)]
    pub overrides: SpannedMap<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a jwt mapping")]
pub struct RawJwt {
    #[serde(default)]
    pub header: Option<Str>,
    #[serde(default)]
    pub issuer: Option<Str>,
    #[serde(default)]
    pub audiences: Vec<Str>,
    pub keys: Spanned<Vec<Spanned<RawJwk>>>,
    #[serde(default)]
    pub consumer_claim: Option<Str>,
    #[serde(default)]
    pub plan_claim: Option<Str>,
    #[serde(default)]
    pub clock_skew: Option<Str>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a key mapping with `pem` and optional `kid`"
)]
pub struct RawJwk {
    #[serde(default)]
    pub kid: Option<Str>,
    pub pem: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a lua mapping with `source`")]
pub struct RawUserLua {
    pub source: Str,
}
