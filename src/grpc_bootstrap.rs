//! The xDS bootstrap of a proxyless gRPC client: the JSON file gRPC's own
//! xDS client reads from `GRPC_XDS_BOOTSTRAP` before it resolves an
//! `xds:///` target (`sluice bootstrap --grpc`).
//!
//! It names one xDS server (sluice), how to reach it (`channel_creds`:
//! `insecure`, or `tls` with a CA and optionally a client certificate,
//! gRFC A65), and the node: its id, its `cluster` (the node group sluice
//! serves it by) and the metadata `sluice_client: grpc`, which tells sluice
//! to serve it what gRPC clients take rather than an Envoy's listeners.
//! `server_features` lists `xds_v3` (older gRPC releases need it to speak
//! xDS v3, newer ones ignore it). The node has an empty `locality`, which
//! grpc-js requires and the other gRPC clients accept.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::xds::session::CLIENT_METADATA_KEY;

/// What a gRPC bootstrap needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcBootstrapOptions {
    pub node_id: String,
    /// `node.cluster`: the node group.
    pub cluster: String,
    /// Host name or IP literal of the sluice xDS server (no brackets).
    pub xds_host: String,
    pub xds_port: u16,
    /// TLS to sluice: the CA bundle sluice's certificate chains to.
    pub ca: Option<PathBuf>,
    /// The client certificate chain and key, for mTLS (needs `ca`).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Why a gRPC bootstrap could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcBootstrapError {
    #[error("node id must not be empty")]
    EmptyNodeId,
    #[error("cluster (node group) must not be empty")]
    EmptyCluster,
    #[error("xDS host must not be empty")]
    EmptyXdsHost,
    #[error("xDS port must not be 0")]
    ZeroXdsPort,
    #[error("a client certificate needs the CA (--xds-ca) too")]
    ClientWithoutCa,
}

/// The bootstrap as pretty JSON, with a trailing newline.
pub fn render(opts: &GrpcBootstrapOptions) -> Result<String, GrpcBootstrapError> {
    let value = bootstrap(opts)?;
    let mut out = serde_json::to_string_pretty(&value).unwrap_or_default();
    out.push('\n');
    Ok(out)
}

/// The bootstrap as a JSON value (built with `json!`, so every user
/// string is escaped).
pub fn bootstrap(opts: &GrpcBootstrapOptions) -> Result<Value, GrpcBootstrapError> {
    if opts.node_id.is_empty() {
        return Err(GrpcBootstrapError::EmptyNodeId);
    }
    if opts.cluster.is_empty() {
        return Err(GrpcBootstrapError::EmptyCluster);
    }
    if opts.xds_host.is_empty() {
        return Err(GrpcBootstrapError::EmptyXdsHost);
    }
    if opts.xds_port == 0 {
        return Err(GrpcBootstrapError::ZeroXdsPort);
    }
    let creds = match (&opts.ca, &opts.client) {
        (None, None) => json!({ "type": "insecure" }),
        (None, Some(_)) => return Err(GrpcBootstrapError::ClientWithoutCa),
        (Some(ca), client) => {
            let mut config = json!({ "ca_certificate_file": ca });
            if let Some((cert, key)) = client {
                config["certificate_file"] = json!(cert);
                config["private_key_file"] = json!(key);
            }
            json!({ "type": "tls", "config": config })
        }
    };
    // An IPv6 literal is bracketed in a URI authority.
    let host = if opts.xds_host.contains(':') {
        format!("[{}]", opts.xds_host)
    } else {
        opts.xds_host.clone()
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert(CLIENT_METADATA_KEY.to_owned(), json!("grpc"));
    Ok(json!({
        "xds_servers": [{
            "server_uri": format!("{host}:{}", opts.xds_port),
            "channel_creds": [creds],
            "server_features": ["xds_v3"],
        }],
        "node": {
            "id": opts.node_id,
            "cluster": opts.cluster,
            "metadata": metadata,
            // grpc-js (@grpc/grpc-js-xds) refuses a node without it.
            "locality": {},
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> GrpcBootstrapOptions {
        GrpcBootstrapOptions {
            node_id: "app-1".into(),
            cluster: "apps".into(),
            xds_host: "127.0.0.1".into(),
            xds_port: 18000,
            ca: None,
            client: None,
        }
    }

    #[test]
    fn plaintext_bootstrap_names_the_server_and_marks_the_node_as_grpc() {
        let v = bootstrap(&opts()).expect("renders");
        let server = &v["xds_servers"][0];
        assert_eq!(server["server_uri"], "127.0.0.1:18000");
        assert_eq!(server["channel_creds"], json!([{ "type": "insecure" }]));
        assert_eq!(v["node"]["id"], "app-1");
        assert_eq!(v["node"]["cluster"], "apps");
        assert_eq!(v["node"]["metadata"]["sluice_client"], "grpc");
        assert_eq!(v["node"]["locality"], json!({}));
    }

    #[test]
    fn tls_names_the_files_and_ipv6_is_bracketed() {
        let mut o = opts();
        o.xds_host = "::1".into();
        o.ca = Some("/etc/ca.pem".into());
        o.client = Some(("/etc/c.pem".into(), "/etc/c.key".into()));
        let v = bootstrap(&o).expect("renders");
        let server = &v["xds_servers"][0];
        assert_eq!(server["server_uri"], "[::1]:18000");
        let creds = &server["channel_creds"][0];
        assert_eq!(creds["type"], "tls");
        assert_eq!(creds["config"]["ca_certificate_file"], "/etc/ca.pem");
        assert_eq!(creds["config"]["certificate_file"], "/etc/c.pem");
        assert_eq!(creds["config"]["private_key_file"], "/etc/c.key");
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = opts();
        o.node_id.clear();
        assert_eq!(bootstrap(&o), Err(GrpcBootstrapError::EmptyNodeId));
        let mut o = opts();
        o.client = Some(("/c".into(), "/k".into()));
        assert_eq!(bootstrap(&o), Err(GrpcBootstrapError::ClientWithoutCa));
    }
}
