//! The rules file as written: YAML text → raw serde structs, nothing checked
//! beyond shape.
//!
//! Unknown fields and wrong types are rejected here (`deny_unknown_fields`).
//! Each service and each listener is deserialized on its own so that one
//! malformed entry does not hide the problems in the others. Scalars that
//! need range or format checks (ports, weights, durations) stay strings with
//! their spans; `validate` turns them into model values.

use std::collections::{BTreeMap, BTreeSet};

use marked_yaml::{LoaderOptions, Node, Spanned};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::diagnose::{describe, error_loc, report_load_error, second_document, unknown_field};
use super::discovery::{RawDiscovery, RawSources};
use super::error::{Diags, ROOT};
use super::filters::{RawAuth, RawRateLimit, RawTransforms, RawUserLua, RawValidate};
use super::listener_tls::RawListenerTls;
use super::raw_policy::*;
use super::spanned_map::SpannedMap;

type Str = Spanned<String>;

/// The whole file; entries that failed to deserialize are left out (and
/// reported).
pub struct RawConfig {
    pub services: Vec<Item<RawService>>,
    pub listeners: Vec<Item<RawListener>>,
    /// The `sources` section; `None` when absent or malformed (reported).
    pub sources: Option<RawSources>,
    /// Names of services whose entry failed to deserialize: references to
    /// them are not reported as dangling, the entry's own error explains.
    pub broken_services: BTreeSet<String>,
}

