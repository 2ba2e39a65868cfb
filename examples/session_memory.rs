//! Memory of idle xDS sessions: N sans-io sessions that hold all of
//! topology M1 (1,000 services × 10 endpoints, 3,000 clusters with their
//! load assignments, one listener, one route configuration), every type
//! ACKed. Prints the process RSS growth per session: the protocol state
//! each stream keeps, without the transport (tonic/h2 buffers and the
//! stream task add to it in the server).
//!
//! ```sh
//! cargo run --release --example session_memory -- 1000 delta
//! cargo run --release --example session_memory -- 1000 sotw
//! cargo run --release --example session_memory -- 1000 delta-reconnect
//! ```

#[path = "../benches/support/m1.rs"]
mod m1;
#[path = "../benches/support/session_start.rs"]
mod session_start;

use session_start::started;
use sluice::xds::session::{Mode, Session};
use sluice::xds::TypeUrl;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let how = args.next();
    let mode = match how.as_deref() {
        Some("sotw") => Mode::Sotw,
        _ => Mode::Delta,
    };
    // `delta-reconnect`: each session starts as a reconnecting proxy's,
    // announcing every resource it holds (`initial_resource_versions`).
    let reconnect = how.as_deref() == Some("delta-reconnect");
    let snaps = sluice::compile::compile(&m1::m1(1000, 10)).expect("compiles");
    let snap = snaps.fallback.clone();
    let resources: usize = TypeUrl::ALL.iter().map(|t| snap.resources(*t).len()).sum();
    let before = rss_kib();
    let sessions: Vec<Session> = (0..n).map(|_| started(mode, &snap, reconnect)).collect();
    let after = rss_kib();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "{n} {mode:?} sessions holding M1 ({resources} resources): RSS {before} → {after} KiB, {:.1} KiB per session ({:.0} bytes per resource held)",
        per / 1024.0,
        per / resources as f64
    );
    drop(sessions);
}
