//! What the benchmark examples that run a real Envoy read from their
//! command line and environment (`#[path]`-included: a file here is not an
//! example of its own).

use std::path::PathBuf;

/// The value after `name` on the command line, else `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `$ENVOY_BIN`, else `envoy` (looked up on `PATH` when run).
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("envoy"))
}
