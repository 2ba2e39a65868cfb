//! `RouteConfiguration` protos → [`super::RouteTable`] parts: matchers with
//! their regexes built, actions with Envoy's defaults filled in, and what
//! Envoy rejects (or the simulator does not model) turned into errors.

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    route, route_action, route_match::PathSpecifier, HeaderMatcher,
};
use envoy_types::pb::google::protobuf::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::entry::{Action, Clusters, Forward, Matcher, PathMatch, Retry, Route, DEFAULT_TIMEOUT};
use crate::decode::{pb_duration, DecodeError};
use crate::filters::{per_filter, PerFilterChain};
use crate::hash::HashPolicy;
use crate::http::{full_regex, value_match, HeaderEdits, ValueMatch};

// Envoy still honours the deprecated direct matchers; so must we.
#[allow(deprecated)]
fn header_matcher(h: &HeaderMatcher) -> Result<Matcher, DecodeError> {
    let (value, present) = match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::StringMatch(sm)) => (Some(value_match(sm)?), true),
        Some(HeaderMatchSpecifier::ExactMatch(s)) => {
            (Some(ValueMatch::Exact(s.clone(), false)), true)
        }
        Some(HeaderMatchSpecifier::PrefixMatch(s)) => {
            (Some(ValueMatch::Prefix(s.clone(), false)), true)
        }
        Some(HeaderMatchSpecifier::SafeRegexMatch(re)) => {
            (Some(ValueMatch::Regex(full_regex(&re.regex)?)), true)
        }
        Some(HeaderMatchSpecifier::PresentMatch(p)) => (None, *p),
        // No specifier: Envoy matches on presence.
        None => (None, true),
        Some(other) => {
            return Err(DecodeError::Unsupported(format!(
                "header matcher {other:?}"
            )))
        }
    };
    if h.treat_missing_header_as_empty {
        return Err(DecodeError::Unsupported(
            "header matcher treat_missing_header_as_empty".into(),
        ));
    }
    Ok(Matcher {
        name: h.name.to_ascii_lowercase(),
        value,
        invert: h.invert_match,
        present,
    })
}

/// The per-filter configs at one level, put before the `inherited` ones of
/// the enclosing level (most specific first).
pub(super) fn filter_configs(
    typed: &HashMap<String, Any>,
    inherited: &BTreeMap<String, PerFilterChain>,
) -> Result<BTreeMap<String, PerFilterChain>, DecodeError> {
    let mut out = inherited.clone();
    for (name, any) in typed {
        if let Some(cfg) = per_filter(name, any)? {
            out.entry(name.clone()).or_default().insert(0, cfg);
        }
    }
    Ok(out)
}

pub(super) fn compile_route(
    r: &envoy_types::pb::envoy::config::route::v3::Route,
    inherited: &BTreeMap<String, PerFilterChain>,
    outer_edits: &Edits,
) -> Result<Route, DecodeError> {
    let unsupported = |what: &str| DecodeError::Unsupported(format!("route {:?}: {what}", r.name));
    let m = r.r#match.clone().unwrap_or_default();
    if m.runtime_fraction.is_some() || m.grpc.is_some() || !m.dynamic_metadata.is_empty() {
        return Err(unsupported(
            "runtime_fraction, grpc or dynamic_metadata match",
        ));
    }
    if !m.cookies.is_empty() || m.tls_context.is_some() || !m.filter_state.is_empty() {
        return Err(unsupported("cookie, tls_context or filter_state match"));
    }
    let path = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(PathSpecifier::SafeRegex(re)) => PathMatch::Regex(full_regex(&re.regex)?),
        Some(PathSpecifier::PathSeparatedPrefix(p)) => PathMatch::SeparatedPrefix(p.clone()),
        _ => return Err(unsupported("path specifier")),
    };
    let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
    let headers = m
        .headers
        .iter()
        .map(header_matcher)
        .collect::<Result<_, _>>()?;
    let query = m
        .query_parameters
        .iter()
        .map(|q| {
            let v = match &q.query_parameter_match_specifier {
                Some(QueryParameterMatchSpecifier::StringMatch(sm)) => Some(value_match(sm)?),
                Some(QueryParameterMatchSpecifier::PresentMatch(_)) | None => None,
            };
            Ok((q.name.clone(), v))
        })
        .collect::<Result<_, DecodeError>>()?;
    let action = match &r.action {
        Some(route::Action::Route(ra)) => Action::Forward(forward(ra, &unsupported)?),
        Some(route::Action::DirectResponse(d)) => {
            Action::Direct(u16::try_from(d.status).unwrap_or(500))
        }
        Some(route::Action::Redirect(_)) => Action::Redirect,
        _ => return Err(unsupported("action")),
    };
    let edits = Edits::of(
        &format!("route {:?}", r.name),
        (&r.request_headers_to_add, &r.request_headers_to_remove),
        (&r.response_headers_to_add, &r.response_headers_to_remove),
    )?
    .then(outer_edits);
    Ok(Route {
        request_headers: edits.request,
        response_headers: edits.response,
        name: r.name.clone(),
        path,
        case_sensitive,
        headers,
        query,
        action,
        filters: filter_configs(&r.typed_per_filter_config, inherited)?,
    })
}

