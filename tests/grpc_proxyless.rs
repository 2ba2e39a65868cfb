//! Proxyless gRPC end to end: real Python `grpcio` servers and a real
//! gRPC xDS client (C-core), which no one here wrote, against `sluice
//! serve` with `examples/grpc.yaml`.
//!
//! The client gets its bootstrap from `sluice bootstrap --grpc` and dials
//! `xds:///greeter`; sluice serves it the target's listener, routes,
//! clusters and endpoints. Needs `python3` with `grpcio` (scripts/test.sh
//! installs it when missing).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::creds::{mk_ca, mk_client, mk_server};
use common::Sluice;
use serde_json::Value;

/// The helper script: servers and the client.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_python/greeter.py")
}

/// Fails loudly when grpcio is missing: these tests never pass by skipping.
fn require_grpcio() {
    let out = Command::new("python3")
        .args(["-c", "import grpc; print(grpc.__version__)"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 cannot import grpc: run scripts/test.sh or `python3 -m pip install grpcio`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// gRPC servers answering with their names, ended when dropped.
struct Servers {
    child: Child,
    /// Held open: the servers run until it closes.
    stdin: ChildStdin,
    stdout: std::io::Lines<BufReader<ChildStdout>>,
    ports: Vec<(String, u16)>,
}

impl Servers {
    fn start(names: &[&str]) -> Servers {
        let mut child = Command::new("python3")
            .arg(script())
            .arg("serve")
            .args(names)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn gRPC servers");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ports = names
            .iter()
            .map(|_| {
                let line = lines
                    .next()
                    .expect("servers exited before listening")
                    .expect("read");
                let (name, port) = line.split_once(' ').expect("NAME PORT");
                (name.to_string(), port.parse().expect("port"))
            })
            .collect();
        Servers {
            child,
            stdin,
            stdout: lines,
            ports,
        }
    }

    /// Stops server `name` gracefully (GOAWAY; in-flight RPCs finish).
    fn stop(&mut self, name: &str) {
        writeln!(self.stdin, "stop {name}").expect("write to the servers");
        self.stdin.flush().expect("flush");
        let line = self.stdout.next().expect("servers exited").expect("read");
        assert_eq!(line, format!("stopped {name}"));
    }

    fn port(&self, name: &str) -> u16 {
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .expect("started")
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `examples/grpc.yaml` with v1 and v2 on the servers' ports.
fn rules(dir: &Path, servers: &Servers) -> PathBuf {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grpc.yaml"))
            .expect("example");
    let text = example
        .replace("port: 50051", &format!("port: {}", servers.port("v1")))
        .replace("port: 50052", &format!("port: {}", servers.port("v2")));
    assert_ne!(text, example, "the example names ports 50051 and 50052");
    let path = dir.join("rules.yaml");
    std::fs::write(&path, text).expect("write rules");
    path
}

/// `sluice bootstrap --grpc` for node `id`, written in `dir`, with
/// `extra` flags.
fn grpc_bootstrap(dir: &Path, sluice: &Sluice, id: &str) -> PathBuf {
    grpc_bootstrap_with(dir, sluice, id, &[])
}

fn grpc_bootstrap_with(dir: &Path, sluice: &Sluice, id: &str, extra: &[&Path]) -> PathBuf {
    let path = dir.join(format!("{id}.json"));
    let flags = ["--xds-ca", "--client-cert", "--client-key"];
    let status = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bootstrap", "--grpc", "--node-id", id, "--xds"])
        .arg(sluice.xds.to_string())
        .arg("--out")
        .arg(&path)
        .args(
            flags
                .iter()
                .zip(extra)
                .flat_map(|(f, p)| [f.as_ref(), p.as_os_str()]),
        )
        .status()
        .expect("run sluice bootstrap");
    assert!(status.success(), "sluice bootstrap --grpc failed");
    path
}

/// A gRPC client with one channel to `xds:///TARGET` (so one ADS stream
/// to sluice), driven line by line; ended when dropped.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    /// Python grpcio (gRPC C-core's xDS client).
    fn start(bootstrap: &Path, target: &str) -> Client {
        let mut cmd = Command::new("python3");
        cmd.arg(script()).args(["client", target]);
        Client::spawn(cmd, bootstrap)
    }

    /// Node's grpc-js with @grpc/grpc-js-xds (tests/grpc_node, installed
    /// by scripts/test.sh), speaking the same commands.
    fn start_node(bootstrap: &Path, target: &str) -> Client {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_node");
        assert!(
            dir.join("node_modules/@grpc/grpc-js-xds").is_dir(),
            "run `npm ci` in {} (scripts/test.sh does)",
            dir.display()
        );
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("client.js")).arg(target);
        Client::spawn(cmd, bootstrap)
    }

    fn spawn(mut cmd: Command, bootstrap: &Path) -> Client {
        let mut child = cmd
            .env("GRPC_XDS_BOOTSTRAP", bootstrap)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the gRPC client");
        Client {
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            child,
        }
    }

    /// Sends one command (see greeter.py) and reads its JSON answer.
    /// Blocking: the client answers once its RPCs are done.
    fn send(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").expect("write to the gRPC client");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the gRPC client");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the gRPC client failed ({e}); it printed {line:?}"))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answers(result: &Value, name: &str) -> u64 {
    result["answers"][name].as_u64().unwrap_or(0)
}

/// The example's 80/20 split over 2,000 RPCs: v2's count is
/// Binomial(2000, 0.2), and the bounds leave out at most 1e-6 of its
/// probability, so a correct split fails this less than once in a million
/// runs. Then tagged RPCs take the header-matched route, every one to the
/// canary. `who` names the client in the log.
fn sees_the_split_and_the_header_route(client: &mut Client, who: &str) {
    const N: u64 = 2000;
    let split = client.send(&format!("call {N}"));
    assert_eq!(split["errors"], serde_json::json!({}), "{split}");
    let (v1, v2) = (answers(&split, "v1"), answers(&split, "v2"));
    eprintln!("{who}: 80/20 split over {N} RPCs: v1 {v1}, v2 {v2}");
    assert_eq!(v1 + v2, N, "{split}");
    let (lo, hi) = binomial_bounds(N, 0.2, 1e-6);
    assert!(
        (lo..=hi).contains(&v2),
        "v2 got {v2} of {N}, outside [{lo}, {hi}]: {split}"
    );
    let tagged = client.send("call 200 x-canary=1");
    assert_eq!(tagged["errors"], serde_json::json!({}), "{tagged}");
    assert_eq!(answers(&tagged, "v2"), 200, "{tagged}");
}

/// Edits the rules' split to 0/100 and waits until every RPC of the
/// connected client goes to v2.
fn follows_an_edit_of_the_split(client: &mut Client, rules: &Path) {
    let text = std::fs::read_to_string(rules).expect("read rules");
    let edited = text
        .replace("weight: 80", "weight: 0")
        .replace("weight: 20", "weight: 100");
    assert_ne!(edited, text);
    std::fs::write(rules, edited).expect("edit rules");
    let moved = client.send("until v2 100");
    assert_eq!(moved["reached"], true, "{moved}");
}

/// The smallest and largest count of successes in `n` trials of
/// probability `p` that the test accepts: each tail outside has exact
/// binomial probability at most `alpha / 2`.
fn binomial_bounds(n: u64, p: f64, alpha: f64) -> (u64, u64) {
    // pmf(k) in log space, by the ratio pmf(k+1)/pmf(k).
    let mut log_pmf = Vec::with_capacity(n as usize + 1);
    let mut lp = n as f64 * (1.0 - p).ln();
    for k in 0..=n {
        log_pmf.push(lp);
        lp += ((n - k) as f64 / (k + 1) as f64).ln() + (p / (1.0 - p)).ln();
    }
    let pmf: Vec<f64> = log_pmf.iter().map(|l| l.exp()).collect();
    let (mut lo, mut tail) = (0u64, 0.0);
    while tail + pmf[lo as usize] <= alpha / 2.0 {
        tail += pmf[lo as usize];
        lo += 1;
    }
    let (mut hi, mut tail) = (n, 0.0);
    while tail + pmf[hi as usize] <= alpha / 2.0 {
        tail += pmf[hi as usize];
        hi -= 1;
    }
    (lo, hi)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_of_xds_greeter_sees_the_split_the_header_route_and_an_edit() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");

    // 80/20 over 2,000 RPCs: v2's count is Binomial(2000, 0.2). The
    // bounds leave out at most 1e-6 of its probability, so a correct
    // split fails this test less than once in a million runs.
    let mut client = Client::start(&bootstrap, "greeter");
    sees_the_split_and_the_header_route(&mut client, "grpcio");

    // sluice knows it for a gRPC client, which ACKed every type it asked
    // for and NACKed none.
    let status = sluice.status_text().await;
    assert!(
        status.contains("app-1  group=default mode=sotw client=grpc"),
        "{status}"
    );
    let block = status.split("app-1").nth(1).unwrap_or_default();
    for ty in ["lds", "rds", "cds", "eds"] {
        let line = block
            .lines()
            .find(|l| l.split_whitespace().next() == Some(ty))
            .unwrap_or_else(|| panic!("no {ty} line: {status}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_ne!(fields[2], "-", "{ty} not ACKed: {status}");
        assert_eq!(fields[3..], ["-"], "{ty} NACKed: {status}");
    }

    // An edit of the split reaches the connected client: with 0/100 every
    // RPC goes to v2 once the new routes are pushed.
    follows_an_edit_of_the_split(&mut client, &rules);
    let after = client.send("call 500");
    assert_eq!(answers(&after, "v2"), 500, "{after}");
}

/// A canary rollout moves gRPC clients as it moves Envoys: a step waits
/// for the client's ACK of its routes (the client is counted among the
/// proxies the step targets), the client's RPCs follow the step's split,
/// and abort sends every RPC back to the stable subset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_step_moves_a_grpc_clients_split_and_abort_returns_it_to_stable() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let files = common::rollout::ControllerFiles::new();
    let sluice = files.sluice(&rules, "127.0.0.1:0", &[]);
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "greeter");
    let before = client.send("call 20");
    assert_eq!(before["errors"], serde_json::json!({}), "{before}");

    // No analysis runs within the test (a one-hour window): the step
    // stays at 50 % until aborted.
    let rollout = |args: &[&str]| {
        let run = common::rollout::cli(&sluice, Some(&files.token_file), args);
        assert_eq!(run.code, 0, "{run:?}");
        run
    };
    rollout(&[
        "start",
        "greeter",
        "--to",
        "canary",
        "--steps",
        "50,100",
        "--interval",
        "1h",
        "--max-error-rate",
        "1%",
    ]);
    let status = common::rollout::wait_status(
        &sluice,
        &files.token_file,
        "greeter",
        "the gRPC client ACKed the first step",
        |v| v["phase"] == "analysing" && v["acked"] == 1 && v["targeted"] == 1,
    )
    .await;
    assert_eq!(status["canary_weight"], 50, "{status}");

    // 50/50 over 1,000 RPCs, within the bounds of an exact binomial test.
    const N: u64 = 1000;
    let split = client.send(&format!("call {N}"));
    assert_eq!(split["errors"], serde_json::json!({}), "{split}");
    let (v1, v2) = (answers(&split, "v1"), answers(&split, "v2"));
    eprintln!("50/50 step over {N} RPCs: v1 {v1}, v2 {v2}");
    assert_eq!(v1 + v2, N, "{split}");
    let (lo, hi) = binomial_bounds(N, 0.5, 1e-6);
    assert!(
        (lo..=hi).contains(&v2),
        "v2 got {v2} of {N}, outside [{lo}, {hi}]: {split}"
    );

    rollout(&["abort", "greeter"]);
    let back = client.send("until v1 100");
    assert_eq!(back["reached"], true, "{back}");
    let after = client.send("call 300");
    assert_eq!(answers(&after, "v1"), 300, "{after}");
}

/// An endpoint removed from discovery while a client sends RPCs: every
/// RPC succeeds, the client stops using it, and stopping that server
/// afterwards fails nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_endpoint_under_load_fails_no_rpc() {
    require_grpcio();
    let mut servers = Servers::start(&["v1", "v1b", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let text = std::fs::read_to_string(&rules).expect("read rules");
    let second = format!(
        "      - {{address: 127.0.0.1, port: {}, labels: {{version: v1}}}}\n",
        servers.port("v1b")
    );
    let anchor = "    subsets:\n";
    assert!(text.contains(anchor));
    let with_both = text.replacen(anchor, &format!("{second}{anchor}"), 1);
    std::fs::write(&rules, &with_both).expect("write rules");
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "greeter");
    let both = client.send("until v1b 1");
    assert_eq!(both["reached"], true, "v1b serves: {both}");

    // The edit lands while the client is in the middle of 2,000 RPCs.
    let (path, without) = (rules.clone(), text.clone());
    let edit = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::write(&path, without).expect("remove v1b");
    });
    let during = client.send("call 2000");
    edit.join().expect("edit");
    assert_eq!(during["errors"], serde_json::json!({}), "{during}");
    assert_eq!(
        answers(&during, "v1") + answers(&during, "v1b") + answers(&during, "v2"),
        2000,
        "{during}"
    );
    assert!(
        answers(&during, "v1b") > 0,
        "the batch began before the edit: {during}"
    );
    // Once the client has the new endpoints no RPC reaches v1b...
    let mut settled = false;
    for _ in 0..60 {
        let batch = client.send("call 100");
        assert_eq!(batch["errors"], serde_json::json!({}), "{batch}");
        if answers(&batch, "v1b") == 0 {
            settled = true;
            break;
        }
    }
    assert!(settled, "v1b still gets RPCs after its removal");
    // ...and stopping it fails nothing.
    servers.stop("v1b");
    let after = client.send("call 300");
    assert_eq!(after["errors"], serde_json::json!({}), "{after}");
    assert_eq!(
        answers(&after, "v1") + answers(&after, "v2"),
        300,
        "{after}"
    );
}

/// An edit gRPC would reject (a prefix gRPC skips, a maglev service)
/// is never sent: sluice refuses it naming file:line:column, the client
/// keeps its routes, its RPCs succeed and it NACKs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_a_grpc_client_would_reject_is_refused_and_never_sent() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "greeter");
    let first = client.send("call 50");
    assert_eq!(first["errors"], serde_json::json!({}), "{first}");
    let served = sluice.status().await["rules"]["served_hash"].clone();

    let text = std::fs::read_to_string(&rules).expect("read rules");
    let edits = [
        // gRPC skips a prefix with more than two `/`.
        text.replace(
            "      - name: default\n",
            "      - name: deep\n        match: {prefix: /a/b/c/}\n        to: {service: greeter, subset: canary}\n      - name: default\n",
        ),
        // gRPC clients take round robin and ring hash, not maglev.
        text.replace(
            "    protocol: grpc",
            "    lb_policy: maglev\n    protocol: grpc",
        ),
    ];
    for (i, bad) in edits.iter().enumerate() {
        assert_ne!(bad, &text, "edit {i} applies");
        let rejected = sluice.status().await["rules"]["rejected_reloads"]
            .as_u64()
            .unwrap_or(0);
        std::fs::write(&rules, bad).expect("write the edit");
        common::eventually("the edit is refused", || async {
            sluice.status().await["rules"]["rejected_reloads"]
                .as_u64()
                .unwrap_or(0)
                > rejected
        })
        .await;
        let status = sluice.status().await;
        let error = status["rules"]["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("{}:", rules.display())),
            "edit {i}: the error names the file: {error}"
        );
        assert_eq!(status["rules"]["served_hash"], served, "edit {i}");
        let batch = client.send("call 100");
        assert_eq!(batch["errors"], serde_json::json!({}), "edit {i}: {batch}");
        let grpc = status["proxies"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["node"]["id"] == "app-1"))
            .cloned()
            .expect("the gRPC client is listed");
        for (ty, st) in grpc["types"].as_object().into_iter().flatten() {
            assert!(st["nack"].is_null(), "edit {i}: {ty} NACKed: {grpc}");
            assert_eq!(st["acked"], st["sent"], "edit {i}: {ty}: {grpc}");
        }
    }
}

