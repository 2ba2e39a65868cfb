//! A service's [`model::ServicePolicy`] → the fields of its Envoy clusters:
//! `health_checks`, `outlier_detection`, `circuit_breakers`,
//! `common_lb_config`, the LB-specific `lb_config`, the upstream protocol
//! (`typed_extension_protocol_options`, exactly one entry) and the TLS
//! `transport_socket`. Every subset cluster of a service gets the same
//! policy: a subset is the same service narrowed, not a different one.
//!
//! Where Envoy's defaults would surprise a reader of the rules, the mapping
//! is explicit: outlier detectors the rules do not name are switched off
//! (Envoy enforces `consecutive_5xx` and success rate by default), and a
//! health check's `no_traffic_interval` equals its `interval` (Envoy's
//! default is 60s for clusters that have seen no traffic yet).

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers::{thresholds::RetryBudget, Thresholds},
    cluster::{
        self, common_lb_config, CommonLbConfig, LeastRequestLbConfig, RoundRobinLbConfig,
        SlowStartConfig,
    },
    CircuitBreakers, Cluster, OutlierDetection,
};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, health_check, transport_socket, DataSource, HealthCheck, Http2ProtocolOptions,
    RoutingPriority, RuntimeDouble, TransportSocket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, CertificateValidationContext, CommonTlsContext,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{
        explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
    },
    HttpProtocolOptions,
};
use envoy_types::pb::envoy::r#type::v3::{Int64Range, Percent};
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};
use envoy_types::util::pack_any;

use super::{pb_duration, CompileError};
use crate::model;

/// The key Envoy looks up upstream HTTP options under.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// Sets the policy fields of `c`, a cluster of `service`.
pub(super) fn apply(service: &model::Service, c: &mut Cluster) -> Result<(), CompileError> {
    let p = &service.policy;
    let ctx = |field: &str| format!("service {:?} {field}", service.name);
    if let Some(hc) = &p.health_check {
        c.health_checks = vec![health_check(hc, &ctx("health_check"))?];
    }
    if let Some(o) = &p.outlier_detection {
        c.outlier_detection = Some(outlier_detection(o, &ctx("outlier_detection"))?);
    }
    if let Some(cb) = &p.circuit_breakers {
        c.circuit_breakers = Some(circuit_breakers(cb));
    }
    c.common_lb_config = common_lb_config(p);
    c.lb_config = lb_config(service, &ctx("slow_start"))?;
    if p.is_http2() {
        let options = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..Default::default()
        };
        // One entry: a protobuf map, see the determinism note in `compile`.
        c.typed_extension_protocol_options =
            [(HTTP_PROTOCOL_OPTIONS.to_owned(), pack_any(options))].into();
    }
    if let Some(tls) = &p.tls {
        c.transport_socket = Some(transport_socket(tls, p.is_http2()));
    }
    Ok(())
}

fn health_check(hc: &model::HealthCheck, ctx: &str) -> Result<HealthCheck, CompileError> {
    let checker = match &hc.kind {
        model::HealthCheckKind::Http {
            path,
            expected_statuses,
        } => health_check::HealthChecker::HttpHealthCheck(health_check::HttpHealthCheck {
            path: path.clone(),
            // Envoy's ranges are half-open: [start, end).
            expected_statuses: expected_statuses
                .iter()
                .map(|(lo, hi)| Int64Range {
                    start: i64::from(*lo),
                    end: i64::from(*hi) + 1,
                })
                .collect(),
            ..Default::default()
        }),
        model::HealthCheckKind::Tcp => {
            health_check::HealthChecker::TcpHealthCheck(health_check::TcpHealthCheck::default())
        }
        model::HealthCheckKind::Grpc { service } => {
            health_check::HealthChecker::GrpcHealthCheck(health_check::GrpcHealthCheck {
                service_name: service.clone(),
                ..Default::default()
            })
        }
    };
    let interval = pb_duration(hc.interval, || format!("{ctx}.interval"))?;
    Ok(HealthCheck {
        timeout: Some(pb_duration(hc.timeout, || format!("{ctx}.timeout"))?),
        no_traffic_interval: Some(interval),
        interval: Some(interval),
        healthy_threshold: Some(UInt32Value {
            value: hc.healthy_threshold,
        }),
        unhealthy_threshold: Some(UInt32Value {
            value: hc.unhealthy_threshold,
        }),
        health_checker: Some(checker),
        ..Default::default()
    })
}

