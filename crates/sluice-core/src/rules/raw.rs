//! The rules file as written: YAML text → raw serde structs, nothing checked
//! beyond shape.
//!
//! Unknown fields and wrong types are rejected here (`deny_unknown_fields`).
//! The YAML is read as a stream of events (`rules::yaml`), with no tree:
//! the top of the file is walked here, and each service and each listener
//! is deserialized on its own so that one malformed entry does not hide
//! the problems in the others. Scalars that
//! need range or format checks (ports, weights, durations) stay strings with
//! their spans; `validate` turns them into model values.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::chunked::{self, Chunked};
use super::diagnose::{second_document, unknown_field};
use super::discovery::{RawDiscovery, RawSources};
use super::error::{Diags, Loc, ROOT};
use super::filters::{RawAuth, RawRateLimit, RawTransforms, RawUserLua, RawValidate};
use super::listener_tls::RawListenerTls;
use super::raw_policy::*;
use super::spanned_map::SpannedMap;
use super::xds_access::RawAccess;
use super::yaml::{self, Events, KeySet, NodeStart, Spanned};

type Str = Spanned<String>;

/// The whole file; entries that failed to deserialize are left out (and
/// reported).
pub struct RawConfig {
    /// In chunks (see `chunked`): a file may hold 100,000s of services.
    pub services: Chunked<Item<RawService>>,
    pub listeners: Chunked<Item<RawListener>>,
    /// The `sources` section; `None` when absent or malformed (reported).
    pub sources: Option<RawSources>,
    /// Names of services whose entry failed to deserialize: references to
    /// them are not reported as dangling, the entry's own error explains.
    pub broken_services: BTreeSet<String>,
    /// The `xds_access` entries that deserialized.
    pub xds_access: Chunked<Item<Spanned<RawAccess>>>,
    /// The `grpc` targets that deserialized.
    pub grpc: Chunked<Item<Spanned<RawGrpcTarget>>>,
}

/// A list entry with its index in the file's list.
pub struct Item<T> {
    pub index: usize,
    pub raw: T,
}

/// A service as written: its name, endpoints and subsets, and the rest,
/// which most services leave out, boxed (`more`): 96 bytes, not 304 (a
/// file may hold 100,000s of services, all held until validation takes
/// them).
/// Read as [`RawServiceFields`] (so errors are serde's for that struct),
/// then packed.
#[derive(Deserialize)]
#[serde(from = "RawServiceFields")]
pub struct RawService {
    pub name: Str,
    /// In chunks, not one `Vec`: a service may list 100,000s of them.
    /// `validate` takes them and frees each chunk once it has built its
    /// model endpoints (raw and model endpoints are then never all held
    /// at once).
    pub endpoints: Chunked<Spanned<RawEndpoint>>,
    pub subsets: SpannedMap<BTreeMap<String, String>>,
    /// `None` when the entry sets none of [`RawServiceMore`]'s fields.
    more: Option<Box<RawServiceMore>>,
}

/// A service's optional settings.
pub struct RawServiceMore {
    pub connect_timeout: Option<Str>,
    pub lb_policy: Option<Str>,
    pub discovery: Option<Box<Spanned<RawDiscovery>>>,
    // Traffic policy (see `raw_policy`).
    pub health_check: Option<Box<Spanned<RawHealthCheck>>>,
    pub panic_threshold: Option<Str>,
    pub outlier_detection: Option<Box<Spanned<RawOutlier>>>,
    pub circuit_breakers: Option<Box<Spanned<RawCircuitBreakers>>>,
    pub least_request: Option<Box<Spanned<RawLeastRequest>>>,
    pub slow_start: Option<Box<Spanned<RawSlowStart>>>,
    pub locality_weights: Option<Spanned<Vec<Spanned<RawLocalityWeight>>>>,
    pub zone_aware: Option<Box<Spanned<RawZoneAware>>>,
    pub protocol: Option<Str>,
    pub tls: Option<Box<Spanned<RawUpstreamTls>>>,
}

/// What a service without optional settings reads as its settings.
static NO_MORE: RawServiceMore = RawServiceMore {
    connect_timeout: None,
    lb_policy: None,
    discovery: None,
    health_check: None,
    panic_threshold: None,
    outlier_detection: None,
    circuit_breakers: None,
    least_request: None,
    slow_start: None,
    locality_weights: None,
    zone_aware: None,
    protocol: None,
    tls: None,
};

impl RawService {
    /// The optional settings (all `None` when the entry has none).
    pub fn more(&self) -> &RawServiceMore {
        self.more.as_deref().unwrap_or(&NO_MORE)
    }
}

