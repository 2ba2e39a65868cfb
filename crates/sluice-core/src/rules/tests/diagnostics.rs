//! Diagnostics themselves: a position for a file that is not UTF-8, and
//! values echoed in messages cut to a readable length.

use super::*;

#[test]
fn a_file_that_is_not_utf8_is_located_at_its_first_bad_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("latin1.yaml");
    // "café" saved as Latin-1: 0xE9 cannot start a UTF-8 character.
    std::fs::write(&path, b"services: []\nlisteners:\n  - name: caf\xe9\n").expect("write");
    let err = load_file(&path).expect_err("not UTF-8");
    assert_eq!(err.diagnostics.len(), 1);
    let d = &err.diagnostics[0];
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        (path.display().to_string().as_str(), 3, 14),
        "{d}"
    );
    assert!(d.message.contains("not UTF-8 (byte 0xE9 here)"), "{d}");
}

#[test]
fn columns_count_characters_before_the_bad_byte() {
    // Two-byte `é` and a three-byte `€` before a stray continuation byte.
    let err = text_of("r.yaml", b"# \xc3\xa9\xe2\x82\xac\x80\n".to_vec()).expect_err("bad");
    let d = &err.diagnostics[0];
    assert_eq!((d.line, d.column), (1, 5), "{d}");
    assert_eq!(text_of("r.yaml", "ok: é".into()).expect("utf8"), "ok: é");
}

#[test]
fn a_long_value_is_cut_in_the_diagnostic() {
    let name = "A".repeat(5 << 20);
    let yaml = format!("{{services: [{{name: {name}, endpoints: []}}], listeners: []}}\n");
    let err = parse("rules.yaml", &yaml).expect_err("invalid name");
    let text = err.to_string();
    assert!(text.len() < 1024, "{} bytes", text.len());
    assert!(
        text.starts_with("rules.yaml:1:20: services[0].name: invalid name `AAAA"),
        "{text}"
    );
    assert!(text.contains("…[5242680 bytes cut]…AAAA"), "{text}");
    assert!(text.ends_with("AAAA`: use lowercase letters, digits, `-` and `_`, starting with a letter or digit, at most 60 characters"), "{text}");
}

#[test]
fn a_long_key_is_cut_in_the_path_too() {
    // YAML limits an implicit key to 1,024 characters; the YAML reader
    // applies it in flow style too (which is what keeps it from queueing a
    // whole one-line file), so this is about as long as a key gets.
    let key = "k".repeat(1000);
    let yaml = format!("{{services: [], listeners: [], {key}: 1}}\n");
    let d = &parse("rules.yaml", &yaml)
        .expect_err("unknown field")
        .diagnostics[0];
    assert!(d.path.contains("bytes cut"), "{d}");
    assert!(d.to_string().len() < 1024, "{d}");
    assert!(d.message.contains("valid fields are `services`"), "{d}");
    let key = "k".repeat(1 << 20);
    let yaml = format!("{{services: [], listeners: [], {key}: 1}}\n");
    let d = &parse("rules.yaml", &yaml)
        .expect_err("too long a key")
        .diagnostics[0];
    assert!(d.to_string().len() < 1024, "{d}");
    assert!(d.message.starts_with("invalid YAML"), "{d}");
}

#[test]
fn at_most_a_thousand_diagnostics_are_kept() {
    let yaml = format!(
        "{{services: [{}], listeners: []}}\n",
        vec!["1"; 5000].join(",")
    );
    let diags = parse("rules.yaml", &yaml)
        .expect_err("not services")
        .diagnostics;
    assert_eq!(diags.len(), 1001);
    assert!(
        diags[1000]
            .message
            .starts_with("4000 more problems not shown"),
        "{}",
        diags[1000]
    );
}

#[test]
fn a_yaml_level_problem_fails_only_its_entry() {
    // A duplicate key used to fail the whole file at `<root>`: now only its
    // service is left out, the others are still checked, and a reference
    // to the broken one is not called dangling.
    let yaml = "services:
  - name: a
    name: b
  - name: Bad~name
  - name: good
listeners:
  - name: http
    port: 10000
    virtual_hosts:
      - name: web
        domains: [\"*\"]
        routes:
          - {name: one, to: {service: good}}
          - {name: two, to: {service: a}}
";
    let diags = parse("rules.yaml", yaml)
        .expect_err("two problems")
        .diagnostics;
    let found: Vec<(usize, usize, &str)> = diags
        .iter()
        .map(|d| (d.line, d.column, d.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [(3, 5, "services[0].name"), (4, 11, "services[1].name")],
        "{diags:#?}"
    );
}