/// A route's `retry` makes the gRPC client retry (gRFC A44): against a
/// server failing every other RPC with UNAVAILABLE, every RPC succeeds;
/// with the retry edited away, the failures reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_route_retry_hides_a_flaky_backends_unavailable() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2", "flaky"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let flaky = format!(
        "  - name: flaky\n    endpoints: [{{address: 127.0.0.1, port: {}}}]\n",
        servers.port("flaky")
    );
    let target = "  - target: flaky\n    routes:\n      - to: {service: flaky}\n        retry: {on: [unavailable], attempts: 2, backoff: {base: 10ms, max: 50ms}}\n";
    let text = std::fs::read_to_string(&rules).expect("read rules");
    let with_retry = text.replacen("\ngrpc:\n", &format!("{flaky}\ngrpc:\n{target}"), 1);
    assert_ne!(with_retry, text);
    std::fs::write(&rules, &with_retry).expect("write rules");
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "flaky");
    let retried = client.send("call 200");
    assert_eq!(retried["errors"], serde_json::json!({}), "{retried}");
    assert_eq!(answers(&retried, "flaky"), 200, "{retried}");

    let without = with_retry.replace(
        "        retry: {on: [unavailable], attempts: 2, backoff: {base: 10ms, max: 50ms}}\n",
        "",
    );
    assert_ne!(without, with_retry);
    std::fs::write(&rules, &without).expect("edit rules");
    let mut failed = None;
    for _ in 0..60 {
        let batch = client.send("call 50");
        if batch["errors"]["StatusCode.UNAVAILABLE"]
            .as_u64()
            .unwrap_or(0)
            > 0
        {
            failed = Some(batch);
            break;
        }
    }
    let failed = failed.expect("without the retry the client sees UNAVAILABLE");
    assert!(failed["errors"]["last"]
        .as_str()
        .is_some_and(|e| e.contains("every other RPC fails")));
}

