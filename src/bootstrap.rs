//! Envoy v3 bootstrap generation: the static file an Envoy starts from to
//! find sluice.
//!
//! The bootstrap names the node (id and cluster, the cluster being the node
//! group sluice serves it by), binds the admin interface to loopback, points
//! CDS and LDS (and, through them, EDS and RDS) at one ADS stream, and
//! defines the single static cluster `sluice_xds` that stream runs over
//! (HTTP/2 with keepalives, so a dead control plane is noticed). A failed
//! stream is retried after a jittered backoff from [`XDS_RETRY_BASE`] to
//! [`XDS_RETRY_MAX`] (`envoy_grpc.retry_policy.retry_back_off`), not
//! Envoy's default of 500 ms growing to 30 s: after a sluice restart Envoys
//! came back up to 13 s later.
//!
//! With several replicas (`--xds A:P,B:P`), the cluster holds each, a
//! stream goes to a random one (so proxies spread), and a replica that
//! refuses or drops connections is ejected for a while (outlier detection
//! on connection failures), so a reconnect after a replica dies lands on a
//! live one.
//!
//! The runtime is two layers: sluice's RTDS layer
//! ([`crate::model::RUNTIME_LAYER`], over the same ADS stream), through
//! which rollouts with `--rollout-weights runtime` move weights, then the
//! admin layer, so `/runtime_modify` still overrides anything. Envoy loads
//! RTDS layers before it asks for clusters; sluice always serves the layer
//! (empty without such rollouts), so that costs one round trip.
//!
//! The JSON is built with `serde_json::json!`, never by formatting strings,
//! so any user string (a node id with quotes or newlines) is escaped.
//! `serde_json`'s `preserve_order` keeps keys in the order written here, so
//! the output is stable and diffable.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde_json::{json, Value};

/// The static cluster the ADS stream runs over.
pub const XDS_CLUSTER: &str = "sluice_xds";

/// Envoy retries a failed ADS stream after a random delay below a ceiling
/// that starts here and doubles with each failure.
pub const XDS_RETRY_BASE: &str = "0.250s";

/// The highest ceiling of that delay.
pub const XDS_RETRY_MAX: &str = "5s";

/// What a bootstrap needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// `node.id`: unique per Envoy.
    pub node_id: String,
    /// `node.cluster`: the node group sluice serves this Envoy by.
    pub cluster: String,
    /// Host name or IP literal of the sluice xDS server.
    pub xds_host: String,
    pub xds_port: u16,
    /// Further sluice replicas serving the same fleet (`--xds A,B,…`: the
    /// first is `xds_host:xds_port`).
    pub xds_replicas: Vec<(String, u16)>,
    /// Admin interface address; must be loopback. Default 127.0.0.1.
    pub admin_address: IpAddr,
    /// Admin interface port (0 lets the kernel pick). Default 9901.
    pub admin_port: u16,
    /// Use delta (incremental) ADS instead of state-of-the-world.
    pub delta: bool,
    /// The service this Envoy runs beside, for zone-aware routing: sets
    /// `cluster_manager.local_cluster_name` and adds a static EDS cluster of
    /// that name whose endpoints come from sluice over ADS (Envoy requires
    /// the local cluster to be static; CDS leaves it alone).
    pub local_cluster: Option<String>,
    /// TLS to sluice (`--xds-ca`, `--client-cert`, `--client-key`,
    /// `--xds-sni`).
    pub tls: Option<XdsClientTls>,
    /// A bearer token sent as gRPC initial metadata (`--token-file`).
    pub token: Option<String>,
}

/// How Envoy reaches sluice over TLS. The files are named, never inlined:
/// Envoy reads them through file-based SDS ([`sds_files`]) and so picks
/// up a rotated certificate without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsClientTls {
    /// The CA bundle sluice's server certificate chains to (absolute).
    pub ca: PathBuf,
    /// The proxy's client certificate chain and key (absolute), for mTLS.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The server name to send and to verify sluice's certificate against;
    /// default: the host of `--xds`.
    pub sni: Option<String>,
    /// Where the SDS files are written (the bootstrap's directory).
    pub sds_dir: PathBuf,
}