// `total_weight` is deprecated but Envoy still enforces it when set.
#[allow(deprecated)]
fn forward(
    ra: &envoy_types::pb::envoy::config::route::v3::RouteAction,
    unsupported: &dyn Fn(&str) -> DecodeError,
) -> Result<Forward, DecodeError> {
    if ra.cors.is_some() {
        return Err(unsupported("cors field (use typed_per_filter_config)"));
    }
    let clusters = match &ra.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(c)) => Clusters::One(c.clone()),
        Some(route_action::ClusterSpecifier::WeightedClusters(wc)) => {
            let edits = |c: &&envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight| {
                !c.request_headers_to_add.is_empty()
                    || !c.request_headers_to_remove.is_empty()
                    || !c.response_headers_to_add.is_empty()
                    || !c.response_headers_to_remove.is_empty()
                    || !c.typed_per_filter_config.is_empty()
            };
            if wc.clusters.iter().any(|c| edits(&c)) {
                return Err(unsupported(
                    "weighted cluster header edits or per-filter configs",
                ));
            }
            let clusters: Vec<(String, u64)> = wc
                .clusters
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        c.weight.as_ref().map_or(0, |w| u64::from(w.value)),
                    )
                })
                .collect();
            let total: u64 = clusters.iter().map(|(_, w)| w).sum();
            if let Some(declared) = &wc.total_weight {
                if u64::from(declared.value) != total {
                    return Err(DecodeError::Invalid(format!(
                        "Sum of weights in the weighted_cluster should add up to {}",
                        declared.value
                    )));
                }
            }
            if total == 0 {
                return Err(DecodeError::Invalid(
                    "Sum of weights in the weighted_cluster must be greater than 0.".into(),
                ));
            }
            let runtime_key_prefix =
                (!wc.runtime_key_prefix.is_empty()).then(|| wc.runtime_key_prefix.clone());
            Clusters::Weighted {
                clusters,
                total,
                runtime_key_prefix,
            }
        }
        _ => return Err(unsupported("cluster specifier")),
    };
    let retry = ra.retry_policy.as_ref().map(|rp| {
        let on: Vec<&str> = rp.retry_on.split(',').map(str::trim).collect();
        Retry {
            on_5xx: on.contains(&"5xx"),
            on_gateway_error: on.contains(&"gateway-error") || on.contains(&"5xx"),
            on_reset: on.contains(&"reset") || on.contains(&"connect-failure"),
            num_retries: rp.num_retries.as_ref().map_or(1, |n| n.value),
            per_try_timeout: rp.per_try_timeout.as_ref().map(pb_duration),
        }
    });
    let hash_policy = ra
        .hash_policy
        .iter()
        .map(HashPolicy::compile)
        .collect::<Result<_, _>>()?;
    Ok(Forward {
        clusters,
        timeout: ra.timeout.as_ref().map_or(DEFAULT_TIMEOUT, pb_duration),
        retry,
        hash_policy,
    })
}

/// Header edits of one level and those of the levels around it.
#[derive(Clone, Debug, Default)]
pub(super) struct Edits {
    request: Vec<Arc<HeaderEdits>>,
    response: Vec<Arc<HeaderEdits>>,
}

type Options<'a> = (
    &'a [envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
    &'a [String],
);

impl Edits {
    pub(super) fn of(
        what: &str,
        request: Options,
        response: Options,
    ) -> Result<Edits, DecodeError> {
        let one = |(add, remove): Options| -> Result<Vec<Arc<HeaderEdits>>, DecodeError> {
            let e = HeaderEdits::decode(what, add, remove)?;
            Ok(if e.is_empty() {
                vec![]
            } else {
                vec![Arc::new(e)]
            })
        };
        Ok(Edits {
            request: one(request)?,
            response: one(response)?,
        })
    }

    /// These edits, then the enclosing level's.
    pub(super) fn then(mut self, outer: &Edits) -> Edits {
        self.request.extend(outer.request.iter().cloned());
        self.response.extend(outer.response.iter().cloned());
        self
    }
}
