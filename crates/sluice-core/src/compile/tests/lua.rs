//! The Lua filter in compiled config: present only where used, per-route
//! settings as a deterministic Struct, canonical route encoding.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::route::v3::{Route as EnvoyRoute, VirtualHost as EnvoyVh};
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::{Lua, LuaPerRoute};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter;
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value as PbValue};
use serde_json::{json, Value};

use super::*;
use crate::compile::lua::context;

fn to_json(v: &PbValue) -> Value {
    match &v.kind {
        Some(Kind::NullValue(_)) | None => Value::Null,
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => struct_json(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(to_json).collect()),
    }
}

fn struct_json(s: &Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect(),
    )
}

fn mk_lua_config() -> Config {
    let mut config = mk_simple();
    let vh = &mut config.listeners_mut()[0].virtual_hosts[0];
    vh.filters.auth = Some(Auth {
        ip: Some(IpRule {
            allow: vec!["10.0.0.0/8".into()],
            deny: vec![],
        }),
        method: Some(AuthMethod::ApiKey(ApiKeyAuth {
            header: Some("x-api-key".into()),
            query: None,
            json_field: None,
            keys: vec![Credential {
                sha256: "ab".repeat(32),
                consumer: "alice".into(),
                plan: Some("pro".into()),
            }],
        })),
        consumer_header: "x-sluice-consumer".into(),
        plan_header: "x-sluice-plan".into(),
    });
    vh.routes[0].filters.request = Some(Transform {
        set_headers: vec![("x-who".into(), "${consumer}".into())],
        ..Default::default()
    });
    config
}

#[test]
fn listeners_get_the_lua_filter_only_when_a_route_uses_it() {
    let plain = compile(&mk_simple()).expect("compiles");
    let hcm = hcm_of(&decode(&plain.fallback, TypeUrl::Listener, "http"));
    assert_eq!(hcm.http_filters.len(), 1, "router only");

    let with = compile(&mk_lua_config()).expect("compiles");
    let hcm = hcm_of(&decode(&with.fallback, TypeUrl::Listener, "http"));
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.rbac",
            "sluice.lua",
            "envoy.filters.http.router"
        ]
    );
    let Some(http_filter::ConfigType::TypedConfig(any)) = &hcm.http_filters[1].config_type else {
        panic!("typed config");
    };
    let lua = Lua::decode(any.value.as_slice()).expect("Lua config");
    let code = lua.default_source_code.and_then(|d| d.specifier);
    assert_eq!(
        code,
        Some(
            envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                crate::lua_script::bundle()
            )
        )
    );
}

#[test]
fn routes_carry_their_effective_settings_as_filter_context() {
    let config = mk_lua_config();
    let snaps = compile(&config).expect("compiles");
    let rc: RouteConfiguration = decode(&snaps.fallback, TypeUrl::Route, "http");
    let any = &rc.virtual_hosts[0].routes[0].typed_per_filter_config["sluice.lua"];
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute"
    );
    let per_route = LuaPerRoute::decode(any.value.as_slice()).expect("LuaPerRoute");
    let ctx = struct_json(&per_route.filter_context.expect("filter_context"));
    let vh = &config.listeners[0].virtual_hosts[0];
    let effective = vh.routes[0].filters.over(&vh.filters);
    assert_eq!(ctx, json!({ "sluice": Value::Object(context(&effective)) }));
    assert_eq!(
        ctx["sluice"]["auth"]["api_key"]["keys"]["ab".repeat(32)]["plan"],
        "pro"
    );
    assert_eq!(
        ctx["sluice"]["transform_request"]["set"],
        json!([["x-who", "${consumer}"]])
    );
}

