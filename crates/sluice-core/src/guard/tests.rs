use super::*;
use crate::compile;

/// A rules file with `services` services, each routed from its own
/// route on listener `http` (groups `edge` when `grouped`), plus a second
/// listener `admin` that reaches the first service.
fn mk_rules(services: usize, grouped: bool) -> String {
    let mut s = String::from("services:\n");
    for i in 0..services {
        s.push_str(&format!(
            "  - name: svc{i}\n    endpoints:\n      - {{address: 127.0.0.1, port: {}}}\n",
            8000 + i
        ));
    }
    s.push_str("listeners:\n");
    for (name, port) in [("http", 10000), ("admin", 10001)] {
        s.push_str(&format!(
            "  - name: {name}\n    address: 127.0.0.1\n    port: {port}\n"
        ));
        if grouped {
            s.push_str("    groups: [edge]\n");
        }
        s.push_str(
            "    virtual_hosts:\n      - name: vh\n        domains: [\"*\"]\n        routes:\n",
        );
        let reach = if name == "http" { services } else { 1 };
        for i in 0..reach {
            s.push_str(&format!(
                "          - match: {{prefix: /s{i}}}\n            to: {{service: svc{i}}}\n"
            ));
        }
    }
    s
}

fn mk_compiled(text: &str) -> (Config, Snapshots) {
    let config = crate::rules::parse("rules.yaml", text).expect("valid rules");
    let snaps = compile::compile(&config).expect("compiles");
    (config, snaps)
}

fn mk_empty() -> (Config, Snapshots) {
    mk_compiled("")
}

#[test]
fn an_empty_or_comment_only_file_is_always_held() {
    let (_, before) = mk_compiled(&mk_rules(2, false));
    let (_, after) = mk_empty();
    for text in [
        "",
        "\n\n",
        "# just a comment\n",
        "---\n# c\n...\n",
        "   \n\t\n",
    ] {
        assert!(is_empty_file(text), "{text:?}");
        // Even with the guard off.
        let off = Guard {
            max_removal_percent: 100,
        };
        let held = off.check(&before, &after, "v1", text).expect("held");
        assert!(held.empty_file);
    }
    assert!(!is_empty_file("services: []\n"));
    assert!(!is_empty_file("# c\nlisteners: []\n"));
}

#[test]
fn removing_every_listener_of_a_group_is_held_and_names_what_goes() {
    let (_, before) = mk_compiled(&mk_rules(3, true));
    let (_, after) = mk_compiled("services: []\nlisteners: []\n");
    let held = Guard::default()
        .check(&before, &after, "abc", "services: []\nlisteners: []\n")
        .expect("held");
    assert!(!held.empty_file);
    let edge: Vec<_> = held.removals.iter().filter(|r| r.group == "edge").collect();
    let kinds: Vec<&str> = edge.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["listeners", "clusters"]);
    assert_eq!(edge[0].removed, ["admin", "http"]);
    assert_eq!(edge[0].served, 2);
    assert_eq!(edge[1].removed, ["svc0", "svc1", "svc2"]);
    assert!(held
        .summary()
        .contains("group edge: removes 2 of 2 listeners"));
}

#[test]
fn the_share_removed_is_compared_with_the_limit() {
    // 4 clusters reached from `http`; keeping 2 removes 50 %, keeping 1
    // removes 75 %.
    let (_, before) = mk_compiled(&mk_rules(4, false));
    let (_, half) = mk_compiled(&mk_rules(2, false));
    let (_, quarter) = mk_compiled(&mk_rules(1, false));
    let guard = Guard::default();
    assert_eq!(guard.check(&before, &half, "v", "x: 1"), None);
    let held = guard.check(&before, &quarter, "v", "x: 1").expect("held");
    assert_eq!(held.removals.len(), 1);
    assert_eq!(held.removals[0].group, FALLBACK_GROUP);
    assert_eq!(held.removals[0].kind, "clusters");
    assert_eq!(held.removals[0].removed, ["svc1", "svc2", "svc3"]);
    // A stricter limit holds the 50 % edit; 100 turns the guard off.
    let strict = Guard {
        max_removal_percent: 25,
    };
    assert!(strict.check(&before, &half, "v", "x: 1").is_some());
    let off = Guard {
        max_removal_percent: 100,
    };
    assert_eq!(off.check(&before, &quarter, "v", "x: 1"), None);
}

#[test]
fn adding_and_changing_is_never_held() {
    let (_, before) = mk_compiled(&mk_rules(1, false));
    let (_, after) = mk_compiled(&mk_rules(5, false));
    assert_eq!(Guard::default().check(&before, &after, "v", "x: 1"), None);
    // From nothing served, nothing can be removed.
    let (_, nothing) = mk_empty();
    assert_eq!(Guard::default().check(&nothing, &after, "v", "x: 1"), None);
}

