//! Lua filters in the simulator, on the protos sluice compiles from a rules
//! file (the simulator must run what Envoy would be sent): decoding of the
//! HTTP filters and `LuaPerRoute`, and the filter chain on requests.

use sluice_core::xds::TypeUrl;

use crate::chain::{serve, Served};
use crate::dataplane::{DataPlane, Decision};
use crate::decode::DecodeError;
use crate::filters::HttpFilter;
use crate::http::Request;
use crate::http::Response;
use crate::resources::{decode, Decoded};
use crate::state::View;

pub(crate) const RULES: &str = r#"services:
  - name: free
    endpoints: [{address: 127.0.0.1, port: 9001}]
  - name: pro
    endpoints: [{address: 127.0.0.1, port: 9002}]
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
              - {key: alice-key, consumer: alice, plan: pro}
              - {key: bob-key, consumer: bob, plan: free}
        transform:
          response:
            set_headers: {x-served-for: "${consumer}"}
            remove_headers: [x-backend-secret]
        routes:
          - match: {prefix: /orders}
            to: {service: free}
            validate: {methods: [GET, POST], required_headers: [x-tag]}
            transform: {request: {set_headers: {x-tag-copy: "t-${header.x-tag}"}}}
          - match: {prefix: /own-lua}
            to: {service: free}
            lua:
              source: |
                function envoy_on_request(h)
                  h:headers():add("x-own-lua", h:headers():get("x-sluice-consumer") or "none")
                end
          - match: {prefix: /, headers: [{name: x-sluice-plan, exact: pro}]}
            to: {service: pro}
          - to: {service: free}
"#;

/// Every resource sluice compiles from `rules`, decoded by the simulator.
pub(crate) fn view_of(rules: &str) -> Result<View, DecodeError> {
    let config = sluice_core::rules::parse("rules.yaml", rules).expect("rules parse");
    let snapshots = sluice_core::compile::compile(&config).expect("rules compile");
    let snap = &snapshots.fallback;
    let mut view = View::default();
    for ty in [
        TypeUrl::Cluster,
        TypeUrl::Endpoint,
        TypeUrl::Listener,
        TypeUrl::Route,
    ] {
        for r in snap.resources(ty).values() {
            match decode(ty, &r.body)? {
                Decoded::Cluster(c) => view.clusters.insert(c.name.clone(), c).map(|_| ()),
                Decoded::Endpoints(e) => {
                    view.endpoints.insert(e.cluster_name.clone(), e).map(|_| ())
                }
                Decoded::Listener(l) => view.listeners.insert(l.name.clone(), l).map(|_| ()),
                Decoded::Routes(t) => view.routes.insert(t.name.clone(), t).map(|_| ()),
                Decoded::Runtime(r) => view.runtime.insert(r.name.clone(), r).map(|_| ()),
            };
        }
    }
    Ok(view)
}

fn run(view: &View, req: Request) -> Served {
    let mut dp = DataPlane::new(1);
    serve(
        &mut dp,
        view,
        Some("http"),
        req,
        Default::default(),
        |u, r| {
            let mut resp = Response::new(200);
            resp.headers.push(("x-backend".into(), u.cluster.clone()));
            resp.headers.push(("x-backend-secret".into(), "s".into()));
            for (k, v) in &r.headers {
                resp.headers.push((format!("echo-{k}"), v.clone()));
            }
            resp
        },
    )
}

#[test]
fn lua_filters_and_per_route_configs_are_decoded_in_order() {
    let view = view_of(RULES).expect("decodes");
    let l = &view.listeners["http"];
    assert_eq!(l.stat_prefix, "http");
    let names: Vec<&str> = l.http_filters.iter().map(HttpFilter::name).collect();
    assert_eq!(
        names,
        ["sluice.lua", "sluice.user.lua", "envoy.filters.http.router"]
    );
    let HttpFilter::Lua(main) = &l.http_filters[0] else {
        panic!("lua first")
    };
    // The script is what was on the wire, which is the shipped bundle.
    assert_eq!(&*main.source, crate::lua::bundle().as_str());

    let table = &view.routes["http"];
    let orders = table.route(&Request::get("x", "/orders")).expect("route");
    let ctx = orders
        .lua("sluice.lua")
        .expect("per route")
        .context
        .as_ref()
        .expect("context");
    assert_eq!(ctx["sluice"]["auth"]["api_key"]["header"], "x-api-key");
    assert_eq!(ctx["sluice"]["validate"]["methods"][1], "POST");
    assert_eq!(ctx["sluice"]["clear_route_cache"], true, "plan routing");
    assert!(orders.lua("sluice.user.lua").is_none());
    let own = table.route(&Request::get("x", "/own-lua")).expect("route");
    let user = own.lua("sluice.user.lua").expect("per route");
    assert!(user
        .source
        .as_deref()
        .is_some_and(|s| s.contains("x-own-lua")));
    assert!(!user.disabled);
}