#[test]
fn changing_a_key_changes_routes_but_not_listeners() {
    let a = compile(&mk_lua_config()).expect("compiles");
    let mut config = mk_lua_config();
    if let Some(Auth {
        method: Some(AuthMethod::ApiKey(k)),
        ..
    }) = &mut config.listeners_mut()[0].virtual_hosts[0].filters.auth
    {
        k.keys[0].sha256 = "cd".repeat(32);
    }
    let b = compile(&config).expect("compiles");
    assert_eq!(
        a.fallback.version(TypeUrl::Listener),
        b.fallback.version(TypeUrl::Listener)
    );
    assert_ne!(
        a.fallback.version(TypeUrl::Route),
        b.fallback.version(TypeUrl::Route)
    );
}

#[test]
fn canonical_route_encoding_is_order_independent_and_lossless() {
    let any = |s: &str| Any {
        type_url: format!("type.googleapis.com/{s}"),
        value: s.as_bytes().to_vec(),
    };
    let mk = |order: &[&str]| {
        let map: HashMap<String, Any> = order.iter().map(|k| (k.to_string(), any(k))).collect();
        RouteConfiguration {
            name: "rc".into(),
            virtual_hosts: vec![EnvoyVh {
                name: "vh".into(),
                domains: vec!["*".into()],
                routes: vec![
                    EnvoyRoute {
                        name: "r1".into(),
                        typed_per_filter_config: map.clone(),
                        ..Default::default()
                    },
                    EnvoyRoute {
                        name: "r2".into(),
                        ..Default::default()
                    },
                ],
                typed_per_filter_config: map.clone(),
                ..Default::default()
            }],
            typed_per_filter_config: map,
            ..Default::default()
        }
    };
    let keys = [
        "a.filter", "b.filter", "c.filter", "d.filter", "e.filter", "f.filter",
    ];
    let mut reversed = keys;
    reversed.reverse();
    let (x, y) = (mk(&keys), mk(&reversed));
    let (bx, by) = (
        super::super::canonical::route_configuration(&x),
        super::super::canonical::route_configuration(&y),
    );
    assert_eq!(
        bx, by,
        "same content, same bytes, whatever the insertion order"
    );
    assert_eq!(
        RouteConfiguration::decode(bx.as_slice()).expect("decodes"),
        x
    );
}

#[test]
fn struct_encoding_round_trips() {
    let v = json!({"z": 1.5, "a": {"list": [1.0, "two", true, null, {"k": "v"}], "empty": {}}, "s": ""});
    let Value::Object(m) = &v else { panic!() };
    let bytes = crate::compile::lua::encode_struct(m);
    let decoded = Struct::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(struct_json(&decoded), v);
}

#[test]
fn plan_rate_limits_get_one_bucket_per_known_plan() {
    use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
    let mut config = mk_lua_config();
    config.listeners_mut()[0].virtual_hosts[0].routes[0]
        .filters
        .rate_limit = Some(RateLimit {
        key: RateLimitKey::Plan,
        requests: 5,
        per: Duration::from_secs(60),
        overrides: vec![("enterprise".into(), 500)],
    });
    let snaps = compile(&config).expect("compiles");
    let hcm = hcm_of(&decode(&snaps.fallback, TypeUrl::Listener, "http"));
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.rbac",
            "sluice.lua",
            "envoy.filters.http.local_ratelimit",
            "envoy.filters.http.router"
        ]
    );

    let rc: RouteConfiguration = decode(&snaps.fallback, TypeUrl::Route, "http");
    let any = &rc.virtual_hosts[0].routes[0].typed_per_filter_config
        ["envoy.filters.http.local_ratelimit"];
    let rl = LocalRateLimit::decode(any.value.as_slice()).expect("LocalRateLimit");
    assert_eq!(rl.token_bucket.as_ref().map(|b| b.max_tokens), Some(5));
    assert_eq!(
        rl.always_consume_default_token_bucket.map(|b| b.value),
        Some(false)
    );
    let buckets: Vec<(String, u32)> = rl
        .descriptors
        .iter()
        .map(|d| {
            (
                format!("{}={}", d.entries[0].key, d.entries[0].value),
                d.token_bucket.as_ref().map_or(0, |b| b.max_tokens),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            ("plan=enterprise".to_string(), 500),
            ("plan=pro".to_string(), 5)
        ]
    );
    assert_eq!(rl.rate_limits.len(), 1, "one action: the plan header");
}

