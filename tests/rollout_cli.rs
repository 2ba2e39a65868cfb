//! `sluice rollout`: human output, `--output json`, exit codes and the
//! admin token, against the `sluice` binary. No proxy is connected, so a
//! started rollout stays waiting for ACKs: the output is deterministic.

mod common;

use common::rollout::*;
use common::*;

fn start() -> (ControllerFiles, Sluice) {
    let files = ControllerFiles::new();
    let rules = files.dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let sluice = files.sluice(&rules, "127.0.0.1:0", &[]);
    (files, sluice)
}

#[test]
fn calls_without_the_token_are_refused() {
    let (files, sluice) = start();
    let none = cli(&sluice, None, &["list"]);
    assert_eq!(none.code, 4, "{none:?}");
    let wrong = files.dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token").expect("write");
    let bad = cli(&sluice, Some(&wrong), &["list"]);
    assert_eq!(bad.code, 4, "{bad:?}");
    assert!(bad.stderr.contains("token"), "{bad:?}");
    assert_eq!(cli(&sluice, Some(&files.token_file), &["list"]).code, 0);
}

#[test]
fn human_and_json_output() {
    let (files, sluice) = start();
    let run = |args: &[&str]| cli(&sluice, Some(&files.token_file), args);
    assert_eq!(run(&["list"]).stdout, "no rollouts\n");

    let started = run(&[
        "start",
        "web",
        "--to",
        "canary",
        "--steps",
        "20,50,100",
        "--interval",
        "2s",
        "--header",
        "x-canary=1",
    ]);
    assert_eq!(started.code, 0, "{started:?}");
    let mut lines = started.stdout.lines();
    assert_eq!(
        lines.next(),
        Some("web: waiting for ack step 1/3, canary canary 20% / stable stable 80%, 0/0 proxies ACKed")
    );
    assert_eq!(
        lines.next(),
        Some("  strategy canary, steps [20, 50, 100], interval 2000ms, max error rate 1.00%, max p99 500ms, failures 0/3")
    );
    assert_eq!(lines.next(), Some("  header x-canary=1 goes to canary"));

    let v = run(&["status", "web", "--output", "json"]).json();
    assert_eq!(v["phase"], "waiting_for_ack");
    assert_eq!(
        (v["canary_weight"].clone(), v["stable_weight"].clone()),
        (20.into(), 80.into())
    );
    assert_eq!(v["spec"]["steps"], serde_json::json!([20, 50, 100]));
    assert_eq!(
        v["spec"]["header"],
        serde_json::json!({"name": "x-canary", "value": "1"})
    );
    assert_eq!(v["done"], false);

    let list = run(&["list"]).stdout;
    assert!(list.starts_with("SERVICE"), "{list}");
    assert!(
        list.lines().nth(1).is_some_and(|l| l.starts_with("web")
            && l.contains("waiting_for_ack")
            && l.contains("1/3")),
        "{list}"
    );
    let all = run(&["list", "--output", "json"]).json();
    assert_eq!(all.as_array().map(Vec::len), Some(1));

    // Refusals exit 3.
    assert_eq!(
        run(&["start", "web", "--to", "canary"]).code,
        3,
        "already active"
    );
    assert_eq!(run(&["status", "nope"]).code, 3);
    assert_eq!(run(&["resume", "web"]).code, 3, "not paused");
    let unknown = run(&["start", "api", "--to", "canary"]);
    assert_eq!(unknown.code, 3, "{unknown:?}");
    assert!(unknown.stderr.contains("api~stable"), "{unknown:?}");

    let paused = run(&["pause", "web"]);
    assert!(
        paused.stdout.starts_with("web: paused step 1/3"),
        "{paused:?}"
    );
    assert!(paused.stdout.contains("(paused by operator)"), "{paused:?}");
    // A paused rollout waits for an operator: `--watch --timeout` gives a
    // pipeline its exit (6) instead of hanging.
    let waited = run(&["status", "web", "--watch", "--timeout", "1s"]);
    assert_eq!(waited.code, 6, "{waited:?}");
    assert!(
        waited.stdout.starts_with("web: paused step 1/3"),
        "{waited:?}"
    );
    assert!(
        waited.stderr.contains("web is still paused after 1s"),
        "{waited:?}"
    );
    assert_eq!(
        run(&["status", "web", "--timeout", "1s"]).code,
        2,
        "needs --watch"
    );
    let aborted = run(&["abort", "web"]);
    assert!(
        aborted.stdout.starts_with(
            "web: aborted, canary canary 0% / stable stable 100% (aborted by operator)"
        ),
        "{aborted:?}"
    );

    let history = run(&["history", "web"]).stdout;
    let messages: Vec<&str> = history
        .lines()
        .map(|l| l.split_once("s  ").map_or(l, |x| x.1))
        .collect();
    assert_eq!(
        messages[0],
        "started: stable → canary over steps [20, 50, 100]"
    );
    assert_eq!(messages[1], "step 1/3: canary 20%");
    assert!(messages[2].starts_with("paused at step 1"), "{history}");
    let h = run(&["history", "web", "--output", "json"]).json();
    assert_eq!(h["events"].as_array().map(Vec::len), Some(messages.len()));

    // `status --watch` ends at once on an ended rollout: 5 for a rollout
    // that was not promoted; one plain line when no terminal is attached.
    let watched = run(&["status", "web", "--watch"]);
    assert_eq!(watched.code, 5, "{watched:?}");
    assert_eq!(watched.stdout.lines().count(), 1, "{watched:?}");
    assert!(watched.stdout.starts_with("web: aborted"), "{watched:?}");
}
