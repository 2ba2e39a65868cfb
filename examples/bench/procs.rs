//! The processes a scenario runs — etcd, `sluice serve`, the runner itself
//! in `fleet` / `floor` mode — and what the kernel says about them
//! (`/proc/PID/stat`, `status`, `io`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::sync::mpsc;

/// Where the binaries are.
#[derive(Clone, Debug)]
pub struct Exes {
    /// `sluice` (release build for real numbers).
    pub sluice: PathBuf,
    /// This program; re-run as `fleet` / `floor`.
    pub this: PathBuf,
}

/// Raise RLIMIT_NOFILE's soft limit to the hard one (and the hard one to
/// `want` where allowed): children inherit it, and 10k streams need >10k
/// descriptors on each side. Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.unwrap_or(want).max(want);
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        // Not allowed to raise the hard limit: take what it allows.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: cur.maximum,
                maximum: cur.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// CPU seconds (user + system) of a process so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line; 12 and 13 here.
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix(field).and_then(|v| v.strip_prefix(':')) {
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse()?;
            return Ok(kb * 1024);
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}

/// Bytes the process handed to write-like system calls (`wchar` of
/// `/proc/PID/io`): its sockets, mostly.
pub fn written_bytes(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("wchar:") {
            return Ok(v.trim().parse()?);
        }
    }
    bail!("no wchar in /proc/{pid}/io")
}

/// Counters of one process at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_s: f64,
    pub written: u64,
}

pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    Ok(Usage {
        cpu_s: cpu_seconds(pid)?,
        written: written_bytes(pid)?,
    })
}

/// A real etcd on loopback with a temp data dir (as tests/common does).
pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> anyhow::Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let url = format!("http://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let bin = std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from);
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(&bin)
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawn {} (Debian: etcd-server; or set ETCD_BIN)",
                    bin.display()
                )
            })?;
        let etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = etcd.client().await {
                if c.get("/", None).await.is_ok() {
                    return Ok(etcd);
                }
            }
            if Instant::now() > deadline {
                bail!("etcd did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        Ok(etcd_client::Client::connect([self.url.as_str()], Some(opts)).await?)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice serve` as a child process.
pub struct Sluice {
    child: Child,
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    pub admin_grpc: Option<SocketAddr>,
}

impl Sluice {
    /// Starts sluice and waits until `/readyz` says the first snapshot is
    /// published. `xds_port` 0 lets the kernel pick (a restart passes the
    /// previous one).
    pub async fn start(
        exes: &Exes,
        rules: &Path,
        xds_port: u16,
        extra: &[String],
        log: &Path,
    ) -> anyhow::Result<Sluice> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(&exes.sluice)
            .args(["serve", "--rules"])
            .arg(rules)
            .args([
                "--xds",
                &format!("127.0.0.1:{xds_port}"),
                "--admin",
                "127.0.0.1:0",
            ])
            .args(["--watch-interval-ms", "100"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawn {} (build it: cargo build --release)",
                    exes.sluice.display()
                )
            })?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut xds, mut admin, mut admin_grpc) = (None, None, None);
        while xds.is_none() || admin.is_none() {
            let line = lines
                .next()
                .ok_or_else(|| anyhow!("sluice exited before listening (see its log)"))??;
            if let Some(a) = line.strip_prefix("sluice: xds listening on ") {
                xds = Some(a.parse()?);
            }
            if let Some(a) = line.strip_prefix("sluice: admin listening on ") {
                admin = Some(a.parse()?);
            }
            if let Some(a) = line.strip_prefix("sluice: admin grpc listening on ") {
                admin_grpc = Some(a.parse()?);
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let s = Sluice {
            child,
            xds: xds.context("xds")?,
            admin: admin.context("admin")?,
            admin_grpc,
        };
        let url = format!("http://{}/readyz", s.admin);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                bail!("sluice not ready within 90 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no goodbye to the streams, like a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child of this program in some mode, talked to by lines: commands on
/// its stdin, events from its stdout.
pub struct Peer {
    child: Child,
    input: std_mpsc::Sender<String>,
    pub events: mpsc::UnboundedReceiver<String>,
}

impl Peer {
    pub fn spawn(exes: &Exes, args: &[String], log: &Path) -> anyhow::Result<Peer> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(&exes.this)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", exes.this.display()))?;
        let stdin: ChildStdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (input, input_rx) = std_mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut w = std::io::BufWriter::new(stdin);
            while let Ok(line) = input_rx.recv() {
                let _ = writeln!(w, "{line}");
                // Batch what is queued, then flush.
                while let Ok(more) = input_rx.try_recv() {
                    let _ = writeln!(w, "{more}");
                }
                if w.flush().is_err() {
                    return;
                }
            }
        });
        let (tx, events) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Peer {
            child,
            input,
            events,
        })
    }

    pub fn send(&self, line: String) {
        let _ = self.input.send(line);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next event line, or an error when the child went away or
    /// nothing came within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => bail!("child exited (see its log)"),
            Err(_) => bail!("child said nothing within {timeout:?}"),
        }
    }

    /// Waits for a line starting with `prefix`, passing others to `other`.
    pub async fn expect(
        &mut self,
        prefix: &str,
        timeout: Duration,
        mut other: impl FnMut(&str),
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .next(left)
                .await
                .with_context(|| format!("waiting for {prefix:?}"))?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
            other(&line);
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to quit and waits (kills it after `grace`).
    pub fn quit(mut self, grace: Duration) {
        self.send("quit".into());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}