#[test]
fn a_group_that_leaves_the_rules_loses_what_it_served() {
    // Renamed from `edge` to `web`: `edge` proxies now get the fallback,
    // which holds no listener; `web` is new and loses nothing.
    let (_, before) = mk_compiled(&mk_rules(2, true));
    let (_, after) = mk_compiled(&mk_rules(2, true).replace("[edge]", "[web]"));
    let held = Guard::default()
        .check(&before, &after, "v", "x: 1")
        .expect("held");
    assert!(held.removals.iter().all(|r| r.group == "edge"), "{held:?}");
    assert_eq!(held.removals.len(), 2);
    // Moving the listeners out of their group keeps them on the fallback,
    // which `edge` proxies then get: nothing is removed from them.
    let (_, ungrouped) = mk_compiled(&mk_rules(2, false));
    assert_eq!(
        Guard::default().check(&before, &ungrouped, "v", "x: 1"),
        None
    );
}

#[test]
fn a_plan_lists_added_changed_and_removed_names_with_their_rules() {
    let (before_cfg, before) = mk_compiled(&mk_rules(3, false));
    // svc2 leaves, svc3 arrives, svc0 moves to another port.
    let text = mk_rules(3, false)
        .replace("svc2", "svc3")
        .replace("port: 8000", "port: 9000");
    let (after_cfg, after) = mk_compiled(&text);
    let plan = plan(
        &before,
        RulesOf::Config(&before_cfg),
        &after,
        RulesOf::Config(&after_cfg),
    );
    assert_eq!(plan.groups.keys().collect::<Vec<_>>(), [FALLBACK_GROUP]);
    let types = &plan.groups[FALLBACK_GROUP].types;
    let cds = &types["cds"];
    assert_eq!(
        cds.added,
        [Change {
            name: "svc3".into(),
            rule: Some("services (svc3)".into())
        }]
    );
    assert_eq!(cds.removed[0].name, "svc2");
    assert_eq!(cds.removed[0].rule.as_deref(), Some("services (svc2)"));
    let eds = &types["eds"];
    assert_eq!(
        eds.changed
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["svc0"]
    );
    let rds = &types["rds"];
    assert_eq!(rds.changed[0].name, "http");
    assert_eq!(
        rds.changed[0].rule.as_deref(),
        Some("listeners[0] (http).virtual_hosts")
    );
    // Listeners and the other route table are untouched.
    assert!(!types.contains_key("lds"));
    assert_eq!(rds.changed.len(), 1);
}

#[test]
fn the_same_config_plans_nothing() {
    let (cfg, snaps) = mk_compiled(&mk_rules(3, true));
    let (_, again) = mk_compiled(&mk_rules(3, true));
    let rules = RulesOf::Config(&cfg);
    assert_eq!(plan(&snaps, rules, &again, rules), Plan::default());
}

#[test]
fn a_plan_names_the_new_files_rules_by_position() {
    let (before_cfg, before) = mk_compiled(&mk_rules(1, false));
    let text = mk_rules(2, false);
    let (after_cfg, origins) = crate::rules::parse_with_origins("new.yaml", &text).expect("valid");
    let after = compile::compile(&after_cfg).expect("compiles");
    let plan = plan(
        &before,
        RulesOf::Config(&before_cfg),
        &after,
        RulesOf::Origins(&origins),
    );
    let types = &plan.groups[FALLBACK_GROUP].types;
    // svc1 is the second service: its name is on line 5, column 11.
    let added = &types["cds"].added[0];
    assert_eq!(added.name, "svc1");
    assert_eq!(added.rule.as_deref(), Some("new.yaml:5:11: services[1]"));
    let rds = &types["rds"].changed[0];
    assert_eq!(rds.name, "http");
    assert!(
        rds.rule
            .as_deref()
            .is_some_and(|r| r.starts_with("new.yaml:") && r.ends_with(": listeners[0]")),
        "{rds:?}"
    );
}

#[test]
fn adding_grpc_targets_removes_nothing_and_removing_them_is_held() {
    let envoy_only = mk_rules(2, false);
    let grpc = "grpc:\n  - target: svc0\n    groups: [apps]\n    routes: [{to: {service: svc0}}]\n  - target: svc1\n    routes: [{to: {service: svc1}}]\n";
    let with_grpc = format!("{envoy_only}{grpc}");
    let (_, before) = mk_compiled(&envoy_only);
    let (_, after) = mk_compiled(&with_grpc);
    // The gRPC clients' snapshots are new; Envoys' are the same.
    assert_eq!(
        Guard::default().check(&before, &after, "v", &with_grpc),
        None
    );
    let held = Guard::default()
        .check(&after, &before, "v", &envoy_only)
        .expect("held");
    let groups: Vec<(&str, &str)> = held
        .removals
        .iter()
        .map(|r| (r.group.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(
        groups,
        [
            ("grpc:*", "listeners"),
            ("grpc:*", "clusters"),
            ("grpc:apps", "listeners"),
            ("grpc:apps", "clusters"),
        ]
    );
}