/// A service entry's fields as read, before [`RawService`] packs them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a service mapping")]
pub struct RawServiceFields {
    name: Str,
    #[serde(default)]
    connect_timeout: Option<Str>,
    #[serde(default)]
    lb_policy: Option<Str>,
    #[serde(default)]
    endpoints: Chunked<Spanned<RawEndpoint>>,
    #[serde(default)]
    subsets: SpannedMap<BTreeMap<String, String>>,
    #[serde(default)]
    discovery: Option<Box<Spanned<RawDiscovery>>>,
    #[serde(default)]
    health_check: Option<Box<Spanned<RawHealthCheck>>>,
    #[serde(default)]
    panic_threshold: Option<Str>,
    #[serde(default)]
    outlier_detection: Option<Box<Spanned<RawOutlier>>>,
    #[serde(default)]
    circuit_breakers: Option<Box<Spanned<RawCircuitBreakers>>>,
    #[serde(default)]
    least_request: Option<Box<Spanned<RawLeastRequest>>>,
    #[serde(default)]
    slow_start: Option<Box<Spanned<RawSlowStart>>>,
    #[serde(default)]
    locality_weights: Option<Spanned<Vec<Spanned<RawLocalityWeight>>>>,
    #[serde(default)]
    zone_aware: Option<Box<Spanned<RawZoneAware>>>,
    #[serde(default)]
    protocol: Option<Str>,
    #[serde(default)]
    tls: Option<Box<Spanned<RawUpstreamTls>>>,
}

impl From<RawServiceFields> for RawService {
    fn from(f: RawServiceFields) -> RawService {
        let RawServiceFields {
            name,
            connect_timeout,
            lb_policy,
            endpoints,
            subsets,
            discovery,
            health_check,
            panic_threshold,
            outlier_detection,
            circuit_breakers,
            least_request,
            slow_start,
            locality_weights,
            zone_aware,
            protocol,
            tls,
        } = f;
        let more = RawServiceMore {
            connect_timeout,
            lb_policy,
            discovery,
            health_check,
            panic_threshold,
            outlier_detection,
            circuit_breakers,
            least_request,
            slow_start,
            locality_weights,
            zone_aware,
            protocol,
            tls,
        };
        let none = more.connect_timeout.is_none()
            && more.lb_policy.is_none()
            && more.discovery.is_none()
            && more.health_check.is_none()
            && more.panic_threshold.is_none()
            && more.outlier_detection.is_none()
            && more.circuit_breakers.is_none()
            && more.least_request.is_none()
            && more.slow_start.is_none()
            && more.locality_weights.is_none()
            && more.zone_aware.is_none()
            && more.protocol.is_none()
            && more.tls.is_none();
        RawService {
            name,
            endpoints,
            subsets,
            more: (!none).then(|| Box::new(more)),
        }
    }
}

/// An endpoint as written, in 56 bytes (the fields as read, 264): a file
/// may hold 100,000s, all held until validation takes them. Address and
/// port are in every entry; the rest, rare, is boxed. Read as [`RawEndpointFields`]
/// (so errors are serde's for that struct), then packed.
#[derive(Deserialize)]
#[serde(from = "RawEndpointFields")]
pub struct RawEndpoint {
    pub address: Spanned<Box<str>>,
    pub port: Spanned<Box<str>>,
    /// `None` when the entry has none of them.
    pub more: Option<Box<RawEndpointMore>>,
}

/// The optional fields of an endpoint.
pub struct RawEndpointMore {
    pub weight: Option<Str>,
    pub labels: BTreeMap<String, String>,
    pub health: Option<Str>,
    pub locality: Option<Spanned<RawLocality>>,
    pub priority: Option<Str>,
}

/// An endpoint entry's fields as read, before [`RawEndpoint`] packs them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an endpoint mapping")]
pub struct RawEndpointFields {
    address: Spanned<Box<str>>,
    port: Spanned<Box<str>>,
    #[serde(default)]
    weight: Option<Str>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    health: Option<Str>,
    #[serde(default)]
    locality: Option<Spanned<RawLocality>>,
    #[serde(default)]
    priority: Option<Str>,
}

