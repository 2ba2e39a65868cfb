//! The same bad files through today's loader path (marked-yaml tree,
//! `from_node`, `diagnose::{error_loc, describe}`, `Diags`' block mapping
//! fix) and through [`Events`]: every diagnostic must have the same
//! line:column, path and sentence, so switching the loader changes no
//! message a user or a test relies on. Load errors (duplicate keys,
//! anchors, tags) were reported at `<root>`; ours name the field, so for
//! them only position and sentence must match.
//!
//! Removed with marked-yaml (see YAML_LOADER_PLAN.md).

use marked_yaml::LoaderOptions;

use crate::rules::diagnose::{describe, error_loc, report_load_error};
use crate::rules::error::{Diags, ROOT};

mod marked {
    use std::collections::BTreeMap;

    use marked_yaml::Spanned;
    use serde::Deserialize;

    raw_structs!(Spanned);
}

/// (line, column, path, message) of one diagnostic.
type Found = (usize, usize, String, String);

/// Today's loader on a file whose only key is `services`.
fn by_marked_yaml(text: &str) -> Vec<Found> {
    let mut diags = Diags::new("t");
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    match marked_yaml::parse_yaml_with_options(0, text, options) {
        Err(err) => report_load_error(&err, &mut diags),
        Ok(root) => {
            diags.index_mappings(&root);
            let services = root
                .as_mapping()
                .and_then(|m| m.get_sequence("services"))
                .expect("a services list");
            for (i, entry) in services.iter().enumerate() {
                if let Err(err) = marked_yaml::from_node::<marked::Service>(entry) {
                    let loc = error_loc(entry, &err, &diags).unwrap_or(diags.loc(entry.span()));
                    let path = match err.path() {
                        Some(sub) => format!("services[{i}].{sub}"),
                        None => format!("services[{i}]"),
                    };
                    diags.error_at(loc, path, describe(&err));
                }
            }
        }
    }
    let found = diags.into_error().diagnostics;
    found
        .into_iter()
        .map(|d| (d.line, d.column, d.path, d.message))
        .collect()
}

fn by_events(text: &str) -> Vec<Found> {
    let found = |e: &super::Error| {
        let at = e.marker().expect("placed");
        let path = if e.path().is_empty() { ROOT } else { e.path() };
        (at.line(), at.column(), path.to_string(), e.message())
    };
    match super::load(text) {
        Ok(loaded) => loaded.errors.iter().map(|(e, _)| found(e)).collect(),
        Err(fatal) => vec![found(&fatal)],
    }
}

const SERVICE: &str =
    "services:\n  - name: web\n    endpoints:\n      - address: 10.0.0.1\n        port: \"8080\"\n";

#[test]
fn shape_errors_read_the_same_as_with_marked_yaml() {
    let cases = [
        format!("{SERVICE}        wieght: 2\n"),
        format!("{SERVICE}        healthy: maybe\n"),
        format!("{SERVICE}        healthy: 1\n"),
        format!("{SERVICE}        labels: {{a: [1]}}\n"),
        format!("{SERVICE}        locality: {{region: eu, zone: [a]}}\n"),
        format!("{SERVICE}        locality: eu\n"),
        format!("{SERVICE}        weight: {{a: 1}}\n"),
        format!("{SERVICE}      - port: 1\n"),
        format!("{SERVICE}      - plain\n"),
        format!("{SERVICE}    connect_timeout: [1s]\n"),
        "services:\n  - connect_timeout: 1s\n".to_string(),
        "services:\n  - name: x\n    endpoints: 3\n".to_string(),
        "services:\n  - just-a-string\n  - [a, list]\n".to_string(),
        "services: [{name: a, endpoints: [{address: x, port: 1, bogus: 2}]}, {nome: b}]\n"
            .to_string(),
        "services: [{name: a, endpoints: [{address: x}]}]\n".to_string(),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|text| {
            let (ours, want) = (by_events(text), by_marked_yaml(text));
            let same = !want.is_empty() && ours == want;
            (!same).then(|| format!("for\n{text}ours   {ours:?}\nmarked {want:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn load_errors_read_the_same_but_name_the_field() {
    let cases = [
        ("services:\n  - name: a\n    name: b\n", "services[0].name"),
        ("services:\n  - &web {name: web}\n", "services[0]"),
        ("services:\n  - name: !!str web\n", "services[0].name"),
        (
            "services:\n  - name: a\n    endpoints: [{address: x, port: 1, address: y}]\n",
            "services[0].endpoints[0].address",
        ),
    ];
    for (text, path) in cases {
        let strip = |found: Vec<Found>| -> Vec<(usize, usize, String)> {
            found.into_iter().map(|(l, c, _, m)| (l, c, m)).collect()
        };
        let ours = by_events(text);
        assert_eq!(
            ours.first().map(|f| f.2.as_str()),
            Some(path),
            "for\n{text}"
        );
        assert_eq!(strip(ours), strip(by_marked_yaml(text)), "for\n{text}");
    }
}
