//! `sluice status`: reads `/status` from a running sluice and prints it.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;

use crate::cli_support::{client, AdminAddr, Output};
use crate::discovery::status::SourceStatus;
use crate::rules_watch::RulesStatus;

#[derive(Debug, Deserialize)]
pub struct StatusDoc {
    pub ready: bool,
    pub rules: RulesStatus,
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    pub proxies: Vec<Proxy>,
    #[serde(default)]
    pub xds_denials: Vec<Denial>,
    /// With several replicas (`--state-etcd`).
    #[serde(default)]
    pub ha: Option<Ha>,
}

/// The replicas and their leader.
#[derive(Debug, Deserialize)]
pub struct Ha {
    pub replica: String,
    pub leader: Option<String>,
    pub is_leader: bool,
    pub replicas: Vec<String>,
    /// How many proxies each replica serves, as it last published.
    #[serde(default)]
    pub proxies: std::collections::BTreeMap<String, u32>,
    pub lease_ttl_ms: u64,
    #[serde(default = "up")]
    pub store_up: bool,
}

fn up() -> bool {
    true
}

/// A stream refused by access control.
#[derive(Debug, Deserialize)]
pub struct Denial {
    pub at: u64,
    pub node_id: String,
    pub group: String,
    pub identity: String,
    pub reason: String,
    #[serde(default)]
    pub remote: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Proxy {
    pub node: Node,
    pub mode: String,
    pub types: std::collections::BTreeMap<String, TypeStatus>,
}

#[derive(Debug, Deserialize)]
pub struct Node {
    pub id: String,
    pub group: String,
    /// `grpc` for a proxyless gRPC client; absent for an Envoy.
    #[serde(default)]
    pub client: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TypeStatus {
    pub sent: Option<String>,
    pub acked: Option<String>,
    pub nack: Option<Nack>,
}

#[derive(Debug, Deserialize)]
pub struct Nack {
    pub version: String,
    pub error: String,
    /// Where in the rules the rejected resources come from, when known.
    #[serde(default)]
    pub rule: Option<String>,
}

/// `sluice status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub admin: AdminAddr,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl StatusArgs {
    /// Run `sluice status`.
    pub fn run(self) -> ExitCode {
        run(self.admin.addr, self.output)
    }
}

fn run(admin: SocketAddr, output: Output) -> ExitCode {
    let Some(rt) = crate::cli_support::runtime() else {
        return ExitCode::FAILURE;
    };
    let url = format!("http://{admin}/status");
    // The shared admin client: never through $HTTP_PROXY, like the
    // other commands that ask the admin listener.
    let body = rt.block_on(async {
        let resp = client()?
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let resp = resp.error_for_status().map_err(|e| e.to_string())?;
        resp.text().await.map_err(|e| e.to_string())
    });
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {url}: {e}");
            return ExitCode::from(2);
        }
    };
    if output == Output::Json {
        println!("{body}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<StatusDoc>(&body) {
        Ok(doc) => {
            print!("{}", render(&doc));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: unexpected answer from {url}: {e}");
            ExitCode::from(2)
        }
    }
}

/// This replica and its role, the replicas, and how many proxies each
/// serves.
pub fn render_ha(ha: &Ha) -> String {
    let role = if ha.is_leader {
        "LEADER".to_string()
    } else {
        format!(
            "follower, leader: {}",
            ha.leader.as_deref().unwrap_or("none")
        )
    };
    format!(
        "replica: {} ({role})\nreplicas: {}  lease_ttl={}ms  state_store={}\n",
        ha.replica,
        if ha.replicas.is_empty() {
            "-".to_string()
        } else {
            ha.replicas.join(", ")
        },
        ha.lease_ttl_ms,
        if ha.store_up { "up" } else { "DOWN" },
    ) + &proxies_line(ha)
}

/// `proxies per replica: r0=2 r1=3` (empty before any replica published).
fn proxies_line(ha: &Ha) -> String {
    if ha.proxies.is_empty() {
        return String::new();
    }
    let each: Vec<String> = ha
        .proxies
        .iter()
        .map(|(replica, n)| format!("{replica}={n}"))
        .collect();
    format!("proxies per replica: {}\n", each.join(" "))
}

/// Human-readable status: one block per proxy, one line per type.
pub fn render(doc: &StatusDoc) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "ready: {}", if doc.ready { "yes" } else { "no" });
    let _ = writeln!(
        s,
        "rules: {} (served {}){}",
        doc.rules.file,
        doc.rules.served_hash.as_deref().unwrap_or("-"),
        match &doc.rules.last_error {
            Some(e) => format!(
                "\n  last reload REJECTED: {}",
                e.lines().next().unwrap_or("")
            ),
            None => String::new(),
        }
    );
    if let Some(ha) = &doc.ha {
        s.push_str(&render_ha(ha));
    }
    if let Some(held) = &doc.rules.held {
        s.push_str(&crate::rules_cli::render_held(held, false));
    }
    for (listener, c) in &doc.rules.certificates {
        let _ = writeln!(
            s,
            "certificate {listener}: sha256 {}  not_after={}  reloads={} rejected={}",
            c.fingerprint, c.not_after, c.reloads, c.rejected_reloads
        );
        if let Some(e) = &c.last_error {
            let _ = writeln!(s, "  last reload REJECTED: {e}");
        }
    }
    for src in &doc.sources {
        let age = match src.last_sync_age_seconds {
            Some(a) => format!("{a:.1}s ago"),
            None => "never".to_string(),
        };
        let state = if src.up { "UP" } else { "DOWN" };
        let _ = writeln!(
            s,
            "source {}: {state}  endpoints={} last_sync={age} rejected_entries={}",
            src.source, src.endpoints, src.bad_entries
        );
        for f in &src.feeds {
            let err = f
                .last_error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} <- {}  {} endpoints={}{err}",
                f.service, f.target, f.state, f.endpoints
            );
        }
    }
    if !doc.xds_denials.is_empty() {
        let _ = writeln!(s, "refused streams (newest first):");
        for d in &doc.xds_denials {
            let _ = writeln!(
                s,
                "  {}  node={} group={} identity={} from={} at={}",
                d.reason,
                d.node_id,
                d.group,
                d.identity,
                d.remote.as_deref().unwrap_or("-"),
                d.at
            );
        }
    }
    let _ = writeln!(s, "proxies: {}", doc.proxies.len());
    for p in &doc.proxies {
        let client = match &p.node.client {
            Some(c) => format!(" client={c}"),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "\n{}  group={} mode={}{client}",
            p.node.id, p.node.group, p.mode
        );
        let _ = writeln!(s, "  {:<4} {:<17} {:<17} NACK", "TYPE", "SENT", "ACKED");
        for (ty, t) in &p.types {
            let nack = match &t.nack {
                Some(n) => match &n.rule {
                    Some(rule) => format!("{}: {} (from {rule})", n.version, n.error),
                    None => format!("{}: {}", n.version, n.error),
                },
                None => "-".to_string(),
            };
            let _ = writeln!(
                s,
                "  {:<4} {:<17} {:<17} {}",
                ty,
                t.sent.as_deref().unwrap_or("-"),
                t.acked.as_deref().unwrap_or("-"),
                nack
            );
        }
    }
    s
}
