//! What proxyless gRPC clients are served: the rules file's `grpc`
//! section, validated. `compile::grpc` turns each target into the
//! resources gRPC's xDS client asks for when it dials `xds:///<name>`.

use std::time::Duration;

use serde::Serialize;

use super::{Fault, HashPolicy, RouteAction, RouteMatch};

/// One name gRPC clients dial (`xds:///greeter`): its routes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrpcTarget {
    /// The target as dialled, without `xds:///`: `greeter`, or
    /// `greeter.shop:50051`. It names the Listener resource gRPC asks for
    /// and is the one domain of its virtual host.
    pub name: String,
    /// Node groups whose gRPC clients receive it; `None`: every group.
    pub groups: Option<Vec<String>>,
    /// Ordered: gRPC takes the first route that matches.
    pub routes: Vec<GrpcRoute>,
}

/// A route as gRPC clients take it: a match on the method path
/// (`/package.Service/Method`) and headers (request metadata), and one
/// backend or a weighted split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrpcRoute {
    pub name: String,
    /// Never holds query matchers (gRPC skips such routes).
    pub matcher: RouteMatch,
    /// [`RouteAction::Backend`] or [`RouteAction::Split`] only.
    pub action: RouteAction,
    /// The longest an RPC may take (`max_stream_duration`); `None`: the
    /// client's own deadline alone.
    pub timeout: Option<Duration>,
    /// Retries as gRPC's client makes them (gRFC A44).
    pub retry: Option<GrpcRetry>,
    /// What ring hash hashes (gRFC A42): [`HashPolicy::Header`] only.
    pub hash: Vec<HashPolicy>,
    /// Delays and aborts the client injects itself (gRFC A33).
    pub fault: Option<Fault>,
}

/// The status codes gRPC clients retry on (gRFC A44); other `retry_on`
/// values gRPC ignores, so they are not accepted.
pub const GRPC_RETRY_ON: &[&str] = &[
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// gRPC caps attempts at 5: 4 retries after the first.
pub const GRPC_MAX_RETRIES: u32 = 4;

/// A gRPC route's retry policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrpcRetry {
    /// Status codes, from [`GRPC_RETRY_ON`].
    pub on: Vec<String>,
    /// Retries after the first attempt, 1 to [`GRPC_MAX_RETRIES`].
    pub attempts: u32,
    /// Exponential backoff between attempts: base and cap; `None`:
    /// gRPC's defaults (25 ms, 250 ms).
    pub backoff: Option<(Duration, Duration)>,
}

impl GrpcTarget {
    pub fn serves_group(&self, group: &str) -> bool {
        match &self.groups {
            None => true,
            Some(groups) => groups.iter().any(|g| g == group),
        }
    }
}
