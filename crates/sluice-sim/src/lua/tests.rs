use super::*;

#[test]
fn the_bundle_compiles_and_passes_its_own_lint() {
    let script = bundle();
    check("sluice.lua", &script).expect("shipped bundle is clean");
    assert_eq!(script, bundle(), "deterministic");
    assert!(script.contains("function envoy_on_request"));
}

#[test]
fn syntax_errors_name_the_script() {
    let err = check("user.lua", "function envoy_on_request(h)\n  if then\nend").expect_err("bad");
    match err {
        LuaError::Syntax { name, message } => {
            assert_eq!(name, "user.lua");
            assert!(message.contains("user.lua:2"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn forbidden_globals_are_found_outside_strings_and_comments() {
    let cases = [
        ("os.execute('x')", Some((1, "os"))),
        ("local f = io.open", Some((1, "io"))),
        ("\n\nlocal x = require 'y'", Some((3, "require"))),
        ("loadstring('return 1')()", Some((1, "loadstring"))),
        ("local t = _G['o' .. 's']", Some((1, "_G"))),
        ("local ffi = 1", Some((1, "ffi"))),
        ("setfenv(1, {})", Some((1, "setfenv"))),
        ("h:headers():get('os')", None),
        ("-- os.exit()\nlocal a = 1", None),
        ("--[[ io.write ]] local a = 1", None),
        ("--[==[ ]] io ]==] local a = 1", None),
        ("local s = [[ require ]]", None),
        ("local s = \"debug\"", None),
        ("local s = 'dofile \\' os'", None),
        ("local t = {}; t.os = 1; t:io()", None),
        ("local a = 'x' .. os", Some((1, "os"))),
        ("local osx, ios = 1, 2", None),
    ];
    for (src, want) in cases {
        let got = forbidden_identifier(src);
        assert_eq!(got, want.map(|(l, s)| (l, s.to_string())), "in {src:?}");
    }
}

#[test]
fn check_rejects_forbidden_use_with_its_line() {
    let err = check(
        "user.lua",
        "function envoy_on_request(h)\n  os.exit(1)\nend",
    )
    .expect_err("bad");
    assert_eq!(
        err,
        LuaError::Forbidden {
            name: "user.lua".into(),
            line: 2,
            ident: "os".into()
        }
    );
}

/// A script that reads `x-a` through a headers object taken before
/// `body()` and one taken after, into `x-before` / `x-after`.
const HANDLE_ACROSS_BODY: &str = r#"
function envoy_on_request(h)
  local early = h:headers()
  h:body()
  h:headers():add("x-after", h:headers():get("x-a") or "none")
  h:headers():add("x-before", early:get("x-a") or "none")
end
"#;

fn message(body: Option<&str>) -> runner::Message {
    runner::Message {
        headers: vec![(":path".into(), "/".into()), ("x-a".into(), "1".into())],
        body: body.map(str::to_string),
    }
}

#[test]
fn the_shim_kills_handles_across_a_body_wait_like_envoy() {
    let vm = runner::FilterVm::with_script(HANDLE_ACROSS_BODY).expect("load");
    let ctx = serde_json::json!({});
    // A body: body() waits for it, so the earlier headers object is dead;
    // one asked for afterwards works.
    let out = vm.on_request(&message(Some("{}")), &ctx, "").expect("run");
    let err = out.error.as_deref().expect("dead handle raises");
    assert!(err.contains("object used outside of proper scope"), "{err}");
    assert_eq!(out.header("x-after"), Some("1"));
    assert_eq!(out.header("x-before"), None);
    // No body (or an empty one): the headers ended the stream, body()
    // returns at once and nothing dies.
    for body in [None, Some("")] {
        let out = vm.on_request(&message(body), &ctx, "").expect("run");
        assert_eq!(out.error, None, "{body:?}");
        assert_eq!(out.header("x-before"), Some("1"), "{body:?}");
    }
}

#[test]
fn the_shim_kills_stream_info_across_a_body_wait() {
    let script = r#"
function envoy_on_request(h)
  local meta = h:streamInfo():dynamicMetadata()
  h:body()
  h:streamInfo():dynamicMetadata():set("t", "fresh", "yes")
  meta:set("t", "stale", "yes")
end
"#;
    let vm = runner::FilterVm::with_script(script).expect("load");
    let out = vm
        .on_request(&message(Some("x")), &serde_json::json!({}), "")
        .expect("run");
    assert!(
        out.error
            .as_deref()
            .is_some_and(|e| e.contains("object used outside of proper scope")),
        "{:?}",
        out.error
    );
    assert_eq!(out.metadata["t"], serde_json::json!({"fresh": "yes"}));
}