pub(super) fn outlier_detection(
    o: &model::OutlierDetection,
    ctx: &str,
) -> Result<OutlierDetection, CompileError> {
    let u32v = |value: u32| Some(UInt32Value { value });
    // Envoy enforces consecutive 5xx and success rate at 100% unless told
    // otherwise; enforce exactly the detectors the rules name.
    let enforce = |on: bool| u32v(if on { 100 } else { 0 });
    let mut out = OutlierDetection {
        consecutive_5xx: o.consecutive_5xx.and_then(u32v),
        enforcing_consecutive_5xx: enforce(o.consecutive_5xx.is_some()),
        consecutive_gateway_failure: o.consecutive_gateway_errors.and_then(u32v),
        enforcing_consecutive_gateway_failure: enforce(o.consecutive_gateway_errors.is_some()),
        enforcing_success_rate: enforce(o.success_rate.is_some()),
        enforcing_failure_percentage: enforce(o.failure_percentage.is_some()),
        interval: Some(pb_duration(o.interval, || format!("{ctx}.interval"))?),
        base_ejection_time: Some(pb_duration(o.base_ejection_time, || {
            format!("{ctx}.base_ejection_time")
        })?),
        max_ejection_percent: u32v(o.max_ejection_percent),
        ..Default::default()
    };
    if let Some(sr) = &o.success_rate {
        out.success_rate_minimum_hosts = u32v(sr.minimum_hosts);
        out.success_rate_request_volume = u32v(sr.request_volume);
        out.success_rate_stdev_factor = u32v(sr.stdev_factor);
    }
    if let Some(fp) = &o.failure_percentage {
        out.failure_percentage_threshold = u32v(fp.threshold);
        out.failure_percentage_minimum_hosts = u32v(fp.minimum_hosts);
        out.failure_percentage_request_volume = u32v(fp.request_volume);
    }
    Ok(out)
}

fn circuit_breakers(cb: &model::CircuitBreakers) -> CircuitBreakers {
    let u32v = |v: Option<u32>| v.map(|value| UInt32Value { value });
    CircuitBreakers {
        thresholds: vec![Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: u32v(cb.max_connections),
            max_pending_requests: u32v(cb.max_pending_requests),
            max_requests: u32v(cb.max_requests),
            max_retries: u32v(cb.max_retries),
            retry_budget: cb.retry_budget.as_ref().map(|b| RetryBudget {
                budget_percent: Some(Percent {
                    value: f64::from(b.percent),
                }),
                min_retry_concurrency: u32v(Some(b.min_concurrency)),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn common_lb_config(p: &model::ServicePolicy) -> Option<CommonLbConfig> {
    let locality = p.locality_lb.as_deref().map(|l| match l {
        model::LocalityLb::Weighted(_) => {
            common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                common_lb_config::LocalityWeightedLbConfig {},
            )
        }
        model::LocalityLb::ZoneAware {
            routing_enabled,
            min_cluster_size,
        } => common_lb_config::LocalityConfigSpecifier::ZoneAwareLbConfig(
            common_lb_config::ZoneAwareLbConfig {
                routing_enabled: Some(Percent {
                    value: f64::from(*routing_enabled),
                }),
                min_cluster_size: Some(UInt64Value {
                    value: *min_cluster_size,
                }),
                fail_traffic_on_panic: false,
            },
        ),
    });
    if p.panic_threshold.is_none() && locality.is_none() {
        return None;
    }
    Some(CommonLbConfig {
        healthy_panic_threshold: p.panic_threshold.map(|v| Percent {
            value: f64::from(v),
        }),
        locality_config_specifier: locality,
        ..Default::default()
    })
}

fn lb_config(
    service: &model::Service,
    ctx: &str,
) -> Result<Option<cluster::LbConfig>, CompileError> {
    let p = &service.policy;
    // RuntimeDouble requires a runtime key; none is ever set in the runtime,
    // so the default value is what applies.
    let runtime = |what: &str, milli: u32| RuntimeDouble {
        default_value: f64::from(milli) / 1000.0,
        runtime_key: format!("sluice.{}.{what}", service.name),
    };
    let slow_start = p
        .slow_start
        .as_ref()
        .map(|s| -> Result<SlowStartConfig, CompileError> {
            Ok(SlowStartConfig {
                slow_start_window: Some(pb_duration(s.window, || format!("{ctx}.window"))?),
                aggression: s
                    .aggression_milli
                    .map(|a| runtime("slow_start_aggression", a)),
                ..Default::default()
            })
        })
        .transpose()?;
    Ok(match service.lb_policy {
        model::LbPolicy::LeastRequest if p.least_request.is_some() || slow_start.is_some() => {
            let lr = p.least_request.as_ref();
            Some(cluster::LbConfig::LeastRequestLbConfig(
                LeastRequestLbConfig {
                    choice_count: lr.map(|l| UInt32Value {
                        value: l.choice_count,
                    }),
                    active_request_bias: lr
                        .and_then(|l| l.active_request_bias_milli)
                        .map(|b| runtime("active_request_bias", b)),
                    slow_start_config: slow_start,
                },
            ))
        }
        model::LbPolicy::RoundRobin if slow_start.is_some() => {
            Some(cluster::LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
                slow_start_config: slow_start,
            }))
        }
        _ => None,
    })
}

fn transport_socket(tls: &model::UpstreamTls, http2: bool) -> TransportSocket {
    let validation = tls.ca_file.as_ref().map(|file| {
        ValidationContextType::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(DataSource {
                specifier: Some(data_source::Specifier::Filename(file.clone())),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    let context = UpstreamTlsContext {
        sni: tls.sni.clone(),
        common_tls_context: Some(CommonTlsContext {
            // HTTP/2 over TLS is negotiated by ALPN.
            alpn_protocols: if http2 {
                vec!["h2".to_owned()]
            } else {
                Vec::new()
            },
            validation_context_type: validation,
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}
