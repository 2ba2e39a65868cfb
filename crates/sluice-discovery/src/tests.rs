//! The index driven directly: merging, fail-static, readiness, resolve.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::model::{Endpoint, Health};

use super::index::SyncState;
use super::resolve::{merge, Resolver};
use super::status::summarize;
use super::*;

fn mk_endpoint(addr: &str, port: u16, health: Health, labels: &[(&str, &str)]) -> Endpoint {
    Endpoint {
        address: addr.parse().expect("ip"),
        port,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        weight: 1,
        health,
        locality: None,
        priority: 0,
    }
}

fn etcd_key(service: &str) -> FeedKey {
    FeedKey {
        service: service.into(),
        discovery: Discovery::Etcd {
            prefix: format!("/services/{service}/"),
        },
    }
}

fn file_key(service: &str) -> FeedKey {
    FeedKey {
        service: service.into(),
        discovery: Discovery::File {
            path: format!("{service}.yaml"),
        },
    }
}

fn entries(eps: &[(&str, Endpoint)]) -> BTreeMap<String, Endpoint> {
    eps.iter()
        .map(|(k, e)| (k.to_string(), e.clone()))
        .collect()
}

/// A rules config with service `web` discovered from etcd and a file.
fn mk_config() -> Config {
    let text = "sources: {etcd: {endpoints: [\"http://127.0.0.1:2379\"]}}
services:
  - name: web
    endpoints:
      - {address: 10.0.0.9, port: 80}
    discovery: {etcd: {prefix: /services/web/}, file: {path: web.yaml}}
listeners: []
";
    sluice_core::rules::parse("rules.yaml", text).expect("valid rules")
}

#[test]
fn apply_delete_reset_publish_views() {
    let (mut index, rx) = Index::new();
    let key = etcd_key("web");
    index.set_feeds(&BTreeSet::from([key.clone()]));
    let t = Instant::now();
    let a = mk_endpoint("10.0.0.1", 80, Health::Healthy, &[]);
    let b = mk_endpoint("10.0.0.2", 80, Health::Healthy, &[]);
    index.reset(&key, entries(&[("/services/web/a", a.clone())]), t);
    index.apply(&key, "/services/web/b".into(), b.clone(), t);
    let feed = rx.borrow().feeds[&key].clone();
    assert_eq!(feed.endpoints.len(), 2);
    assert_eq!(feed.sync, SyncState::Synced);
    assert_eq!(feed.last_sync(), Some(t));
    index.delete(&key, "/services/web/a", t);
    let feed = rx.borrow().feeds[&key].clone();
    assert_eq!(*feed.endpoints, entries(&[("/services/web/b", b)]));
}

#[test]
fn a_failing_source_keeps_its_endpoints_and_only_a_real_empty_listing_empties() {
    let (mut index, rx) = Index::new();
    let key = etcd_key("web");
    index.set_feeds(&BTreeSet::from([key.clone()]));
    let t0 = Instant::now();
    let a = mk_endpoint("10.0.0.1", 80, Health::Healthy, &[]);
    index.reset(&key, entries(&[("a", a)]), t0);
    let t1 = t0 + Duration::from_secs(3);
    index.fail(&key, "connection refused".into(), t1);
    index.fail(&key, "still refused".into(), t1 + Duration::from_secs(1));
    let feed = rx.borrow().feeds[&key].clone();
    assert_eq!(feed.endpoints.len(), 1, "fail-static");
    assert_eq!(
        feed.sync,
        SyncState::Failing {
            error: "still refused".into(),
            since: t1,
        }
    );
    assert_eq!(
        feed.last_sync(),
        Some(t0),
        "the last answer, not the failure"
    );
    let st = summarize(&rx.borrow(), t1 + Duration::from_secs(2));
    assert!(!st[0].up && st[0].synced);
    assert_eq!(st[0].last_sync_age_seconds, Some(5.0));
    assert_eq!(st[0].feeds[0].last_error.as_deref(), Some("still refused"));

    // Back, and the registry really has zero instances: scale to zero.
    index.reset(&key, BTreeMap::new(), t1 + Duration::from_secs(5));
    assert!(rx.borrow().feeds[&key].endpoints.is_empty());
    assert!(summarize(&rx.borrow(), t1)[0].up);
}