/// The name of the SDS secret holding the proxy's client certificate.
pub const XDS_CLIENT_SECRET: &str = "sluice_xds_client";
/// The name of the SDS secret holding the CA sluice's certificate is
/// checked against.
pub const XDS_CA_SECRET: &str = "sluice_xds_ca";

/// Why a bootstrap could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error("node id must not be empty")]
    EmptyNodeId,
    #[error("cluster (node group) must not be empty")]
    EmptyCluster,
    #[error("xDS host must not be empty")]
    EmptyXdsHost,
    #[error("xDS port must not be 0")]
    ZeroXdsPort,
    #[error("local cluster name must not be empty")]
    EmptyLocalCluster,
    #[error("local cluster must not be named {XDS_CLUSTER:?}, the xDS server's own cluster")]
    LocalClusterIsXds,
    #[error("admin address {0} is not loopback; Envoy's admin interface must not be exposed")]
    AdminNotLoopback(IpAddr),
    #[error("the token holds characters an HTTP header cannot carry (control characters or whitespace inside)")]
    BadToken,
    #[error("sluice replicas on different hosts need --xds-sni: the one name every replica's certificate holds")]
    ReplicasNeedSni,
}

impl BootstrapOptions {
    pub const DEFAULT_ADMIN_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    pub const DEFAULT_ADMIN_PORT: u16 = 9901;

    /// Options with the default admin address and port.
    pub fn new(
        node_id: impl Into<String>,
        cluster: impl Into<String>,
        xds_host: impl Into<String>,
        xds_port: u16,
    ) -> BootstrapOptions {
        BootstrapOptions {
            node_id: node_id.into(),
            cluster: cluster.into(),
            xds_host: xds_host.into(),
            xds_port,
            xds_replicas: Vec::new(),
            admin_address: Self::DEFAULT_ADMIN_ADDRESS,
            admin_port: Self::DEFAULT_ADMIN_PORT,
            delta: false,
            local_cluster: None,
            tls: None,
            token: None,
        }
    }

    fn validate(&self) -> Result<(), BootstrapError> {
        if self.node_id.is_empty() {
            return Err(BootstrapError::EmptyNodeId);
        }
        if self.cluster.is_empty() {
            return Err(BootstrapError::EmptyCluster);
        }
        for (host, port) in self.xds_addresses() {
            if host.is_empty() {
                return Err(BootstrapError::EmptyXdsHost);
            }
            if port == 0 {
                return Err(BootstrapError::ZeroXdsPort);
            }
        }
        if let Some(tls) = &self.tls {
            let several_hosts = self.xds_addresses().any(|(h, _)| h != bare(&self.xds_host));
            if several_hosts && tls.sni.is_none() {
                return Err(BootstrapError::ReplicasNeedSni);
            }
        }
        match self.local_cluster.as_deref() {
            Some("") => return Err(BootstrapError::EmptyLocalCluster),
            Some(XDS_CLUSTER) => return Err(BootstrapError::LocalClusterIsXds),
            _ => {}
        }
        if !self.admin_address.is_loopback() {
            return Err(BootstrapError::AdminNotLoopback(self.admin_address));
        }
        if let Some(token) = &self.token {
            if token.is_empty() || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(BootstrapError::BadToken);
            }
        }
        Ok(())
    }
}

impl BootstrapOptions {
    /// Every sluice replica's host (without IPv6 brackets) and port, the
    /// first one first.
    fn xds_addresses(&self) -> impl Iterator<Item = (&str, u16)> {
        std::iter::once((bare(&self.xds_host), self.xds_port))
            .chain(self.xds_replicas.iter().map(|(h, p)| (bare(h), *p)))
    }
}