impl From<RawEndpointFields> for RawEndpoint {
    fn from(f: RawEndpointFields) -> RawEndpoint {
        let RawEndpointFields {
            address,
            port,
            weight,
            labels,
            health,
            locality,
            priority,
        } = f;
        let more = RawEndpointMore {
            weight,
            labels,
            health,
            locality,
            priority,
        };
        let none = more.weight.is_none()
            && more.labels.is_empty()
            && more.health.is_none()
            && more.locality.is_none()
            && more.priority.is_none();
        RawEndpoint {
            address,
            port,
            more: (!none).then(|| Box::new(more)),
        }
    }
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

/// A `grpc` target as written (see `grpc`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a grpc target mapping")]
pub struct RawGrpcTarget {
    pub target: Str,
    #[serde(default)]
    pub groups: Option<Spanned<Vec<Str>>>,
    pub routes: Spanned<Vec<Spanned<RawGrpcRoute>>>,
}

/// A route of a `grpc` target: the route fields gRPC clients take.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a gRPC route mapping")]
pub struct RawGrpcRoute {
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
    pub retry: Option<Spanned<RawGrpcRetry>>,
    #[serde(default)]
    pub hash: Option<Spanned<Vec<Spanned<super::raw_policy::RawHashPolicy>>>>,
    #[serde(default)]
    pub fault: Option<Spanned<super::raw_policy::RawFault>>,
}

/// A gRPC route's `retry` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a retry mapping")]
pub struct RawGrpcRetry {
    pub on: Spanned<Vec<Str>>,
    #[serde(default)]
    pub attempts: Option<Str>,
    #[serde(default)]
    pub backoff: Option<Spanned<RawBackoff>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a backoff mapping {base, max}")]
pub struct RawBackoff {
    pub base: Str,
    #[serde(default)]
    pub max: Option<Str>,
}

const TOP_LEVEL_FIELDS: &[&str] = &["services", "listeners", "sources", "xds_access", "grpc"];

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
    let mut raw = RawConfig {
        services: Chunked::default(),
        listeners: Chunked::default(),
        sources: None,
        broken_services: BTreeSet::new(),
        xds_access: Chunked::default(),
        grpc: Chunked::default(),
    };
    // If the text turns out not to be YAML further down, that one error is
    // all the file reports: nothing read before it can be trusted to be
    // what the user meant.
    let before = diags.count();
    match walk(&mut Events::new(text), &mut raw, diags) {
        Ok(()) => Some(raw),
        Err(not_yaml) => {
            diags.truncate(before);
            report(&not_yaml, diags);
            None
        }
    }
}

/// Reads the top mapping of the file into `raw`. `Err` for a syntax error,
/// which ends the event stream, or an anchor or tag on a top-level value
/// (which has no entry to leave out): the file then reports that alone.
fn walk(events: &mut Events, raw: &mut RawConfig, diags: &mut Diags) -> Result<(), yaml::Error> {
    if !events.start_document()? {
        // Empty, or only comments: an empty mapping, as marked-yaml read it.
        return Ok(());
    }
    match events.peek_node()? {
        NodeStart::Mapping(_) => events.enter()?,
        NodeStart::Sequence(at) | NodeStart::Scalar { at, .. } | NodeStart::End(at) => {
            let msg = "the file must be a mapping with `services` and `listeners`";
            diags.error_at(Loc::from(at), ROOT, msg);
            return Ok(());
        }
    }
    let mut seen = KeySet::default();
    loop {
        let key = match events.next_key(&mut seen) {
            Ok(Some((key, _))) => key,
            Ok(None) => return Ok(()),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                // A duplicate or non-scalar top-level key: its value is not read.
                report(&e, diags);
                events.skip_node()?;
                continue;
            }
        };
        match &*key {
            "services" => {
                raw.services = items(events, "services", diags, &mut raw.broken_services)?
            }
            "listeners" => raw.listeners = items(events, "listeners", diags, &mut BTreeSet::new())?,
            "sources" => raw.sources = single(events, "sources", diags)?,
            "xds_access" => {
                raw.xds_access = items(events, "xds_access", diags, &mut BTreeSet::new())?
            }
            "grpc" => raw.grpc = items(events, "grpc", diags, &mut BTreeSet::new())?,
            other => {
                let msg = unknown_field(other, TOP_LEVEL_FIELDS);
                diags.error_at(Loc::from(events.last_key()), other, msg);
                events.skip_node()?;
            }
        }
    }
}

fn report(error: &yaml::Error, diags: &mut Diags) {
    let loc = error.marker().map_or(Loc::START, Loc::from);
    let path = if error.path().is_empty() {
        ROOT
    } else {
        error.path()
    };
    diags.error_at(loc, path, error.message());
}

/// Deserializes one mapping, reporting a failure at its position.
fn single<T: DeserializeOwned>(
    events: &mut Events,
    field: &str,
    diags: &mut Diags,
) -> Result<Option<T>, yaml::Error> {
    match events.entry::<T>(field) {
        Ok(raw) => Ok(Some(raw)),
        Err(e) if e.error.is_fatal() => Err(e.error),
        Err(e) => {
            report(&e.error, diags);
            Ok(None)
        }
    }
}

/// Deserializes each entry of the list that is the next node on its own.
/// The `name` of an entry that fails is added to `broken_names`.
fn items<T: DeserializeOwned>(
    events: &mut Events,
    field: &str,
    diags: &mut Diags,
    broken_names: &mut BTreeSet<String>,
) -> Result<Chunked<Item<T>>, yaml::Error> {
    match events.peek_node()? {
        NodeStart::Sequence(_) => events.enter()?,
        NodeStart::Scalar { value: "", .. } => {
            events.skip_node()?;
            return Ok(Chunked::default());
        }
        NodeStart::Mapping(at) | NodeStart::Scalar { at, .. } | NodeStart::End(at) => {
            let msg = format!("wrong type: `{field}` must be a list");
            diags.error_at(Loc::from(at), field, msg);
            events.skip_node()?;
            return Ok(Chunked::default());
        }
    }
    let mut out = chunked::Builder::default();
    let mut index = 0;
    while events.next_item()? {
        match events.entry::<T>(&format!("{field}[{index}]")) {
            Ok(raw) => out.push(Item { index, raw }),
            Err(e) if e.error.is_fatal() => return Err(e.error),
            Err(e) => {
                report(&e.error, diags);
                if let Some(name) = e.name {
                    broken_names.insert(name.into_owned());
                }
            }
        }
        index += 1;
    }
    Ok(out.finish())
}
