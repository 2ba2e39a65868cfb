//! `sluice drain` with a real Envoy: draining a locality moves new requests
//! off it while requests already in flight there complete; the drain
//! survives a sluice restart (Envoy reconnects to the very same EDS
//! version) and `drain remove` brings the locality back.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::*;

/// Runs `sluice drain ARGS --admin ADMIN`; returns (success, stdout, stderr).
fn drain_cli(admin: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::sluice_bin())
        .arg("drain")
        .args(args)
        .args(["--admin", &admin.to_string()])
        .output()
        .expect("run sluice drain");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rules(a: &Backend, b: &Backend) -> String {
    let listener = common::rules::http_listener(0, "all");
    format!(
        r#"services:
  - name: geo
    panic_threshold: 0
    endpoints:
      - {{address: 127.0.0.1, port: {a}, locality: {{region: eu, zone: eu-1a}}}}
      - {{address: 127.0.0.1, port: {b}, locality: {{region: eu, zone: eu-1b}}}}
{listener}          - {{match: {{prefix: /}}, to: {{service: geo}}}}
"#,
        a = a.addr.port(),
        b = b.addr.port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_locality_keeps_in_flight_requests_and_survives_restart() {
    let a = backend("a").await;
    let b = backend("b").await;
    let rules = RulesFile::new(&rules(&a, &b));
    let mut sluice = Sluice::start(&rules.path, "127.0.0.1:0");
    let xds = sluice.xds;
    let envoy = Envoy::start("envoy-drain", "default", xds, &[]).await;
    let url = format!("http://127.0.0.1:{}/", envoy.listener_port("http").await);
    eventually("both localities serve", || async {
        distribution(&url, 20).await.len() == 2
    })
    .await;

    // Six requests that the backends hold for 4s: round robin puts about
    // half of them on `a`, in eu/eu-1a.
    let base = a.hits() + b.hits();
    let client = http();
    let slow: Vec<_> = (0..6)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let r = client
                    .get(url)
                    .header("x-delay-ms", "4000")
                    .timeout(std::time::Duration::from_secs(20))
                    .send()
                    .await?;
                let status = r.status();
                Ok::<_, reqwest::Error>((status, r.text().await?))
            })
        })
        .collect();
    let (a_ref, b_ref) = (&a, &b);
    eventually("all six in flight", || async {
        a_ref.hits() + b_ref.hits() == base + 6
    })
    .await;

    let (ok, out, err) = drain_cli(
        sluice.admin,
        &["add", "--service", "geo", "--locality", "eu/eu-1a"],
    );
    assert!(ok, "drain add failed: {err}");
    assert_eq!(out, "drained locality eu/eu-1a of service geo\n");
    eventually("new requests avoid eu/eu-1a", || async {
        let d = distribution(&url, 20).await;
        d.len() == 1 && d.contains_key("b")
    })
    .await;
    // The drain reached Envoy while the slow requests were still held: the
    // backends hold them 4s, a drain takes effect in well under a second.
    assert!(
        slow.iter().any(|h| !h.is_finished()),
        "the drain must land while requests are in flight"
    );
    let mut on_a = 0;
    for h in slow {
        let (status, body) = h.await.expect("join").expect("in-flight request");
        assert_eq!(status, 200, "in-flight request completed");
        on_a += usize::from(body == "a");
    }
    assert!(
        on_a >= 1,
        "some in-flight requests were on the drained zone"
    );

    let (ok, out, _) = drain_cli(sluice.admin, &["list"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with("geo") && l.contains("locality eu/eu-1a") && l.ends_with(" 1")),
        "{out}"
    );

    // Restart sluice on the same address: it loads the drain from its state
    // file, so Envoy reconnects to the same (draining) EDS version.
    let acked_eds = |s: serde_json::Value| s["proxies"][0]["types"]["eds"]["acked"].clone();
    let before = acked_eds(sluice.status().await);
    sluice.kill();
    let sluice = Sluice::start(&rules.path, &xds.to_string());
    let sluice_ref = &sluice;
    eventually("envoy reconnects and ACKs EDS", || async {
        !acked_eds(sluice_ref.status().await).is_null()
    })
    .await;
    assert_eq!(acked_eds(sluice.status().await), before, "same EDS");
    let d = distribution(&url, 20).await;
    assert_eq!(d.get("b"), Some(&20), "still drained after restart: {d:?}");

    let (ok, out, err) = drain_cli(
        sluice.admin,
        &["remove", "--service", "geo", "--locality", "eu/eu-1a"],
    );
    assert!(ok, "drain remove failed: {err}");
    assert_eq!(out, "undrained locality eu/eu-1a of service geo\n");
    eventually("eu/eu-1a serves again", || async {
        distribution(&url, 20).await.contains_key("a")
    })
    .await;
    drop(envoy);
}