/// Ring hash (gRFC A42): a ring_hash service whose gRPC route hashes the
/// `x-user` metadata sends every RPC of one user to one backend, and
/// different users to different backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_hash_route_keeps_each_users_rpcs_on_one_backend() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2", "s1", "s2", "s3"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let endpoints: Vec<String> = ["s1", "s2", "s3"]
        .iter()
        .map(|s| format!("{{address: 127.0.0.1, port: {}}}", servers.port(s)))
        .collect();
    let sticky = format!(
        "  - name: sticky\n    lb_policy: ring_hash\n    endpoints: [{}]\n",
        endpoints.join(", ")
    );
    let target = "  - target: sticky\n    routes:\n      - to: {service: sticky}\n        hash: [{header: x-user}]\n";
    let text = std::fs::read_to_string(&rules).expect("read rules");
    let edited = text.replacen("\ngrpc:\n", &format!("{sticky}\ngrpc:\n{target}"), 1);
    assert_ne!(edited, text);
    std::fs::write(&rules, &edited).expect("write rules");
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "sticky");
    let mut used = std::collections::BTreeSet::new();
    for user in 0..20 {
        let got = client.send(&format!("call 10 x-user=u{user}"));
        assert_eq!(got["errors"], serde_json::json!({}), "{got}");
        let backends: Vec<&String> = got["answers"]
            .as_object()
            .map(|a| a.keys().collect())
            .unwrap_or_default();
        assert_eq!(backends.len(), 1, "user u{user} spread over {got}");
        used.insert(backends[0].clone());
    }
    assert!(used.len() >= 2, "20 users all hashed to {used:?}");
}

