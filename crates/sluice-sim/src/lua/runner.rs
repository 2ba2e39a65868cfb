//! Runs sluice's filter script in mlua (LuaJIT) behind an Envoy-like
//! handle (`shim.lua`), so the Lua is tested — and simulated — exactly as
//! shipped. One [`FilterVm`] is one Lua state, like one Envoy worker's.

use mlua::{Function, Lua, LuaSerdeExt, Table, Value};
use serde::{Deserialize, Serialize};

use super::bundle;

const SHIM: &str = include_str!("shim.lua");

/// A request as the filter sees it. Header names are lower-case, and
/// include the pseudo-headers `:method`, `:path`, `:authority`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// What the script did to a request or response.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Outcome {
    /// Headers and body after the script (what goes upstream/downstream).
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Set when the script answered locally (`respond`).
    pub response: Option<LocalResponse>,
    /// Dynamic metadata, by namespace.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub route_cache_cleared: bool,
    /// A Lua runtime error (Envoy logs it and lets the request continue).
    pub error: Option<String>,
    #[serde(default)]
    pub log: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct LocalResponse {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl LocalResponse {
    pub fn status(&self) -> u16 {
        self.header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Outcome {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct FilterVm {
    lua: Lua,
    /// What `timestamp()` returns (ms since the Unix epoch); `None`: the
    /// wall clock. The simulator sets its virtual clock here.
    clock: std::cell::Cell<Option<f64>>,
}

impl FilterVm {
    /// A fresh Lua state with the shim and the shipped bundle loaded.
    pub fn new() -> mlua::Result<FilterVm> {
        Self::with_script(&bundle())
    }

    pub fn with_script(script: &str) -> mlua::Result<FilterVm> {
        let lua = Lua::new();
        let verify = lua.create_function(
            |_, (der, sig, data): (mlua::String, mlua::String, mlua::String)| {
                Ok(verify_rs256(
                    &der.as_bytes(),
                    &sig.as_bytes(),
                    &data.as_bytes(),
                ))
            },
        )?;
        lua.globals().set("__sluice_verify_rs256", verify)?;
        let is_key = lua.create_function(|_, der: mlua::String| {
            use rsa::pkcs8::DecodePublicKey;
            Ok(rsa::RsaPublicKey::from_public_key_der(&der.as_bytes()).is_ok())
        })?;
        lua.globals().set("__sluice_is_rsa_key", is_key)?;
        lua.load(SHIM).set_name("=shim").exec()?;
        lua.load(script).set_name("=sluice").exec()?;
        Ok(FilterVm {
            lua,
            clock: std::cell::Cell::new(None),
        })
    }

    /// Makes `timestamp()` return `unix_ms` (`None`: the wall clock) in
    /// the calls that follow.
    pub fn set_clock(&self, unix_ms: Option<f64>) {
        self.clock.set(unix_ms);
    }

    /// Runs `envoy_on_request` with the route's filter context (the JSON
    /// sluice puts under `filter_context`), from client address `remote`.
    pub fn on_request(
        &self,
        req: &Message,
        context: &serde_json::Value,
        remote: &str,
    ) -> mlua::Result<Outcome> {
        self.run(
            "envoy_on_request",
            req,
            context,
            remote,
            serde_json::Value::Null,
        )
    }

    /// Runs `envoy_on_request` with the dynamic metadata earlier filters
    /// of the same stream set (Envoy's stream info is shared by the chain).
    pub fn on_request_with_metadata(
        &self,
        req: &Message,
        context: &serde_json::Value,
        remote: &str,
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> mlua::Result<Outcome> {
        let meta = if metadata.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(metadata.clone())
        };
        self.run("envoy_on_request", req, context, remote, meta)
    }

    /// Runs `envoy_on_response`, with the dynamic metadata the request
    /// phase left (`Outcome::metadata` of `on_request`).
    pub fn on_response(
        &self,
        resp: &Message,
        context: &serde_json::Value,
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> mlua::Result<Outcome> {
        let meta = serde_json::Value::Object(metadata.clone());
        self.run("envoy_on_response", resp, context, "", meta)
    }

    fn run(
        &self,
        entry: &str,
        msg: &Message,
        context: &serde_json::Value,
        remote: &str,
        metadata: serde_json::Value,
    ) -> mlua::Result<Outcome> {
        let lua = &self.lua;
        let state = lua.create_table()?;
        let headers = lua.create_table()?;
        for (k, v) in &msg.headers {
            headers.push(lua.create_sequence_from([k.to_lowercase(), v.clone()])?)?;
        }
        state.set("headers", headers)?;
        if let Some(body) = &msg.body {
            state.set("body", body.as_str())?;
        }
        state.set("request", entry == "envoy_on_request")?;
        state.set("context", lua.to_value(context)?)?;
        state.set("remote", remote)?;
        state.set("now_ms", self.clock.get().unwrap_or_else(now_ms))?;
        if !metadata.is_null() {
            state.set("metadata", lua.to_value(&metadata)?)?;
        }
        let entry_fn: Value = lua.globals().get(entry)?;
        let run_with: Function = lua.globals().get("run_with")?;
        let out: Table = match entry_fn {
            Value::Function(f) => run_with.call((f, state))?,
            // The script does not handle this phase: nothing changes.
            _ => state,
        };
        lua.from_value(Value::Table(out))
    }
}

/// What Envoy's `verifySignature("sha256", ...)` does for an RSA key:
/// PKCS#1 v1.5 with SHA-256 over `data`, key as DER SubjectPublicKeyInfo.
fn verify_rs256(der: &[u8], sig: &[u8], data: &[u8]) -> bool {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let Ok(key) = rsa::RsaPublicKey::from_public_key_der(der) else {
        return false;
    };
    let Ok(sig) = Signature::try_from(sig) else {
        return false;
    };
    VerifyingKey::<sha2::Sha256>::new(key)
        .verify(data, &sig)
        .is_ok()
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0)
}