/// A host without the brackets of an IPv6 literal (`[::1]` → `::1`).
fn bare(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Render the bootstrap as pretty JSON (with a trailing newline).
pub fn render(opts: &BootstrapOptions) -> Result<String, BootstrapError> {
    let value = bootstrap(opts)?;
    // Serializing a `Value` to a String cannot fail (all keys are strings).
    let mut out = serde_json::to_string_pretty(&value).unwrap_or_default();
    out.push('\n');
    Ok(out)
}

/// The bootstrap as a JSON value.
pub fn bootstrap(opts: &BootstrapOptions) -> Result<Value, BootstrapError> {
    opts.validate()?;
    let ads = json!({ "ads": {}, "resource_api_version": "V3" });
    let mut clusters = vec![xds_cluster(opts)];
    if let Some(local) = &opts.local_cluster {
        clusters.push(json!({
            "name": local,
            "type": "EDS",
            "connect_timeout": "1s",
            "eds_cluster_config": { "eds_config": ads.clone() },
        }));
    }
    let mut value = json!({
        "node": { "id": opts.node_id, "cluster": opts.cluster },
        "admin": {
            "address": socket_address(&opts.admin_address.to_string(), opts.admin_port),
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if opts.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "grpc_services": [grpc_service(opts)],
                "set_node_on_first_message_only": true,
            },
            "cds_config": ads.clone(),
            "lds_config": ads.clone(),
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": crate::model::RUNTIME_LAYER,
                    "rtds_layer": { "name": crate::model::RUNTIME_LAYER, "rtds_config": ads },
                },
                { "name": "admin", "admin_layer": {} },
            ],
        },
        "static_resources": { "clusters": clusters },
    });
    if let Some(local) = &opts.local_cluster {
        value["cluster_manager"] = json!({ "local_cluster_name": local });
    }
    Ok(value)
}

/// The ADS gRPC service: the `sluice_xds` cluster, retried quickly, with
/// the token as `authorization` metadata when there is one.
fn grpc_service(opts: &BootstrapOptions) -> Value {
    let mut service = json!({
        "envoy_grpc": {
            "cluster_name": XDS_CLUSTER,
            "retry_policy": {
                "retry_back_off": {
                    "base_interval": XDS_RETRY_BASE,
                    "max_interval": XDS_RETRY_MAX,
                },
            },
        },
    });
    if let Some(token) = &opts.token {
        service["initial_metadata"] =
            json!([{ "key": "authorization", "value": format!("Bearer {token}") }]);
    }
    service
}

/// The files Envoy reads its xDS TLS secrets from (file-based SDS), with
/// their contents: the client certificate and the CA. Empty without TLS.
pub fn sds_files(opts: &BootstrapOptions) -> Vec<(PathBuf, Value)> {
    let Some(tls) = &opts.tls else {
        return Vec::new();
    };
    let secret = |name: &str, body: (&str, Value)| {
        let mut secret = json!({
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": name,
        });
        secret[body.0] = body.1;
        json!({ "resources": [secret] })
    };
    let mut files = vec![(
        tls.sds_dir.join(format!("{XDS_CA_SECRET}.json")),
        secret(
            XDS_CA_SECRET,
            (
                "validation_context",
                json!({ "trusted_ca": { "filename": tls.ca } }),
            ),
        ),
    )];
    if let Some((cert, key)) = &tls.client {
        files.push((
            tls.sds_dir.join(format!("{XDS_CLIENT_SECRET}.json")),
            secret(
                XDS_CLIENT_SECRET,
                (
                    "tls_certificate",
                    json!({
                        "certificate_chain": { "filename": cert },
                        "private_key": { "filename": key },
                    }),
                ),
            ),
        ));
    }
    files
}

/// The xDS cluster's TLS: ALPN h2, the CA and client certificate from
/// the SDS files, and sluice's certificate checked for the server name.
fn transport_socket(host: &str, tls: &XdsClientTls) -> Value {
    let sds = |name: &str| {
        json!({
            "name": name,
            "sds_config": {
                "path_config_source": {
                    "path": tls.sds_dir.join(format!("{name}.json")),
                },
                "resource_api_version": "V3",
            },
        })
    };
    let name = tls.sni.as_deref().unwrap_or(host);
    let san_type = if name.parse::<IpAddr>().is_ok() {
        "IP_ADDRESS"
    } else {
        "DNS"
    };
    let mut common = json!({
        "alpn_protocols": ["h2"],
        "combined_validation_context": {
            "default_validation_context": {
                "match_typed_subject_alt_names": [
                    { "san_type": san_type, "matcher": { "exact": name } },
                ],
            },
            "validation_context_sds_secret_config": sds(XDS_CA_SECRET),
        },
    });
    if tls.client.is_some() {
        common["tls_certificate_sds_secret_configs"] = json!([sds(XDS_CLIENT_SECRET)]);
    }
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common,
    });
    if san_type == "DNS" {
        context["sni"] = json!(name);
    }
    json!({ "name": "envoy.transport_sockets.tls", "typed_config": context })
}