/// Outlier detection (gRFC A50): of three backends one fails every RPC;
/// the client's failure-percentage detector ejects it, after which no
/// RPC fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_ejects_a_failing_backend_by_outlier_detection() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2", "ok1", "ok2", "bad"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let endpoints: Vec<String> = ["ok1", "ok2", "bad"]
        .iter()
        .map(|s| format!("{{address: 127.0.0.1, port: {}}}", servers.port(s)))
        .collect();
    let pool = format!(
        "  - name: pool\n    endpoints: [{}]\n    outlier_detection: {{failure_percentage: {{threshold: 50, minimum_hosts: 3, request_volume: 5}}, interval: 1s, base_ejection_time: 60s, max_ejection_percent: 50}}\n",
        endpoints.join(", ")
    );
    let target = "  - target: pool\n    routes:\n      - to: {service: pool}\n";
    let text = std::fs::read_to_string(&rules).expect("read rules");
    let edited = text.replacen("\ngrpc:\n", &format!("{pool}\ngrpc:\n{target}"), 1);
    assert_ne!(edited, text);
    std::fs::write(&rules, &edited).expect("write rules");
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "pool");
    // Round robin reaches the failing backend before the detector runs.
    let first = client.send("call 30");
    assert!(
        first["errors"]["StatusCode.UNAVAILABLE"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "the bad backend failed nothing: {first}"
    );
    // Within a few detection intervals it is ejected; then nothing fails.
    let mut clean = None;
    for _ in 0..100 {
        let batch = client.send("call 30");
        if batch["errors"] == serde_json::json!({}) {
            clean = Some(batch);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(clean.is_some(), "the failing backend was never ejected");
    let after = client.send("call 300");
    assert_eq!(after["errors"], serde_json::json!({}), "{after}");
    assert_eq!(
        answers(&after, "ok1") + answers(&after, "ok2"),
        300,
        "{after}"
    );
}

/// Fault injection (gRFC A33): RPCs carrying `x-fault: 1` take a route
/// that aborts every one with HTTP 503, which the client itself turns
/// into UNAVAILABLE without reaching a backend; other RPCs succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_route_fault_aborts_the_rpcs_it_matches() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let target = "  - target: faulty\n    routes:\n      - match: {headers: [{name: x-fault, exact: \"1\"}]}\n        to: {service: greeter, subset: stable}\n        fault: {abort: {status: 503, percent: 100}}\n      - to: {service: greeter, subset: stable}\n";
    let text = std::fs::read_to_string(&rules).expect("read rules");
    let edited = text.replacen("\ngrpc:\n", &format!("\ngrpc:\n{target}"), 1);
    assert_ne!(edited, text);
    std::fs::write(&rules, &edited).expect("write rules");
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "faulty");
    let plain = client.send("call 50");
    assert_eq!(plain["errors"], serde_json::json!({}), "{plain}");
    assert_eq!(answers(&plain, "v1"), 50, "{plain}");
    let faulted = client.send("call 50 x-fault=1");
    assert_eq!(
        faulted["errors"]["StatusCode.UNAVAILABLE"], 50,
        "every tagged RPC aborted: {faulted}"
    );
    assert_eq!(faulted["answers"], serde_json::json!({}), "{faulted}");
}