/// A list entry with its index in the file's list.
pub struct Item<T> {
    pub index: usize,
    pub raw: T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a service mapping")]
pub struct RawService {
    pub name: Str,
    #[serde(default)]
    pub connect_timeout: Option<Str>,
    #[serde(default)]
    pub lb_policy: Option<Str>,
    #[serde(default)]
    pub endpoints: Vec<Spanned<RawEndpoint>>,
    #[serde(default)]
    pub subsets: SpannedMap<BTreeMap<String, String>>,
    #[serde(default)]
    pub discovery: Option<Spanned<RawDiscovery>>,
    // Traffic policy (see `raw_policy`).
    #[serde(default)]
    pub health_check: Option<Spanned<RawHealthCheck>>,
    #[serde(default)]
    pub panic_threshold: Option<Str>,
    #[serde(default)]
    pub outlier_detection: Option<Spanned<RawOutlier>>,
    #[serde(default)]
    pub circuit_breakers: Option<Spanned<RawCircuitBreakers>>,
    #[serde(default)]
    pub least_request: Option<Spanned<RawLeastRequest>>,
    #[serde(default)]
    pub slow_start: Option<Spanned<RawSlowStart>>,
    #[serde(default)]
    pub locality_weights: Option<Spanned<Vec<Spanned<RawLocalityWeight>>>>,
    #[serde(default)]
    pub zone_aware: Option<Spanned<RawZoneAware>>,
    #[serde(default)]
    pub protocol: Option<Str>,
    #[serde(default)]
    pub tls: Option<Spanned<RawUpstreamTls>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an endpoint mapping")]
pub struct RawEndpoint {
    pub address: Str,
    pub port: Str,
    #[serde(default)]
    pub weight: Option<Str>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub health: Option<Str>,
    #[serde(default)]
    pub locality: Option<Spanned<RawLocality>>,
    #[serde(default)]
    pub priority: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a locality mapping")]
pub struct RawLocality {
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub sub_zone: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a listener mapping")]
pub struct RawListener {
    pub name: Str,
    #[serde(default)]
    pub address: Option<Str>,
    pub port: Str,
    #[serde(default)]
    pub groups: Option<Spanned<Vec<Str>>>,
    pub virtual_hosts: Spanned<Vec<Spanned<RawVirtualHost>>>,
    #[serde(default)]
    pub access_log: Option<Spanned<RawAccessLog>>,
    #[serde(default)]
    pub tls: Option<Spanned<RawListenerTls>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a virtual host mapping")]
pub struct RawVirtualHost {
    pub name: Str,
    pub domains: Spanned<Vec<Str>>,
    pub routes: Spanned<Vec<Spanned<RawRoute>>>,
    #[serde(default)]
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub validate: Option<Spanned<RawValidate>>,
    #[serde(default)]
    pub transform: Option<Spanned<RawTransforms>>,
    #[serde(default)]
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    #[serde(default)]
    pub lua: Option<Spanned<RawUserLua>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route mapping")]
pub struct RawRoute {
    #[serde(default)]
    pub name: Option<Str>,
    #[serde(default, rename = "match")]
    pub matcher: Option<Spanned<RawMatch>>,
    #[serde(default)]
    pub to: Option<Spanned<RawBackend>>,
    #[serde(default)]
    pub split: Option<Spanned<Vec<Spanned<RawWeighted>>>>,
    #[serde(default)]
    pub timeout: Option<Str>,
    #[serde(default)]
    pub retry: Option<Spanned<RawRetry>>,
    #[serde(default)]
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub validate: Option<Spanned<RawValidate>>,
    #[serde(default)]
    pub transform: Option<Spanned<RawTransforms>>,
    #[serde(default)]
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    #[serde(default)]
    pub lua: Option<Spanned<RawUserLua>>,
    // Traffic policy (see `raw_policy`).
    #[serde(default)]
    pub redirect: Option<Spanned<RawRedirect>>,
    #[serde(default)]
    pub direct_response: Option<Spanned<RawDirectResponse>>,
    #[serde(default)]
    pub hash: Option<Spanned<Vec<Spanned<RawHashPolicy>>>>,
    #[serde(default)]
    pub mirror: Option<Spanned<RawMirror>>,
    #[serde(default)]
    pub fault: Option<Spanned<RawFault>>,
    #[serde(default)]
    pub request_headers: Option<Spanned<RawHeaderEdits>>,
    #[serde(default)]
    pub response_headers: Option<Spanned<RawHeaderEdits>>,
    #[serde(default)]
    pub rewrite: Option<Spanned<RawRewrite>>,
    #[serde(default)]
    pub cors: Option<Spanned<RawCors>>,
    #[serde(default)]
    pub websocket: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a match mapping")]
pub struct RawMatch {
    #[serde(default)]
    pub prefix: Option<Str>,
    #[serde(default)]
    pub path: Option<Str>,
    #[serde(default)]
    pub regex: Option<Str>,
    #[serde(default)]
    pub headers: Vec<Spanned<RawValueMatch>>,
    #[serde(default)]
    pub query: Vec<Spanned<RawQueryMatch>>,
}

/// A header matcher; `invert` is only valid for headers.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a header match mapping")]
pub struct RawValueMatch {
    pub name: Str,
    #[serde(default)]
    pub exact: Option<Str>,
    #[serde(default)]
    pub prefix: Option<Str>,
    #[serde(default)]
    pub regex: Option<Str>,
    #[serde(default)]
    pub present: Option<Spanned<bool>>,
    #[serde(default)]
    pub invert: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a query parameter match mapping")]
pub struct RawQueryMatch {
    pub name: Str,
    #[serde(default)]
    pub exact: Option<Str>,
    #[serde(default)]
    pub prefix: Option<Str>,
    #[serde(default)]
    pub regex: Option<Str>,
    #[serde(default)]
    pub present: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a backend mapping")]
pub struct RawBackend {
    pub service: Str,
    #[serde(default)]
    pub subset: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a weighted backend mapping")]
pub struct RawWeighted {
    pub service: Str,
    #[serde(default)]
    pub subset: Option<Str>,
    pub weight: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a retry mapping")]
pub struct RawRetry {
    pub on: Spanned<Vec<Str>>,
    #[serde(default)]
    pub attempts: Option<Str>,
    #[serde(default)]
    pub per_try_timeout: Option<Str>,
}

const TOP_LEVEL_FIELDS: &[&str] = &["services", "listeners", "sources"];

/// Parses `text` into raw structs, reporting YAML and shape errors to `diags`.
/// `None` only when the file is not YAML at all (nothing else can be checked).
pub fn load(text: &str, diags: &mut Diags) -> Option<RawConfig> {
    if let Some(loc) = second_document(text) {
        diags.error_at(
            loc,
            ROOT,
            "a rules file holds exactly one YAML document; remove this `---`/`...` and what follows or merge it",
        );
    }
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(root) => root,
        Err(err) => {
            report_load_error(&err, diags);
            return None;
        }
    };
    diags.index_mappings(&root);
    let mut raw = RawConfig {
        services: Vec::new(),
        listeners: Vec::new(),
        sources: None,
        broken_services: BTreeSet::new(),
    };
    let Some(top) = root.as_mapping() else {
        diags.error(
            root.span(),
            ROOT,
            "the file must be a mapping with `services` and `listeners`",
        );
        return Some(raw);
    };
    for (key, value) in top.iter() {
        match key.as_str() {
            "services" => raw.services = items(value, "services", diags, &mut raw.broken_services),
            "listeners" => raw.listeners = items(value, "listeners", diags, &mut BTreeSet::new()),
            "sources" => raw.sources = single(value, "sources", diags),
            other => diags.error(key.span(), other, unknown_field(other, TOP_LEVEL_FIELDS)),
        }
    }
    Some(raw)
}

/// Deserializes one mapping, reporting a failure at its position.
fn single<T: DeserializeOwned>(node: &Node, field: &str, diags: &mut Diags) -> Option<T> {
    match marked_yaml::from_node::<T>(node) {
        Ok(raw) => Some(raw),
        Err(err) => {
            let loc = diags.loc(node.span());
            let err_loc = error_loc(node, &err, diags).unwrap_or(loc);
            let path = match err.path() {
                Some(sub) => format!("{field}.{sub}"),
                None => field.to_string(),
            };
            diags.error_at(err_loc, path, describe(&err));
            None
        }
    }
}

/// Deserializes each entry of the list `node` on its own. The `name` of an
/// entry that fails is added to `broken_names`.
fn items<T: DeserializeOwned>(
    node: &Node,
    field: &str,
    diags: &mut Diags,
    broken_names: &mut BTreeSet<String>,
) -> Vec<Item<T>> {
    let seq = match node {
        Node::Sequence(seq) => seq,
        Node::Scalar(s) if s.as_str().is_empty() => return Vec::new(),
        _ => {
            diags.error(
                node.span(),
                field,
                format!("wrong type: `{field}` must be a list"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (index, entry) in seq.iter().enumerate() {
        let path = format!("{field}[{index}]");
        let loc = diags.loc(entry.span());
        match marked_yaml::from_node::<T>(entry) {
            Ok(raw) => out.push(Item { index, raw }),
            Err(err) => {
                let err_loc = error_loc(entry, &err, diags).unwrap_or(loc);
                let full_path = match err.path() {
                    Some(sub) => format!("{path}.{sub}"),
                    None => path,
                };
                diags.error_at(err_loc, full_path, describe(&err));
                let name = entry.as_mapping().and_then(|m| m.get_scalar("name"));
                if let Some(name) = name {
                    broken_names.insert(name.as_str().to_string());
                }
            }
        }
    }
    out
}