fn xds_cluster(opts: &BootstrapOptions) -> Value {
    // An IP literal needs no resolution; a name is re-resolved by Envoy so a
    // moved control plane is found again. `[::1]` is accepted as well.
    let host = bare(&opts.xds_host);
    let discovery = if opts
        .xds_addresses()
        .all(|(h, _)| h.parse::<IpAddr>().is_ok())
    {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    let lb_endpoints: Vec<Value> = opts
        .xds_addresses()
        .map(|(h, p)| json!({ "endpoint": { "address": socket_address(h, p) } }))
        .collect();
    let mut cluster = json!({
        "name": XDS_CLUSTER,
        "type": discovery,
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": { "interval": "30s", "timeout": "5s" },
                    },
                },
            },
        },
        "upstream_connection_options": { "tcp_keepalive": {} },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{ "lb_endpoints": lb_endpoints }],
        },
    });
    if !opts.xds_replicas.is_empty() {
        // Each proxy picks a replica at random, so a fleet spreads over
        // them. A replica whose connections fail (refused, reset, timed
        // out: local-origin failures) is ejected at once for a few
        // seconds, so the stream's retry goes to a live one.
        cluster["lb_policy"] = json!("RANDOM");
        cluster["outlier_detection"] = json!({
            "split_external_local_origin_errors": true,
            "consecutive_local_origin_failure": 1,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 100,
        });
    }
    if let Some(tls) = &opts.tls {
        cluster["transport_socket"] = transport_socket(host, tls);
    }
    cluster
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_opts() -> BootstrapOptions {
        BootstrapOptions::new("edge-1", "edge", "127.0.0.1", 18000)
    }

    #[test]
    fn ip_literal_is_static_and_name_is_strict_dns() {
        let b = bootstrap(&mk_opts()).expect("valid");
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STATIC");
        let mut opts = mk_opts();
        opts.xds_host = "sluice.internal".into();
        let b = bootstrap(&opts).expect("valid");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STRICT_DNS");
        let addr = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"];
        assert_eq!(addr["address"], "sluice.internal");
        assert_eq!(addr["port_value"], 18000);
    }

    #[test]
    fn several_replicas_are_picked_at_random_and_a_failing_one_is_skipped() {
        let single = bootstrap(&mk_opts()).expect("valid");
        let cluster = &single["static_resources"]["clusters"][0];
        assert!(cluster.get("lb_policy").is_none() && cluster.get("outlier_detection").is_none());

        let mut opts = mk_opts();
        opts.xds_replicas = vec![("127.0.0.2".into(), 18001), ("[::1]".into(), 18002)];
        let b = bootstrap(&opts).expect("valid");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STATIC");
        assert_eq!(cluster["lb_policy"], "RANDOM");
        assert_eq!(
            cluster["outlier_detection"]["consecutive_local_origin_failure"],
            1
        );
        let addrs: Vec<(String, u64)> = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| {
                let a = &e["endpoint"]["address"]["socket_address"];
                (
                    a["address"].as_str().unwrap_or_default().to_string(),
                    a["port_value"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            addrs,
            [
                ("127.0.0.1".to_string(), 18000),
                ("127.0.0.2".to_string(), 18001),
                ("::1".to_string(), 18002)
            ]
        );

        // One name among them: resolved by Envoy.
        opts.xds_replicas[0].0 = "sluice-b.internal".into();
        let b = bootstrap(&opts).expect("valid");
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STRICT_DNS");

        opts.xds_replicas[1].1 = 0;
        assert_eq!(bootstrap(&opts).err(), Some(BootstrapError::ZeroXdsPort));
    }

    #[test]
    fn tls_to_replicas_on_different_hosts_needs_the_one_name_they_share() {
        let mut opts = mk_opts();
        opts.tls = Some(XdsClientTls {
            ca: "/etc/sluice/ca.pem".into(),
            client: None,
            sni: None,
            sds_dir: "/etc/envoy".into(),
        });
        opts.xds_replicas = vec![("127.0.0.1".into(), 18001)];
        assert!(bootstrap(&opts).is_ok(), "one host, two ports: its name");
        opts.xds_replicas = vec![("127.0.0.2".into(), 18000)];
        assert_eq!(
            bootstrap(&opts).err(),
            Some(BootstrapError::ReplicasNeedSni)
        );
        if let Some(tls) = opts.tls.as_mut() {
            tls.sni = Some("sluice.internal".into());
        }
        let b = bootstrap(&opts).expect("valid with --xds-sni");
        let ctx = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert_eq!(ctx["sni"], "sluice.internal");
    }

    #[test]
    fn bracketed_ipv6_is_static_without_brackets() {
        let mut opts = mk_opts();
        opts.xds_host = "[::1]".into();
        let b = bootstrap(&opts).expect("valid");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STATIC");
        let ep = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
        assert_eq!(ep["address"]["socket_address"]["address"], "::1");
    }

    #[test]
    fn node_admin_and_ads() {
        let mut opts = mk_opts();
        opts.admin_port = 19000;
        let b = bootstrap(&opts).expect("valid");
        assert_eq!(b["node"], json!({ "id": "edge-1", "cluster": "edge" }));
        assert_eq!(
            b["admin"]["address"]["socket_address"],
            json!({ "address": "127.0.0.1", "port_value": 19000 })
        );
        let dynamic = &b["dynamic_resources"];
        assert_eq!(
            dynamic["ads_config"]["grpc_services"][0]["envoy_grpc"]["cluster_name"],
            XDS_CLUSTER
        );
        assert_eq!(
            dynamic["ads_config"]["set_node_on_first_message_only"],
            true
        );
        assert_eq!(dynamic["cds_config"], dynamic["lds_config"]);
        assert_eq!(dynamic["cds_config"]["resource_api_version"], "V3");
    }

    #[test]
    fn the_ads_stream_is_retried_from_250ms_up_to_5s() {
        // Envoy's default (500 ms growing to 30 s) kept proxies away for
        // up to 13 s after a sluice restart.
        for delta in [false, true] {
            let mut opts = mk_opts();
            opts.delta = delta;
            let b = bootstrap(&opts).expect("valid");
            let grpc = &b["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"];
            assert_eq!(
                grpc["retry_policy"],
                json!({ "retry_back_off": { "base_interval": "0.250s", "max_interval": "5s" } })
            );
        }
    }

    #[test]
    fn runtime_is_sluices_rtds_layer_then_the_admin_layer() {
        let b = bootstrap(&mk_opts()).expect("valid");
        let layers = &b["layered_runtime"]["layers"];
        assert_eq!(layers[0]["rtds_layer"]["name"], crate::model::RUNTIME_LAYER);
        assert_eq!(
            layers[0]["rtds_layer"]["rtds_config"], b["dynamic_resources"]["cds_config"],
            "over the ADS stream"
        );
        assert_eq!(layers[1], json!({ "name": "admin", "admin_layer": {} }));
        assert!(layers.get(2).is_none());
    }

    #[test]
    fn local_cluster_is_named_and_static_eds_over_ads() {
        let b = bootstrap(&mk_opts()).expect("valid");
        assert!(b.get("cluster_manager").is_none(), "off by default");
        let mut opts = mk_opts();
        opts.local_cluster = Some("web".into());
        let b = bootstrap(&opts).expect("valid");
        assert_eq!(b["cluster_manager"]["local_cluster_name"], "web");
        let local = &b["static_resources"]["clusters"][1];
        assert_eq!(local["name"], "web");
        assert_eq!(local["type"], "EDS");
        assert_eq!(
            local["eds_cluster_config"]["eds_config"], b["dynamic_resources"]["cds_config"],
            "endpoints from sluice over ADS"
        );
    }

    #[test]
    fn invalid_options_are_rejected() {
        type Mutate = fn(&mut BootstrapOptions);
        let cases: [(Mutate, BootstrapError); 7] = [
            (|o| o.node_id.clear(), BootstrapError::EmptyNodeId),
            (|o| o.cluster.clear(), BootstrapError::EmptyCluster),
            (|o| o.xds_host.clear(), BootstrapError::EmptyXdsHost),
            (|o| o.xds_port = 0, BootstrapError::ZeroXdsPort),
            (
                |o| o.local_cluster = Some(String::new()),
                BootstrapError::EmptyLocalCluster,
            ),
            (
                |o| o.local_cluster = Some(XDS_CLUSTER.into()),
                BootstrapError::LocalClusterIsXds,
            ),
            (
                |o| o.admin_address = IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                BootstrapError::AdminNotLoopback(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ),
        ];
        for (mutate, want) in cases {
            let mut opts = mk_opts();
            mutate(&mut opts);
            assert_eq!(render(&opts), Err(want));
        }
    }

    fn mk_tls(client: bool, sni: Option<&str>) -> XdsClientTls {
        XdsClientTls {
            ca: "/etc/sluice/ca.pem".into(),
            client: client.then(|| ("/etc/envoy/xds.pem".into(), "/etc/envoy/xds.key".into())),
            sni: sni.map(str::to_string),
            sds_dir: "/etc/envoy".into(),
        }
    }

    #[test]
    fn tls_reads_the_ca_and_client_certificate_through_file_sds() {
        let mut opts = mk_opts();
        opts.xds_host = "sluice.internal".into();
        opts.tls = Some(mk_tls(true, None));
        let b = bootstrap(&opts).expect("valid");
        let tls = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "sluice.internal");
        let common = &tls["common_tls_context"];
        assert_eq!(common["alpn_protocols"], json!(["h2"]));
        assert_eq!(
            common["tls_certificate_sds_secret_configs"][0]["sds_config"]["path_config_source"]
                ["path"],
            "/etc/envoy/sluice_xds_client.json"
        );
        let validation = &common["combined_validation_context"];
        assert_eq!(
            validation["default_validation_context"]["match_typed_subject_alt_names"],
            json!([{ "san_type": "DNS", "matcher": { "exact": "sluice.internal" } }])
        );
        assert_eq!(
            validation["validation_context_sds_secret_config"]["name"],
            XDS_CA_SECRET
        );
        // No key or certificate bytes in the bootstrap itself.
        let text = render(&opts).expect("render");
        assert!(!text.contains("BEGIN"), "{text}");
        let files = sds_files(&opts);
        assert_eq!(files.len(), 2);
        let client = &files[1].1["resources"][0];
        assert_eq!(client["name"], XDS_CLIENT_SECRET);
        assert_eq!(
            client["tls_certificate"]["private_key"]["filename"],
            "/etc/envoy/xds.key"
        );
        assert_eq!(
            files[0].1["resources"][0]["validation_context"]["trusted_ca"]["filename"],
            "/etc/sluice/ca.pem"
        );
    }

    #[test]
    fn an_ip_literal_is_checked_as_an_ip_san_without_sni() {
        let mut opts = mk_opts();
        opts.tls = Some(mk_tls(false, None));
        let b = bootstrap(&opts).expect("valid");
        let tls = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert!(tls.get("sni").is_none());
        assert!(tls["common_tls_context"]
            .get("tls_certificate_sds_secret_configs")
            .is_none());
        assert_eq!(
            tls["common_tls_context"]["combined_validation_context"]["default_validation_context"]
                ["match_typed_subject_alt_names"][0]["san_type"],
            "IP_ADDRESS"
        );
        assert_eq!(sds_files(&opts).len(), 1);
        // --xds-sni names what is checked instead.
        opts.tls = Some(mk_tls(false, Some("sluice.internal")));
        let b = bootstrap(&opts).expect("valid");
        assert_eq!(
            b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]["sni"],
            "sluice.internal"
        );
    }

    #[test]
    fn a_token_is_sent_as_authorization_metadata() {
        let mut opts = mk_opts();
        opts.token = Some("s3cret".into());
        let b = bootstrap(&opts).expect("valid");
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"],
            json!([{ "key": "authorization", "value": "Bearer s3cret" }])
        );
        opts.token = Some("two words".into());
        assert_eq!(render(&opts), Err(BootstrapError::BadToken));
    }
}