#[test]
fn not_ready_until_every_feed_synced_once() {
    let (mut index, rx) = Index::new();
    let config = mk_config();
    let feeds = View::feeds_of(&config);
    assert_eq!(feeds.len(), 2);
    index.set_feeds(&feeds);
    let t = Instant::now();
    // A failure before the first listing does not make it ready either.
    index.fail(&etcd_key("web"), "refused".into(), t);
    let err = rx.borrow().resolve(&config).expect_err("not synced");
    assert!(err.to_string().contains("has not synced"), "{err}");
    // apply on a never-listed feed does not count as a listing.
    index.apply(
        &etcd_key("web"),
        "x".into(),
        mk_endpoint("10.0.0.1", 80, Health::Healthy, &[]),
        t,
    );
    assert!(rx.borrow().resolve(&config).is_err());
    index.reset(&etcd_key("web"), BTreeMap::new(), t);
    assert!(
        rx.borrow().resolve(&config).is_err(),
        "file feed still pending"
    );
    index.reset(&file_key("web"), BTreeMap::new(), t);
    let resolved = rx.borrow().resolve(&config).expect("ready");
    // The static endpoint stays.
    assert_eq!(resolved.services["web"].endpoints.len(), 1);
}

#[test]
fn resolve_merges_sources_deterministically() {
    let (mut index, rx) = Index::new();
    let config = mk_config();
    index.set_feeds(&View::feeds_of(&config));
    let t = Instant::now();
    let dup_etcd = mk_endpoint("10.0.0.1", 80, Health::Draining, &[("version", "v1")]);
    let dup_file = mk_endpoint("10.0.0.1", 80, Health::Healthy, &[("zone", "a")]);
    index.reset(
        &etcd_key("web"),
        entries(&[
            ("/services/web/1", dup_etcd),
            (
                "/services/web/2",
                mk_endpoint("10.0.0.3", 80, Health::Healthy, &[]),
            ),
        ]),
        t,
    );
    index.reset(&file_key("web"), entries(&[("10.0.0.1:80", dup_file)]), t);
    let resolved = rx.borrow().resolve(&config).expect("ready");
    let eps = &resolved.services["web"].endpoints;
    let addrs: Vec<String> = eps
        .iter()
        .map(|e| format!("{}:{}", e.address, e.port))
        .collect();
    assert_eq!(addrs, ["10.0.0.1:80", "10.0.0.3:80", "10.0.0.9:80"]);
    // Healthier candidate wins; labels are completed from the other.
    assert_eq!(eps[0].health, Health::Healthy);
    assert_eq!(eps[0].labels.len(), 2);
}

#[test]
fn merge_rule_is_order_independent_for_health_and_first_wins_ties() {
    let a = mk_endpoint("10.0.0.1", 80, Health::Unhealthy, &[("v", "a")]);
    let b = mk_endpoint("10.0.0.1", 80, Health::Degraded, &[("v", "b")]);
    let c = mk_endpoint("10.0.0.1", 80, Health::Degraded, &[("v", "c")]);
    let s1 = entries(&[("1", a)]);
    let s2 = entries(&[("1", b)]);
    let s3 = entries(&[("1", c)]);
    let merged = merge(&[], &[&s1, &s2, &s3]);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].health, Health::Degraded);
    assert_eq!(merged[0].labels["v"], "b", "tie: earlier source wins");
}

#[test]
fn unchanged_updates_publish_nothing_and_removed_feeds_ignore_late_calls() {
    let (mut index, mut rx) = Index::new();
    let key = etcd_key("web");
    index.set_feeds(&BTreeSet::from([key.clone()]));
    let t = Instant::now();
    let a = mk_endpoint("10.0.0.1", 80, Health::Healthy, &[]);
    index.reset(&key, entries(&[("a", a.clone())]), t);
    rx.mark_unchanged();
    index.apply(&key, "a".into(), a.clone(), t);
    assert!(!rx.has_changed().expect("open"), "same endpoint, same time");
    index.set_feeds(&BTreeSet::new());
    index.apply(&key, "b".into(), a, t);
    assert!(rx.borrow().feeds.is_empty());
}

#[test]
fn bad_entries_are_counted_per_source() {
    let (mut index, rx) = Index::new();
    let key = etcd_key("web");
    index.set_feeds(&BTreeSet::from([key.clone()]));
    index.reject(&key, "/services/web/x: missing field `port`".into());
    index.reject(&key, "/services/web/y: invalid address".into());
    let st = summarize(&rx.borrow(), Instant::now());
    assert_eq!(st[0].source, "etcd");
    assert_eq!(st[0].bad_entries, 2);
    assert_eq!(st[0].last_sync_age_seconds, None, "never synced");
    assert!(!st[0].synced);
}

