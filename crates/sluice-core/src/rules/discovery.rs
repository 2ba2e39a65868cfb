//! The discovery parts of a rules file: a service's `discovery` block and
//! the top-level `sources` section, raw structs and their checks.
//!
//! Shape is checked by serde (`deny_unknown_fields`) like the rest of
//! `raw`; this file then checks meaning: a service that discovers from a
//! registry needs that registry's connection settings in `sources`, etcd
//! prefixes end with `/`, URLs have a scheme. The result is
//! [`model::Discovery`] per service and [`model::Sources`] for the file.

use std::time::Duration;

use crate::rules::yaml::Spanned;
use serde::Deserialize;

use super::duration::parse_duration;
use super::error::Diags;
use crate::model::{ConsulSource, Discovery, EtcdSource, KubernetesSource, Sources};

type Str = Spanned<String>;

/// `services[i].discovery`: one entry per registry kind, at least one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a discovery mapping")]
pub struct RawDiscovery {
    #[serde(default)]
    pub consul: Option<Spanned<RawConsulRef>>,
    #[serde(default)]
    pub etcd: Option<Spanned<RawEtcdRef>>,
    #[serde(default)]
    pub kubernetes: Option<Spanned<RawKubernetesRef>>,
    #[serde(default)]
    pub file: Option<Spanned<RawFileRef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a consul discovery mapping")]
pub struct RawConsulRef {
    pub service: Str,
    #[serde(default)]
    pub tag: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an etcd discovery mapping")]
pub struct RawEtcdRef {
    pub prefix: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a kubernetes discovery mapping")]
pub struct RawKubernetesRef {
    pub namespace: Str,
    pub service: Str,
    pub port: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a file discovery mapping")]
pub struct RawFileRef {
    pub path: Str,
}

/// The top-level `sources` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a sources mapping")]
pub struct RawSources {
    #[serde(default)]
    pub consul: Option<Spanned<RawConsulSource>>,
    #[serde(default)]
    pub etcd: Option<Spanned<RawEtcdSource>>,
    #[serde(default)]
    pub kubernetes: Option<Spanned<RawKubernetesSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a consul source mapping")]
pub struct RawConsulSource {
    pub address: Str,
    #[serde(default)]
    pub datacenter: Option<Str>,
    #[serde(default)]
    pub token_env: Option<Str>,
    #[serde(default)]
    pub wait: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an etcd source mapping")]
pub struct RawEtcdSource {
    pub endpoints: Spanned<Vec<Str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a kubernetes source mapping")]
pub struct RawKubernetesSource {
    #[serde(default)]
    pub kubeconfig: Option<Str>,
}

/// Checks the `sources` section.
pub fn sources(raw: Option<&RawSources>, d: &mut Diags) -> Sources {
    let Some(raw) = raw else {
        return Sources::default();
    };
    let consul = raw.consul.as_ref().map(|c| {
        url(d, &c.address, "sources.consul.address");
        if let Some(dc) = &c.datacenter {
            non_empty(d, dc, "sources.consul.datacenter");
        }
        if let Some(env) = &c.token_env {
            non_empty(d, env, "sources.consul.token_env");
        }
        ConsulSource {
            address: c.address.trim_end_matches('/').to_string(),
            datacenter: c.datacenter.as_ref().map(|s| s.to_string()),
            token_env: c.token_env.as_ref().map(|s| s.to_string()),
            wait: c
                .wait
                .as_ref()
                .map_or(CONSUL_WAIT_DEFAULT, |w| consul_wait(d, w)),
        }
    });
    let etcd = raw.etcd.as_ref().map(|e| {
        if e.endpoints.is_empty() {
            let msg = "give at least one etcd client URL, e.g. [http://127.0.0.1:2379]";
            d.error(e.endpoints.span(), "sources.etcd.endpoints", msg);
        }
        for (i, ep) in e.endpoints.iter().enumerate() {
            url(d, ep, &format!("sources.etcd.endpoints[{i}]"));
        }
        EtcdSource {
            endpoints: e.endpoints.iter().map(|s| s.to_string()).collect(),
        }
    });
    let kubernetes = raw.kubernetes.as_ref().map(|k| {
        if let Some(path) = &k.kubeconfig {
            non_empty(d, path, "sources.kubernetes.kubeconfig");
        }
        KubernetesSource {
            kubeconfig: k.kubeconfig.as_ref().map(|s| s.to_string()),
        }
    });
    Sources {
        consul,
        etcd,
        kubernetes,
    }
}

/// Checks one service's `discovery` block against the configured sources.
pub fn discovery(
    raw: &Spanned<RawDiscovery>,
    sources: &Sources,
    path: &str,
    d: &mut Diags,
) -> Vec<Discovery> {
    let p = format!("{path}.discovery");
    let mut out = Vec::new();
    if let Some(c) = &raw.consul {
        let p = format!("{p}.consul");
        if sources.consul.is_none() {
            missing_source(
                d,
                c.span(),
                &p,
                "consul",
                "{address: http://127.0.0.1:8500}",
            );
        }
        non_empty(d, &c.service, &format!("{p}.service"));
        if let Some(tag) = &c.tag {
            non_empty(d, tag, &format!("{p}.tag"));
        }
        out.push(Discovery::Consul {
            service: c.service.to_string(),
            tag: c.tag.as_ref().map(|t| t.to_string()),
        });
    }
    if let Some(e) = &raw.etcd {
        let p = format!("{p}.etcd");
        if sources.etcd.is_none() {
            missing_source(
                d,
                e.span(),
                &p,
                "etcd",
                "{endpoints: [http://127.0.0.1:2379]}",
            );
        }
        let prefix = e.prefix.as_str();
        if prefix.is_empty() || !prefix.ends_with('/') {
            // Without the trailing slash `/services/web` would also match
            // every key of `/services/web-admin/`.
            let msg = format!(
                "etcd prefix `{prefix}` must be non-empty and end with `/`, e.g. /services/web/"
            );
            d.error(e.prefix.span(), format!("{p}.prefix"), msg);
        }
        out.push(Discovery::Etcd {
            prefix: prefix.to_string(),
        });
    }
    if let Some(k) = &raw.kubernetes {
        let p = format!("{p}.kubernetes");
        if sources.kubernetes.is_none() {
            missing_source(d, k.span(), &p, "kubernetes", "{}");
        }
        non_empty(d, &k.namespace, &format!("{p}.namespace"));
        non_empty(d, &k.service, &format!("{p}.service"));
        non_empty(d, &k.port, &format!("{p}.port"));
        out.push(Discovery::Kubernetes {
            namespace: k.namespace.to_string(),
            service: k.service.to_string(),
            port: k.port.to_string(),
        });
    }
    if let Some(f) = &raw.file {
        non_empty(d, &f.path, &format!("{p}.file.path"));
        out.push(Discovery::File {
            path: f.path.to_string(),
        });
    }
    if out.is_empty() {
        let msg = "name at least one of consul, etcd, kubernetes, file";
        d.error(raw.span(), &p, msg);
    }
    out
}

/// Consul holds a blocking query at most 10 minutes; a wait under a
/// second would turn the watch into polling.
const CONSUL_WAIT_DEFAULT: Duration = Duration::from_secs(60);
const CONSUL_WAIT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(600);

fn consul_wait(d: &mut Diags, w: &Str) -> Duration {
    match parse_duration(w) {
        Ok(v) if CONSUL_WAIT_RANGE.contains(&v) => v,
        Ok(_) => {
            let msg = format!(
                "wait `{}` out of range 1s..=10m (Consul's limit)",
                w.as_str()
            );
            d.error(w.span(), "sources.consul.wait", msg);
            CONSUL_WAIT_DEFAULT
        }
        Err(e) => {
            d.error(w.span(), "sources.consul.wait", e);
            CONSUL_WAIT_DEFAULT
        }
    }
}

fn missing_source(
    d: &mut Diags,
    span: &crate::rules::yaml::Span,
    path: &str,
    kind: &str,
    eg: &str,
) {
    let msg = format!(
        "discovery from {kind} needs its connection settings: add `sources: {{{kind}: {eg}}}` at the top level"
    );
    d.error(span, path, msg);
}

fn non_empty(d: &mut Diags, value: &Str, path: &str) {
    if value.trim().is_empty() {
        d.error(value.span(), path, "must not be empty");
    }
}

fn url(d: &mut Diags, value: &Str, path: &str) {
    let s = value.as_str();
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() <= "https://".len() {
        let msg = format!("`{s}` is not a URL: expected http://host:port or https://host:port");
        d.error(value.span(), path, msg);
    }
}
