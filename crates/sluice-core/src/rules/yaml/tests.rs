//! Tests of the YAML reader: positions, field paths, each kind of error,
//! per-entry recovery, and marked-yaml's scalar rules (which the raw
//! structs rely on). The loader's diagnostics are tested in `rules::tests`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

type Str = Spanned<String>;

/// Shaped like the loader's raw structs (`rules::raw`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a service mapping")]
struct Service {
    name: Str,
    #[serde(default)]
    connect_timeout: Option<Str>,
    #[serde(default)]
    endpoints: Vec<Spanned<Endpoint>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an endpoint mapping")]
struct Endpoint {
    address: Str,
    port: Str,
    #[serde(default)]
    weight: Option<Str>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    locality: Option<Spanned<Locality>>,
    #[serde(default)]
    healthy: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a locality mapping")]
struct Locality {
    #[serde(default)]
    region: String,
    #[serde(default)]
    zone: String,
}

/// What a loader built on [`Events`] makes of a file whose only key is
/// `services`: the good entries, and per failed one its error and name.
struct Loaded {
    services: Vec<Service>,
    errors: Vec<(Error, Option<String>)>,
}

/// The loader's walk (as `raw::load` does it): the top mapping by hand,
/// each list entry through [`Events::entry`].
fn load(text: &str) -> Result<Loaded, Error> {
    let mut events = Events::new(text);
    let mut out = Loaded {
        services: Vec::new(),
        errors: Vec::new(),
    };
    assert!(events.start_document()?, "a document");
    assert!(matches!(events.peek_node()?, NodeStart::Mapping(_)));
    events.enter()?;
    let mut seen = KeySet::default();
    while let Some((key, _)) = events.next_key(&mut seen)? {
        assert_eq!(key, "services");
        assert!(matches!(events.peek_node()?, NodeStart::Sequence(_)));
        events.enter()?;
        let mut index = 0;
        while events.next_item()? {
            match events.entry::<Service>(&format!("services[{index}]")) {
                Ok(service) => out.services.push(service),
                Err(e) if e.error.is_fatal() => return Err(e.error),
                Err(e) => out.errors.push((e.error, e.name.map(|n| n.into_owned()))),
            }
            index += 1;
        }
    }
    Ok(out)
}

/// The one error `text` gives, as `line:column: path: message`.
fn one_error(text: &str) -> String {
    let loaded = match load(text) {
        Ok(loaded) => loaded,
        Err(fatal) => return fatal.to_string(),
    };
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    loaded.errors[0].0.to_string()
}

fn pos<T>(s: &Spanned<T>) -> (usize, usize) {
    let start = s.span().start();
    (start.line(), start.column())
}

const BLOCK: &str = "services:
  - name: web
    connect_timeout: 1s
    endpoints:
      - address: 10.0.0.1
        port: \"8080\"
        labels:
          version: v1
      - address: 10.0.0.2
        port: 8081
";

#[test]
fn block_style_values_keep_their_positions() {
    let loaded = load(BLOCK).expect("valid");
    let [web] = loaded.services.as_slice() else {
        panic!("one service")
    };
    assert_eq!((web.name.as_str(), pos(&web.name)), ("web", (2, 11)));
    assert_eq!(pos(web.connect_timeout.as_ref().expect("set")), (3, 22));
    // A block mapping starts at its first key, where a user looks.
    assert_eq!(pos(&web.endpoints[0]), (5, 9));
    assert_eq!(pos(&web.endpoints[1]), (9, 9));
    assert_eq!(
        (web.endpoints[0].port.as_str(), pos(&web.endpoints[0].port)),
        ("8080", (6, 15))
    );
    assert_eq!(web.endpoints[1].port, "8081");
    assert_eq!(web.endpoints[0].labels["version"], "v1");
}

#[test]
fn flow_style_values_keep_their_positions() {
    let text = "services: [{name: web, endpoints: [{address: 10.0.0.1, port: 1}, {address: 10.0.0.2, port: 2}]}]\n";
    let loaded = load(text).expect("valid");
    let web = &loaded.services[0];
    assert_eq!(pos(&web.name), (1, 19));
    assert_eq!(pos(&web.endpoints[1]), (1, 66));
    assert_eq!(pos(&web.endpoints[1].port), (1, 92));
}

#[test]
fn a_large_one_line_flow_list_is_read_whole() {
    // marked-yaml's scanner queued every token of such a line before the
    // first event; this reads it entry by entry.
    let n = 50_000;
    let entries: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{address: 10.0.{}.{}, port: {}}}",
                i / 256 % 256,
                i % 256,
                1000 + i % 60000
            )
        })
        .collect();
    let text = format!(
        "services: [{{name: big, endpoints: [{}]}}]\n",
        entries.join(", ")
    );
    let loaded = load(&text).expect("valid");
    let eps = &loaded.services[0].endpoints;
    assert_eq!(eps.len(), n);
    let last = &eps[n - 1];
    assert_eq!(
        last.address.as_str(),
        format!("10.0.{}.{}", (n - 1) / 256 % 256, (n - 1) % 256)
    );
    let column = text.rfind("{address").expect("an entry") + 1;
    assert_eq!(pos(last), (1, column));
}