#[test]
fn whole_set_loads_are_counted_per_feed_and_source() {
    let (mut index, rx) = Index::new();
    let (web, api) = (etcd_key("web"), etcd_key("api"));
    index.set_feeds(&BTreeSet::from([web.clone(), api.clone()]));
    let t = Instant::now();
    index.reset(&web, BTreeMap::new(), t);
    index.reset(&web, BTreeMap::new(), t);
    index.reset(&api, BTreeMap::new(), t);
    // Watch events are not loads.
    index.apply(
        &api,
        "a".into(),
        mk_endpoint("10.0.0.1", 80, Health::Healthy, &[]),
        t,
    );
    let st = summarize(&rx.borrow(), Instant::now());
    let loads: Vec<(&str, u64)> = st[0]
        .feeds
        .iter()
        .map(|f| (f.service.as_str(), f.full_loads))
        .collect();
    assert_eq!(loads, [("api", 1), ("web", 2)]);
    assert_eq!(st[0].full_loads, 3);
}

#[test]
fn confirmations_of_a_synced_feed_publish_nothing_yet_status_sees_them() {
    let (mut index, mut rx) = Index::new();
    let key = etcd_key("web");
    index.set_feeds(&BTreeSet::from([key.clone()]));
    let t0 = Instant::now();
    // Before the first listing a confirmation proves nothing.
    index.confirm(&key, t0);
    assert_eq!(rx.borrow().feeds[&key].last_sync(), None);
    let a = mk_endpoint("10.0.0.1", 80, Health::Healthy, &[]);
    index.reset(&key, entries(&[("a", a)]), t0);
    rx.mark_unchanged();
    let t1 = t0 + Duration::from_secs(10);
    index.confirm(&key, t1);
    assert!(!rx.has_changed().expect("open"), "only the time moved");
    // The view published before the confirmation reads the new time.
    let st = summarize(&rx.borrow(), t1 + Duration::from_secs(1));
    assert_eq!(st[0].last_sync_age_seconds, Some(1.0));

    // A failure and the recovery change the state: both are published.
    index.fail(&key, "timeout".into(), t1 + Duration::from_secs(2));
    assert!(rx.has_changed().expect("open"));
    rx.mark_unchanged();
    let failing = summarize(&rx.borrow(), t1 + Duration::from_secs(4));
    assert!(!failing[0].up);
    assert_eq!(failing[0].last_sync_age_seconds, Some(4.0));
    index.confirm(&key, t1 + Duration::from_secs(5));
    assert!(rx.has_changed().expect("open"), "failing → synced");
    let back = summarize(&rx.borrow(), t1 + Duration::from_secs(5));
    assert!(back[0].up);
    assert_eq!(back[0].last_sync_age_seconds, Some(0.0));
}

#[test]
fn a_resolver_gives_what_a_fresh_resolve_gives_through_changes() {
    let (mut index, rx) = Index::new();
    let mut config = mk_config();
    index.set_feeds(&View::feeds_of(&config));
    let mut resolver = Resolver::default();
    let t = Instant::now();
    let ep = |last: u8, health| mk_endpoint(&format!("10.0.0.{last}"), 80, health, &[]);
    assert!(
        resolver.resolve(&rx.borrow(), &config).is_err(),
        "not synced"
    );
    index.reset(
        &etcd_key("web"),
        entries(&[("1", ep(1, Health::Healthy))]),
        t,
    );
    index.reset(
        &file_key("web"),
        entries(&[("1", ep(1, Health::Draining))]),
        t,
    );
    let mut check = |index: &mut Index, config: &Config, change: &dyn Fn(&mut Index)| {
        change(index);
        let view = rx.borrow().clone();
        let want = view.resolve(config).expect("ready");
        assert_eq!(resolver.resolve(&view, config).expect("ready"), want);
    };
    check(&mut index, &config, &|_| {});
    check(&mut index, &config, &|i| {
        i.apply(&etcd_key("web"), "2".into(), ep(2, Health::Healthy), t)
    });
    check(&mut index, &config, &|i| i.confirm(&file_key("web"), t));
    check(&mut index, &config, &|i| {
        i.apply(&file_key("web"), "1".into(), ep(1, Health::Healthy), t)
    });
    check(&mut index, &config, &|i| i.delete(&etcd_key("web"), "1", t));
    // A rules edit: the static endpoints change, the feeds do not.
    if let Some(web) = config.service_mut("web") {
        Arc::make_mut(&mut web.endpoints).push(ep(7, Health::Degraded));
    }
    check(&mut index, &config, &|_| {});
    check(&mut index, &config, &|i| {
        i.fail(&etcd_key("web"), "down".into(), t)
    });
}

