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