#[test]
fn errors_name_the_field_path_and_the_node() {
    let text = format!("{BLOCK}      - address: 10.0.0.3\n        port: [1]\n");
    assert_eq!(
        one_error(&text),
        "12:15: services[0].endpoints[2].port: wrong type: expected a string, found sequence"
    );
    let text = format!("{BLOCK}        locality: {{region: eu, zone: [a]}}\n");
    assert_eq!(
        one_error(&text),
        "11:38: services[0].endpoints[1].locality.zone: wrong type: expected a string, found sequence"
    );
}

#[test]
fn unknown_fields_point_at_the_key_and_list_the_valid_ones() {
    let text = format!("{BLOCK}        wieght: 3\n");
    assert_eq!(
        one_error(&text),
        "11:9: services[0].endpoints[1].wieght: unknown field `wieght`; valid fields are \
         `address`, `port`, `weight`, `labels`, `locality`, `healthy`"
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    assert_eq!(
        one_error("services:\n  - name: x\n    endpoints: 3\n"),
        "3:16: services[0].endpoints: wrong type: expected a list, found string \"3\""
    );
    assert_eq!(
        one_error("services:\n  - just-a-string\n"),
        "2:5: services[0]: wrong type: expected a service mapping, found string \"just-a-string\""
    );
}

#[test]
fn missing_fields_point_at_the_mapping() {
    assert_eq!(
        one_error("services:\n  - connect_timeout: 1s\n"),
        "2:5: services[0]: missing field `name`"
    );
    assert_eq!(
        one_error("services: [{name: a, endpoints: [{port: 1}]}]\n"),
        "1:34: services[0].endpoints[0]: missing field `address`"
    );
}

#[test]
fn duplicate_keys_point_at_the_second_and_name_the_first_line() {
    assert_eq!(
        one_error("services:\n  - name: a\n    name: b\n"),
        "3:5: services[0].name: duplicate key `name` (first at line 2)"
    );
    // Keys of user-chosen maps too, past the small-map scan.
    let labels: Vec<String> = (0..40).map(|i| format!("k{i}: v")).collect();
    let text = format!(
        "services: [{{name: a, endpoints: [{{address: x, port: 1, labels: {{{}, k7: w}}}}]}}]\n",
        labels.join(", ")
    );
    let error = one_error(&text);
    assert!(
        error.ends_with("services[0].endpoints[0].labels.k7: duplicate key `k7` (first at line 1)"),
        "{error}"
    );
}

#[test]
fn duplicate_fields_through_an_alias_are_refused() {
    #[derive(Debug, Deserialize)]
    struct Aliased {
        #[serde(alias = "b")]
        _a: String,
    }
    let mut events = Events::new("{_a: 1, b: 2}");
    events.start_document().expect("a document");
    let error = events.entry::<Aliased>("x").expect_err("duplicate").error;
    assert_eq!(error.to_string(), "1:9: x.b: duplicate field `_a`");
}

#[test]
fn anchors_aliases_and_tags_are_refused() {
    let anchors = "YAML anchors and aliases are not supported";
    let tags = "YAML tags (`!foo`, `!!str`) are not supported";
    assert_eq!(
        one_error("services:\n  - &web {name: web}\n"),
        format!("2:10: services[0]: {anchors}")
    );
    assert_eq!(
        one_error("services:\n  - name: &n web\n"),
        format!("2:14: services[0].name: {anchors}")
    );
    let loaded = load("services:\n  - name: &n web\n  - name: *n\n").expect("not fatal");
    let last = loaded.errors.last().map(|(e, _)| e.to_string());
    assert_eq!(last, Some(format!("3:11: services[1].name: {anchors}")));
    assert_eq!(
        one_error("services:\n  - name: !!str web\n"),
        format!("2:17: services[0].name: {tags}")
    );
}

#[test]
fn booleans_are_plain_true_or_false() {
    let yes = "services: [{name: a, endpoints: [{address: x, port: 1, healthy: True}]}]\n";
    let loaded = load(yes).expect("valid");
    assert_eq!(
        loaded.services[0].endpoints[0].healthy.as_deref(),
        Some(&true)
    );
    for bad in ["maybe", "yes", "1"] {
        let text = format!(
            "services: [{{name: a, endpoints: [{{address: x, port: 1, healthy: {bad}}}]}}]\n"
        );
        assert_eq!(
            one_error(&text),
            "1:65: services[0].endpoints[0].healthy: wrong type: expected `true` or `false`",
            "{bad}"
        );
    }
}

#[test]
fn numbers_parse_from_plain_scalars() {
    #[derive(Debug, Deserialize)]
    struct Port {
        port: u16,
    }
    let read = |text: &str| {
        let mut events = Events::new(text);
        events.start_document().expect("a document");
        events.entry::<Port>("p").map_err(|e| e.error.to_string())
    };
    assert_eq!(read("port: 8080").map(|p| p.port), Ok(8080));
    assert_eq!(
        read("port: 70000").map(|p| p.port),
        Err(
            "1:7: p.port: wrong type: expected an integer (number too large to fit in target type)"
                .into()
        )
    );
    // marked-yaml coerces quoted scalars too, as sluice loads with it.
    assert_eq!(read("port: '80'").map(|p| p.port), Ok(80));
    assert_eq!(
        read("port: [80]").map(|p| p.port),
        Err("1:7: p.port: wrong type: expected u16, found sequence".into())
    );
}

#[test]
fn present_keys_are_some_and_empty_values_read_as_empty() {
    let text = "services:
  - name: a
    endpoints:
      - address: x
        port: 1
        weight:
        labels:
        locality:
      - address: y
        port: 2
        weight: null
      - address: z
        port: 3
        weight: ~
";
    let loaded = load(text).expect("valid");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let eps = &loaded.services[0].endpoints;
    assert_eq!(eps[0].weight.as_deref().map(String::as_str), Some(""));
    assert!(eps[0].labels.is_empty());
    let locality = eps[0].locality.as_ref().expect("present");
    assert_eq!((locality.region.as_str(), locality.zone.as_str()), ("", ""));
    assert_eq!(eps[1].weight.as_deref().map(String::as_str), Some("null"));
    assert!(eps[1].locality.is_none());
    assert_eq!(eps[2].weight.as_deref().map(String::as_str), Some("~"));
    let empty = load("services:\n  - name: b\n    endpoints:\n").expect("valid");
    assert!(empty.services[0].endpoints.is_empty());
}

#[test]
fn a_bad_entry_is_skipped_and_the_next_ones_read() {
    let text = "services:
  - name: first
  - name: broken
    endpoints:
      - {address: x, port: 1, bogus: [deep, {nested: true}]}
      - {address: y, port: 2}
    connect_timeout: 1s
  - name: third
  - [not, a, mapping]
  - name: last
";
    let loaded = load(text).expect("not fatal");
    let names: Vec<&str> = loaded.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first", "third", "last"]);
    let errors: Vec<(String, Option<&str>)> = loaded
        .errors
        .iter()
        .map(|(e, n)| (e.to_string(), n.as_deref()))
        .collect();
    assert_eq!(
        errors,
        [
            (
                "5:31: services[1].endpoints[0].bogus: unknown field `bogus`; valid fields are \
                 `address`, `port`, `weight`, `labels`, `locality`, `healthy`"
                    .to_string(),
                Some("broken")
            ),
            // A list reads as the struct's fields in order, as with
            // marked-yaml (serde's derive accepts both).
            (
                "9:14: services[3][2]: wrong type: expected a list, found string \"mapping\""
                    .to_string(),
                None
            ),
        ]
    );
}

#[test]
fn a_syntax_error_stops_the_read_at_what_is_unclosed() {
    // marked-yaml pointed at the end of the file ("did not find expected
    // node content"); granit-parser names the bracket left open.
    for (text, line, column, message) in [
        ("services: [\n", 1, 11, "invalid YAML: unclosed bracket '['"),
        (
            "services:\n  - {name: a\n",
            2,
            5,
            "invalid YAML: unclosed bracket '{'",
        ),
    ] {
        let error = load(text).err().expect("fatal");
        assert!(error.is_fatal());
        let at = error.marker().expect("placed");
        assert_eq!((at.line(), at.column(), error.path()), (line, column, ""));
        assert_eq!(error.message(), message);
    }
    let error = load("services:\n  - name: a: b\n").err().expect("fatal");
    assert!(error.message().starts_with("invalid YAML: "), "{error}");
}

#[test]
fn spanned_map_keys_keep_their_positions() {
    let mut events = Events::new("set:\n  x-a: 1\n  x-b: 2\n");
    events.start_document().expect("a document");
    let map: BTreeMap<String, BTreeMap<Str, String>> = events.entry("h").expect("valid");
    let keys: Vec<(&str, (usize, usize))> =
        map["set"].keys().map(|k| (k.as_str(), pos(k))).collect();
    assert_eq!(keys, [("x-a", (2, 3)), ("x-b", (3, 3))]);
}
