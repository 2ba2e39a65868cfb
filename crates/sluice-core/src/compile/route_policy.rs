//! A route's [`model::RoutePolicy`] and its local actions → Envoy route
//! fields: hash policies, mirror policies, rewrites and upgrades on the
//! `RouteAction`; `RedirectAction` and `DirectResponseAction`; header edits
//! on the `Route`; fault and CORS as `typed_per_filter_config` for the
//! filters `listener` puts in the HTTP connection manager.
//!
//! `typed_per_filter_config` is a protobuf map, which prost encodes in
//! random order; route configurations are therefore encoded by
//! `compile::canonical`, with map entries in key order.

use envoy_types::pb::envoy::config::core::v3::{
    data_source, header_value_option::HeaderAppendAction, DataSource, HeaderValue,
    HeaderValueOption, RuntimeFractionalPercent,
};
use envoy_types::pb::envoy::config::route::v3::{
    redirect_action, route_action, route_action::hash_policy, DirectResponseAction, RedirectAction,
    Route, RouteAction,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{fault_delay, FaultDelay};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort, FaultAbort, HttpFault,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher, RegexMatchAndSubstitute, StringMatcher,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;

use super::{pb_duration, regex, CompileError};
use crate::model;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// Adds the policy's upstream options to a route action.
pub(super) fn route_action(
    p: &model::RoutePolicy,
    action: &mut RouteAction,
    ctx: &dyn Fn(&str) -> String,
) -> Result<(), CompileError> {
    action.hash_policy = p
        .hash
        .iter()
        .map(|h| hash_policy(h, ctx))
        .collect::<Result<_, _>>()?;
    action.request_mirror_policies = p
        .mirror
        .iter()
        .map(|m| route_action::RequestMirrorPolicy {
            cluster: m.backend.cluster_name(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(percent(m.percent)),
                runtime_key: String::new(),
            }),
            ..Default::default()
        })
        .collect();
    if let Some(rw) = &p.rewrite {
        if let Some(prefix) = &rw.prefix {
            action.prefix_rewrite = prefix.clone();
        }
        if let Some((pattern, substitution)) = &rw.regex {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(pattern)),
                substitution: substitution.clone(),
            });
        }
        if let Some(host) = &rw.host {
            action.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(host.clone()),
            );
        }
    }
    if p.websocket {
        // The HCM lists websocket disabled; this route turns it on.
        action.upgrade_configs = vec![route_action::UpgradeConfig {
            upgrade_type: "websocket".to_owned(),
            enabled: Some(BoolValue { value: true }),
            ..Default::default()
        }];
    }
    Ok(())
}

pub(super) fn hash_policy(
    h: &model::HashPolicy,
    ctx: &dyn Fn(&str) -> String,
) -> Result<route_action::HashPolicy, CompileError> {
    let spec =
        match h {
            model::HashPolicy::Header(name) => {
                hash_policy::PolicySpecifier::Header(hash_policy::Header {
                    header_name: name.clone(),
                    ..Default::default()
                })
            }
            model::HashPolicy::Cookie { name, ttl, path } => {
                hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                    name: name.clone(),
                    ttl: ttl
                        .map(|t| pb_duration(t, || ctx("hash.cookie.ttl")))
                        .transpose()?,
                    path: path.clone().unwrap_or_default(),
                    ..Default::default()
                })
            }
            model::HashPolicy::SourceIp => hash_policy::PolicySpecifier::ConnectionProperties(
                hash_policy::ConnectionProperties { source_ip: true },
            ),
            model::HashPolicy::QueryParameter(name) => {
                hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
                    name: name.clone(),
                })
            }
        };
    Ok(route_action::HashPolicy {
        policy_specifier: Some(spec),
        terminal: false,
    })
}

pub(super) fn redirect(r: &model::Redirect) -> RedirectAction {
    use redirect_action::RedirectResponseCode as Code;
    let code = match r.code {
        302 => Code::Found,
        303 => Code::SeeOther,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => Code::MovedPermanently,
    };
    let path = match (&r.path, &r.prefix) {
        (Some(path), _) => Some(redirect_action::PathRewriteSpecifier::PathRedirect(
            path.clone(),
        )),
        (None, Some(prefix)) => Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(
            prefix.clone(),
        )),
        (None, None) => None,
    };
    RedirectAction {
        host_redirect: r.host.clone().unwrap_or_default(),
        response_code: code as i32,
        scheme_rewrite_specifier: r
            .https
            .then_some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)),
        path_rewrite_specifier: path,
        ..Default::default()
    }
}

pub(super) fn direct_response(r: &model::DirectResponse) -> DirectResponseAction {
    DirectResponseAction {
        status: r.status,
        body: r.body.as_ref().map(|b| DataSource {
            specifier: Some(data_source::Specifier::InlineString(b.clone())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Header edits and per-filter config on the route itself.
pub(super) fn decorate(
    p: &model::RoutePolicy,
    out: &mut Route,
    ctx: &dyn Fn(&str) -> String,
) -> Result<(), CompileError> {
    out.request_headers_to_add = header_options(&p.request_headers);
    out.request_headers_to_remove = p.request_headers.remove.clone();
    out.response_headers_to_add = header_options(&p.response_headers);
    out.response_headers_to_remove = p.response_headers.remove.clone();
    // At most one entry (rules guarantee it): a map, see `compile`.
    if let Some(f) = &p.fault {
        out.typed_per_filter_config = [(FAULT_FILTER.to_owned(), pack_any(fault(f, ctx)?))].into();
    } else if let Some(c) = &p.cors {
        out.typed_per_filter_config = [(CORS_FILTER.to_owned(), pack_any(cors(c, ctx)?))].into();
    }
    Ok(())
}

fn header_options(edits: &model::HeaderEdits) -> Vec<HeaderValueOption> {
    edits
        .set
        .iter()
        .map(|(key, value)| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })
        .collect()
}

pub(super) fn fault(
    f: &model::Fault,
    ctx: &dyn Fn(&str) -> String,
) -> Result<HttpFault, CompileError> {
    let delay = f
        .delay
        .as_ref()
        .map(|d| -> Result<FaultDelay, CompileError> {
            Ok(FaultDelay {
                percentage: Some(percent(d.percent)),
                fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(
                    pb_duration(d.duration, || ctx("fault.delay.duration"))?,
                )),
            })
        })
        .transpose()?;
    Ok(HttpFault {
        delay,
        abort: f.abort.as_ref().map(|a| FaultAbort {
            percentage: Some(percent(a.percent)),
            error_type: Some(fault_abort::ErrorType::HttpStatus(a.status)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn cors(c: &model::Cors, ctx: &dyn Fn(&str) -> String) -> Result<CorsPolicy, CompileError> {
    let max_age = c
        .max_age
        .map(|m| pb_duration(m, || ctx("cors.max_age")).map(|d| d.seconds.to_string()))
        .transpose()?;
    Ok(CorsPolicy {
        allow_origin_string_match: c
            .allow_origins
            .iter()
            .map(|o| StringMatcher {
                match_pattern: Some(if o == "*" {
                    string_matcher::MatchPattern::SafeRegex(regex(".*"))
                } else {
                    string_matcher::MatchPattern::Exact(o.clone())
                }),
                ..Default::default()
            })
            .collect(),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: max_age.unwrap_or_default(),
        allow_credentials: c.allow_credentials.then_some(BoolValue { value: true }),
        ..Default::default()
    })
}

/// A whole-number percentage as Envoy's `FractionalPercent`.
fn percent(p: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: p,
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    }
}