mod injection {
    use proptest::prelude::*;

    use super::*;

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"; os.execute('id') --".to_string()),
            Just("]] os.exit(1) --[[".to_string()),
            Just("]=] error('x') --[=[".to_string()),
            Just("\\\n\0\r\t".to_string()),
            Just(
                "end function envoy_on_request(h) h:respond({[':status']='200'}, 'pwned') end"
                    .to_string()
            ),
            Just("${header.x}${".to_string()),
            "\\PC{0,40}",
            prop::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ".{200,400}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever users put in auth and transform settings, the script
        /// Envoy runs (in LDS) is byte-identical: user strings only ever
        /// reach RDS, as Struct data.
        #[test]
        fn hostile_rule_strings_never_change_the_listener(
            consumer in hostile(), plan in hostile(), template in hostile(), field in hostile()
        ) {
            let baseline = compile(&mk_lua_config()).expect("compiles");
            let mut config = mk_lua_config();
            let vh = &mut config.listeners_mut()[0].virtual_hosts[0];
            if let Some(Auth { method: Some(AuthMethod::ApiKey(k)), .. }) = &mut vh.filters.auth {
                k.keys[0].consumer = consumer.clone();
                k.keys[0].plan = Some(plan.clone());
                k.json_field = Some(field.clone());
            }
            vh.routes[0].filters.request = Some(Transform {
                set_headers: vec![("x-h".into(), template.clone())],
                json: Some(JsonEdit { set: vec![(field.clone(), template.clone())], ..Default::default() }),
                ..Default::default()
            });
            let snaps = compile(&config).expect("compiles");
            prop_assert_eq!(
                snaps.fallback.version(TypeUrl::Listener),
                baseline.fallback.version(TypeUrl::Listener)
            );
            // And the value arrives intact, as data.
            let rc: RouteConfiguration = decode(&snaps.fallback, TypeUrl::Route, "http");
            let any = &rc.virtual_hosts[0].routes[0].typed_per_filter_config["sluice.lua"];
            let per_route = LuaPerRoute::decode(any.value.as_slice()).expect("LuaPerRoute");
            let ctx = struct_json(&per_route.filter_context.expect("context"));
            let keys = &ctx["sluice"]["auth"]["api_key"]["keys"];
            let who = keys.as_object().and_then(|m| m.values().next()).cloned().unwrap_or_default();
            prop_assert_eq!(&who["consumer"], &json!(consumer));
            prop_assert_eq!(&who["plan"], &json!(plan));
            prop_assert_eq!(&ctx["sluice"]["transform_request"]["set"][0][1], &json!(template));
        }
    }
}