/// The same with Node's grpc-js xDS client (@grpc/grpc-js-xds): the
/// 80/20 split within the binomial bounds, the header route, and an edit
/// of the split followed by the connected client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_js_client_of_xds_greeter_sees_the_split_the_header_route_and_an_edit() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "node-1");
    let mut client = Client::start_node(&bootstrap, "greeter");
    sees_the_split_and_the_header_route(&mut client, "grpc-js");
    let status = sluice.status_text().await;
    assert!(
        status.contains("node-1  group=default mode=sotw client=grpc"),
        "{status}"
    );
    // grpc-js ACKed every type it asked for and NACKed none.
    let node = sluice.status().await["proxies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["node"]["id"] == "node-1"))
        .cloned()
        .expect("the grpc-js client is listed");
    for ty in ["lds", "rds", "cds", "eds"] {
        let st = &node["types"][ty];
        assert!(st["nack"].is_null(), "{ty} NACKed: {node}");
        assert!(
            !st["acked"].is_null() && st["acked"] == st["sent"],
            "{ty}: {node}"
        );
    }
    follows_an_edit_of_the_split(&mut client, &rules);
}

/// `sluice drain add` takes an endpoint out of gRPC clients' rotation as
/// out of Envoys': the drained endpoint reaches the client as draining,
/// the client stops sending it RPCs without failing any, and `drain
/// remove` brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_takes_an_endpoint_out_of_a_grpc_clients_rotation_and_back() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v1b", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    let text = std::fs::read_to_string(&rules).expect("read rules");
    let second = format!(
        "      - {{address: 127.0.0.1, port: {}, labels: {{version: v1}}}}\n",
        servers.port("v1b")
    );
    let anchor = "    subsets:\n";
    std::fs::write(
        &rules,
        text.replacen(anchor, &format!("{second}{anchor}"), 1),
    )
    .expect("write rules");
    let sluice = Sluice::start(&rules, "127.0.0.1:0");
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap(dir.path(), &sluice, "app-1");
    let mut client = Client::start(&bootstrap, "greeter");
    let both = client.send("until v1b 1");
    assert_eq!(both["reached"], true, "v1b serves: {both}");

    let endpoint = format!("127.0.0.1:{}", servers.port("v1b"));
    let drain = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("drain")
            .args(args)
            .args(["--admin", &sluice.admin.to_string()])
            .output()
            .expect("run sluice drain");
        assert!(out.status.success(), "{out:?}");
    };
    drain(&["add", "--service", "greeter", "--endpoint", &endpoint]);
    let mut settled = false;
    for _ in 0..60 {
        let batch = client.send("call 100");
        assert_eq!(batch["errors"], serde_json::json!({}), "{batch}");
        if answers(&batch, "v1b") == 0 {
            settled = true;
            break;
        }
    }
    assert!(settled, "v1b still gets RPCs while drained");
    let drained = client.send("call 300");
    assert_eq!(drained["errors"], serde_json::json!({}), "{drained}");
    assert_eq!(answers(&drained, "v1b"), 0, "{drained}");

    drain(&["remove", "--service", "greeter", "--endpoint", &endpoint]);
    let back = client.send("until v1b 1");
    assert_eq!(back["reached"], true, "v1b back in rotation: {back}");
}