#[test]
fn filters_it_does_not_model_are_still_nacked() {
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_filter, HttpConnectionManager, HttpFilter as PbFilter,
    };
    let hcm = HttpConnectionManager {
        http_filters: vec![PbFilter {
            name: "envoy.filters.http.buffer".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                envoy_types::pb::google::protobuf::Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
                        .into(),
                    value: Vec::new(),
                },
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    let listener = Listener {
        name: "l".into(),
        address: Some(super::mk_addr(1)),
        filter_chains: vec![envoy_types::pb::envoy::config::listener::v3::FilterChain {
            filters: vec![envoy_types::pb::envoy::config::listener::v3::Filter {
                name: "hcm".into(),
                config_type: Some(
                    envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
                        envoy_types::util::pack_any(hcm),
                    ),
                ),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = decode(TypeUrl::Listener, &prost::Message::encode_to_vec(&listener))
        .expect_err("the buffer filter is not modelled");
    assert!(
        matches!(&err, DecodeError::Unsupported(m) if m.contains("envoy.filters.http.buffer")),
        "{err}"
    );
}

#[test]
fn a_script_that_does_not_load_is_a_nack() {
    use envoy_types::pb::envoy::extensions::filters::http::lua::v3::LuaPerRoute;
    let per_route = LuaPerRoute {
        r#override: Some(
            envoy_types::pb::envoy::extensions::filters::http::lua::v3::lua_per_route::Override::SourceCode(
                envoy_types::pb::envoy::config::core::v3::DataSource {
                    specifier: Some(
                        envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                            "function envoy_on_request(h) if then end".into(),
                        ),
                    ),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    };
    let any = envoy_types::pb::google::protobuf::Any {
        type_url: crate::filters::LUA_PER_ROUTE_TYPE.into(),
        value: prost::Message::encode_to_vec(&per_route),
    };
    let err = crate::filters::lua_per_route("user", &any).expect_err("bad script");
    assert!(
        matches!(&err, DecodeError::Invalid(m) if m.contains("script load error")),
        "{err}"
    );
}

#[test]
fn auth_validation_plan_routing_and_transforms_run_in_the_chain() {
    let view = view_of(RULES).expect("decodes");
    let get = |path: &str| Request::get("x", path);
    // No key → 401; unknown key → 403: answered by Lua, no upstream.
    let r = run(&view, get("/a"));
    assert_eq!((r.response.status, r.lua_local), (401, true));
    assert!(
        r.response.body.contains("unauthorized"),
        "{}",
        r.response.body
    );
    assert_eq!(
        run(&view, get("/a").header("x-api-key", "nope"))
            .response
            .status,
        403
    );
    // bob (free) → free; alice (pro) → pro, by the plan header auth set.
    let bob = run(&view, get("/a").header("x-api-key", "bob-key"));
    assert_eq!(bob.response.header("x-backend"), Some("free"));
    let alice = run(&view, get("/a").header("x-api-key", "alice-key"));
    assert_eq!(alice.response.header("x-backend"), Some("pro"));
    assert!(matches!(alice.decision, Some(Decision::Upstream(_))));
    // A spoofed plan header is replaced by auth.
    let spoof = run(
        &view,
        get("/a")
            .header("x-api-key", "bob-key")
            .header("x-sluice-plan", "pro"),
    );
    assert_eq!(spoof.response.header("x-backend"), Some("free"));
    // The response transform ran with the request phase's metadata.
    assert_eq!(alice.response.header("x-served-for"), Some("alice"));
    assert_eq!(alice.response.header("x-backend-secret"), None);
    assert_eq!(alice.phase.metadata["sluice"]["consumer"], "alice");
    // validate: 405 and 400 before auth; the request template.
    let post = |path: &str| get(path).with_body("DELETE", "");
    assert_eq!(run(&view, post("/orders")).response.status, 405);
    assert_eq!(run(&view, get("/orders")).response.status, 400);
    let ok = run(
        &view,
        get("/orders")
            .header("x-api-key", "bob-key")
            .header("x-tag", "7"),
    );
    assert_eq!(ok.response.header("echo-x-tag-copy"), Some("t-7"));
    // The user's snippet runs after sluice's filter and sees the consumer.
    let own = run(&view, get("/own-lua").header("x-api-key", "bob-key"));
    assert_eq!(own.response.header("echo-x-own-lua"), Some("bob"));
    assert!(own.phase.errors.is_empty(), "{:?}", own.phase.errors);
}

#[test]
fn the_engine_answers_from_lua_and_counts_it_per_connection_manager() {
    use crate::backend::{BackendSpec, Backends};
    use crate::engine::{Engine, SimProxy};
    let view = view_of(RULES).expect("decodes");
    let proxies = vec![SimProxy::new(view, 1)];
    let mut engine = Engine::new(proxies, Backends::new(BackendSpec::default()), 1);
    let t = std::time::Duration::ZERO;
    engine.submit(0, Request::get("x", "/a"), t);
    engine.submit(
        0,
        Request::get("x", "/a").header("x-api-key", "alice-key"),
        t,
    );
    engine.run();
    let s = &engine.stats;
    assert_eq!(s.downstream.get(&401), Some(&1));
    assert_eq!(s.http_counter("http", "downstream_rq_4xx"), 1);
    assert_eq!(s.http_counter("http", "downstream_rq_2xx"), 1);
    assert_eq!(s.http_counter("http", "downstream_rq_total"), 2);
    // Only the authenticated request went upstream, routed by its plan.
    assert_eq!(s.counter("pro", "upstream_rq_total"), 1);
    assert_eq!(s.counter("free", "upstream_rq_total"), 0);
    assert!(s.envoy_text().contains("http.http.downstream_rq_4xx: 1"));
}
