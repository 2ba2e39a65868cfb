//! What proxyless gRPC clients are served: the rules file's `grpc`
//! section, validated. `compile::grpc` turns each target into the
//! resources gRPC's xDS client asks for when it dials `xds:///<name>`.

use std::time::Duration;

use serde::Serialize;

use super::{RouteAction, RouteMatch};

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
}

impl GrpcTarget {
    pub fn serves_group(&self, group: &str) -> bool {
        match &self.groups {
            None => true,
            Some(groups) => groups.iter().any(|g| g == group),
        }
    }
}