#[test]
fn a_resolver_hands_out_an_unchanged_service_again() {
    let (mut index, rx) = Index::new();
    let config = mk_config();
    index.set_feeds(&View::feeds_of(&config));
    let t = Instant::now();
    let ep = |last: u8| mk_endpoint(&format!("10.0.0.{last}"), 80, Health::Healthy, &[]);
    index.reset(&etcd_key("web"), entries(&[("1", ep(1))]), t);
    index.reset(&file_key("web"), entries(&[("1", ep(1))]), t);
    let mut resolver = Resolver::default();
    let view = rx.borrow().clone();
    let first = resolver.resolve(&view, &config).expect("ready");
    // The same `Arc` again, so compiling skips the service by pointer; a
    // rules reload with an equal service keeps it too.
    let reloaded = Config {
        services: (config.services.iter())
            .map(|(n, s)| (n.clone(), Arc::new(sluice_core::model::Service::clone(s))))
            .collect(),
        ..config.clone()
    };
    let again = resolver.resolve(&view, &reloaded).expect("ready");
    assert!(Arc::ptr_eq(&first.services["web"], &again.services["web"]));
    // An endpoint moves: a new service with the new endpoints.
    index.apply(&etcd_key("web"), "2".into(), ep(2), t);
    let view = rx.borrow().clone();
    let moved = resolver.resolve(&view, &config).expect("ready");
    assert!(!Arc::ptr_eq(&first.services["web"], &moved.services["web"]));
    assert_eq!(moved, view.resolve(&config).expect("ready"));
}

/// The etcd feed's retry delay: a resumed watch that etcd created means
/// etcd answers again, so the next loss is a new outage and is retried
/// after the shortest delay, not the longest one a past outage grew to
/// (only a full listing reset it). A watch lost before etcd created it
/// is the same outage: its delay keeps growing.
#[test]
fn an_etcd_watch_that_etcd_created_starts_the_retry_delay_over() {
    use super::etcd::{Progress, WatchEnd};
    use super::etcd_hub::{Heard, StreamLost};

    let (index, _views) = Index::new();
    let feeder = Feeder::new(
        Arc::new(Mutex::new(index)),
        etcd_key("web"),
        tokio_util::sync::CancellationToken::new(),
    );
    let opts = SourceOptions::default();
    let mut backoff = opts.backoff();
    // A long outage grew the delay to its cap.
    while backoff.next_delay() < opts.retry_max {}

    let mut lost_again = backoff.clone();
    let mut never_created = Progress::new("/services/web/", 7);
    let end = never_created.hear(
        Some(Heard::Lost(StreamLost::Closed)),
        &feeder,
        &mut lost_again,
    );
    assert!(
        matches!(end, Some(WatchEnd::Lost { from: 7, .. })),
        "{end:?}"
    );
    assert_eq!(lost_again.next_delay(), opts.retry_max, "the same outage");

    let mut resumed = Progress::new("/services/web/", 7);
    let end = resumed.hear(Some(Heard::Created), &feeder, &mut backoff);
    assert!(end.is_none(), "{end:?}");
    let end = resumed.hear(Some(Heard::Lost(StreamLost::Closed)), &feeder, &mut backoff);
    assert!(
        matches!(end, Some(WatchEnd::Lost { from: 7, .. })),
        "{end:?}"
    );
    assert_eq!(backoff.next_delay(), opts.retry_min, "a new outage");
}

/// What a failing feed shows (its log line, `sluice status`): the error
/// and each of its causes once, and with a retry, the delay.
#[test]
fn a_feed_error_is_shown_with_its_causes_once() {
    let (index, rx) = Index::new();
    let key = file_key("web");
    let index = Arc::new(Mutex::new(index));
    index.lock().set_feeds(&BTreeSet::from([key.clone()]));
    let stop = tokio_util::sync::CancellationToken::new();
    let feeder = Feeder::new(index, key.clone(), stop);
    let error = |rx: &tokio::sync::watch::Receiver<Arc<View>>| {
        summarize(&rx.borrow(), Instant::now())[0].feeds[0]
            .last_error
            .clone()
    };

    let source = std::io::Error::from(std::io::ErrorKind::NotFound);
    let name = "eps.yaml".to_string();
    feeder.fail(&file::FileError::Read { name, source });
    assert_eq!(
        error(&rx).as_deref(),
        Some("reading eps.yaml: entity not found")
    );

    let source = consul::parse(b"<html>").expect_err("not JSON");
    let body = consul::ConsulError::Body {
        service: "web".into(),
        source,
    };
    let mut backoff = SourceOptions::default().backoff();
    feeder.retry_after(&body, &mut backoff);
    assert_eq!(
        error(&rx).as_deref(),
        Some(
            "consul health of web: consul answer is not a JSON array of service entries: \
             expected value at line 1 column 1 (retrying in 100ms)"
        )
    );

    // A library error that prints its cause and also returns it.
    #[derive(Debug, thiserror::Error)]
    #[error("watch failed: {0}")]
    struct PrintsItsCause(#[source] std::io::Error);
    let twice = PrintsItsCause(std::io::Error::other("connection reset"));
    assert_eq!(render(&twice), "watch failed: connection reset");
}
