//! Rules YAML shared by several test files: the same services and
//! listener head, so a test file states only what it adds (its routes).

/// Services `free` and `pro` and a plain-HTTP listener `http` (127.0.0.1,
/// port 0) whose virtual host `api`, for every domain, authenticates by
/// API key in `x-api-key` (`alice_key`: consumer alice on plan pro;
/// `bob-key`: bob on free) and, on responses, sets `x-served-for` to the
/// consumer and removes `x-backend-secret`. Ends with `routes:`: append
/// the route list items, indented by 10 spaces.
pub fn api_key_gateway(free: u16, pro: u16, alice_key: &str) -> String {
    format!(
        r#"services:
  - name: free
    endpoints: [{{address: 127.0.0.1, port: {free}}}]
  - name: pro
    endpoints: [{{address: 127.0.0.1, port: {pro}}}]
listeners:
  - name: http
    address: 127.0.0.1
    port: 0
    virtual_hosts:
      - name: api
        domains: ["*"]
        auth:
          api_key:
            header: x-api-key
            keys:
              - {{key: {alice_key}, consumer: alice, plan: pro}}
              - {{key: bob-key, consumer: bob, plan: free}}
        transform:
          response:
            set_headers: {{x-served-for: "${{consumer}}"}}
            remove_headers: [x-backend-secret]
        routes:
"#
    )
}

/// Service `web` with one endpoint per version (`v1` on port `v1`, `v2`
/// on port `v2`) and subsets `stable` (v1) and `canary` (v2); a list item
/// of `services:`.
pub fn web_v1_v2(v1: u16, v2: u16) -> String {
    format!(
        r#"  - name: web
    endpoints:
      - {{address: 127.0.0.1, port: {v1}, labels: {{version: v1}}}}
      - {{address: 127.0.0.1, port: {v2}, labels: {{version: v2}}}}
    subsets:
      stable: {{version: v1}}
      canary: {{version: v2}}
"#
    )
}

/// `listeners:` with one plain-HTTP listener `http` on 127.0.0.1:`port`
/// (0: Envoy picks) and one virtual host `vhost` for every domain. Ends
/// with `routes:`: append the route list items, indented by 10 spaces.
pub fn http_listener(port: u16, vhost: &str) -> String {
    format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1
    port: {port}
    virtual_hosts:
      - name: {vhost}
        domains: ["*"]
        routes:
"#
    )
}

/// Whether sluice's rules refuse `yaml`; a refusal must come only from
/// the check under test: every diagnostic contains `because` (`case`
/// names the input in a failure).
pub fn refused_only_because(yaml: &str, because: &str, case: &str) -> bool {
    match sluice::rules::parse("rules.yaml", yaml) {
        Ok(_) => false,
        Err(err) => {
            for d in &err.diagnostics {
                assert!(
                    d.message.contains(because),
                    "{case}: unexpected diagnostic {d}"
                );
            }
            true
        }
    }
}