#[test]
fn binomial_bounds_leave_out_the_tails() {
    // Binomial(2000, 0.2): mean 400, sd 17.9; 1e-6 two-sided is ±4.9 sd.
    let (lo, hi) = binomial_bounds(2000, 0.2, 1e-6);
    assert!((305..=320).contains(&lo), "{lo}");
    assert!((480..=495).contains(&hi), "{hi}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_reaches_sluice_over_mutual_tls_with_its_bootstrap() {
    require_grpcio();
    let servers = Servers::start(&["v1", "v2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules(dir.path(), &servers);
    // Only clients with a certificate for an app may be served.
    let mut text = std::fs::read_to_string(&rules).expect("read rules");
    text.push_str(
        "xds_access:\n  - identity: \"spiffe://acme.test/apps/*\"\n    groups: [default]\n",
    );
    std::fs::write(&rules, text).expect("write rules");
    let ca = mk_ca("sluice test CA");
    let server = mk_server(&ca);
    let client = mk_client(&ca, "spiffe://acme.test/apps/app-2");
    let file = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("write pem");
        path
    };
    let ca_file = file("ca.pem", &ca.pem);
    let (server_cert, server_key) = (file("s.pem", &server.cert), file("s.key", &server.key));
    let (client_cert, client_key) = (file("c.pem", &client.cert), file("c.key", &client.key));
    let arg = |p: &PathBuf| p.to_str().expect("utf8").to_owned();
    let sluice = Sluice::start_with(
        &rules,
        "127.0.0.1:0",
        &[
            "--xds-tls-cert",
            &arg(&server_cert),
            "--xds-tls-key",
            &arg(&server_key),
            "--xds-client-ca",
            &arg(&ca_file),
        ],
    );
    sluice.wait_ready("sluice ready").await;
    let bootstrap = grpc_bootstrap_with(
        dir.path(),
        &sluice,
        "app-2",
        &[&ca_file, &client_cert, &client_key],
    );
    let mut client = Client::start(&bootstrap, "greeter");
    let tagged = client.send("call 20 x-canary=1");
    assert_eq!(tagged["errors"], serde_json::json!({}), "{tagged}");
    assert_eq!(answers(&tagged, "v2"), 20, "{tagged}");
}

fn sluice_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

#[test]
fn bootstrap_grpc_refuses_what_a_grpc_client_cannot_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "secret").expect("write token");
    let base = ["bootstrap", "--grpc", "--node-id", "app-1"];
    let token_arg = token.to_str().expect("utf8");
    for (extra, code, says) in [
        (&["--token-file", token_arg][..], 1, "--token-file"),
        (&["--xds", "no-port"][..], 1, "HOST:PORT"),
        (&["--admin-port", "9000"][..], 2, "--admin-port"),
        (&["--ads", "delta"][..], 2, "--ads"),
    ] {
        let out = sluice_cli(&[&base[..], extra].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
    let out = sluice_cli(&base);
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(json["xds_servers"][0]["server_uri"], "127.0.0.1:18000");
    assert_eq!(json["node"]["metadata"]["sluice_client"], "grpc");
}

#[test]
fn validate_counts_grpc_targets() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grpc.yaml");
    let out = sluice_cli(&["validate", example.to_str().expect("utf8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok (1 services, 0 listeners, 1 gRPC targets, 1 node groups)"),
        "{stdout}"
    );
}