#[test]
fn ip_rules_become_native_rbac_per_route() {
    use envoy_types::pb::envoy::config::rbac::v3::principal::Identifier;
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::RbacPerRoute;
    let mut config = mk_lua_config();
    if let Some(a) = &mut config.listeners_mut()[0].virtual_hosts[0].filters.auth {
        a.ip = Some(IpRule {
            allow: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            deny: vec!["10.9.9.9".into()],
        });
    }
    let snaps = compile(&config).expect("compiles");
    let rc: RouteConfiguration = decode(&snaps.fallback, TypeUrl::Route, "http");
    let route = &rc.virtual_hosts[0].routes[0];
    let any = &route.typed_per_filter_config["envoy.filters.http.rbac"];
    let per_route = RbacPerRoute::decode(any.value.as_slice()).expect("RBACPerRoute");
    let rules = per_route.rbac.and_then(|r| r.rules).expect("rules");
    let policy = &rules.policies["sluice-ip"];
    let Some(Identifier::AndIds(all)) = &policy.principals[0].identifier else {
        panic!("and_ids")
    };
    let Some(Identifier::OrIds(allow)) = &all.ids[0].identifier else {
        panic!("allow")
    };
    let cidrs: Vec<(String, u32)> = allow
        .ids
        .iter()
        .map(|p| match &p.identifier {
            Some(Identifier::DirectRemoteIp(c)) => (
                c.address_prefix.clone(),
                c.prefix_len.as_ref().map_or(0, |l| l.value),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        cidrs,
        [("10.0.0.0".to_string(), 8), ("2001:db8::".to_string(), 32)]
    );
    let Some(Identifier::NotId(deny)) = &all.ids[1].identifier else {
        panic!("deny")
    };
    let Some(Identifier::OrIds(deny)) = &deny.identifier else {
        panic!("or")
    };
    let Some(Identifier::DirectRemoteIp(c)) = &deny.ids[0].identifier else {
        panic!("ip")
    };
    assert_eq!(
        (
            c.address_prefix.as_str(),
            c.prefix_len.as_ref().map(|l| l.value)
        ),
        ("10.9.9.9", Some(32))
    );
    // The Lua context no longer carries IP rules.
    let lua = LuaPerRoute::decode(route.typed_per_filter_config["sluice.lua"].value.as_slice())
        .expect("lua");
    assert!(
        struct_json(&lua.filter_context.expect("ctx"))["sluice"]["auth"]
            .get("ip")
            .is_none()
    );
}

/// Envoy buffers 1 MiB of a request for the script unless the route says
/// more; a route that allows larger bodies (its own `validate` or its
/// virtual host's, or a request JSON edit) asks for exactly its largest
/// limit, and the others ask nothing.
#[test]
fn routes_allowing_large_bodies_raise_envoys_request_buffer() {
    let limited = |max: u64| Validate {
        max_body_bytes: Some(max),
        ..Default::default()
    };
    let json_edit = |max_bytes: u64| Transform {
        json: Some(JsonEdit {
            set: vec![("a".into(), "b".into())],
            remove: vec![],
            rename: vec![],
            max_bytes,
        }),
        ..Default::default()
    };
    let mut config = mk_simple();
    let vh = &mut config.listeners_mut()[0].virtual_hosts[0];
    vh.filters.validate = Some(limited(4 << 20));
    let route = |name: &str, validate: Option<Validate>| {
        let mut r = mk_route(name, PathMatch::Prefix(format!("/{name}")), mk_to("api"));
        r.filters.validate = validate;
        r
    };
    vh.routes = vec![
        route("inherits", None),
        route("own", Some(limited(2 << 20))),
        route("at-default", Some(limited(1 << 20))),
        route("small", Some(limited(100))),
        route("no-size", Some(Validate::default())),
        route("json", Some(limited(100))),
        route("json-default", Some(limited(100))),
    ];
    vh.routes[5].filters.request = Some(json_edit(3 << 20));
    vh.routes[6].filters.request = Some(json_edit(1 << 20));
    let snaps = compile(&config).expect("compiles");
    let rc: RouteConfiguration = decode(&snaps.fallback, TypeUrl::Route, "http");
    let limits: Vec<(&str, Option<u64>)> = rc.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| {
            let limit = r.request_body_buffer_limit.as_ref().map(|l| l.value);
            (r.name.as_str(), limit)
        })
        .collect();
    assert_eq!(
        limits,
        [
            ("inherits", Some(4 << 20)),
            ("own", Some(2 << 20)),
            ("at-default", None),
            ("small", None),
            ("no-size", None),
            ("json", Some(3 << 20)),
            ("json-default", None),
        ]
    );
    #[allow(deprecated)]
    let deprecated = rc.virtual_hosts[0]
        .routes
        .iter()
        .any(|r| r.per_request_buffer_limit_bytes.is_some());
    assert!(!deprecated, "the capped, deprecated field stays unset");
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.request_body_buffer_limit, None, "set per route");
}
