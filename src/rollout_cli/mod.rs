//! `sluice rollout`: start and steer canary rollouts through the admin gRPC
//! API of a running `sluice serve --admin-grpc`.
//!
//! Exit codes, for scripts and CI pipelines:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; for `status --watch`, the rollout was promoted |
//! | 1 | sluice could not be reached, or another error |
//! | 2 | bad command line |
//! | 3 | refused: unknown rollout or cluster, invalid spec, already active, not paused, already ended |
//! | 4 | unauthenticated: missing or wrong token |
//! | 5 | `status --watch`: the rollout ended rolled back or aborted |
//! | 6 | `status --watch --timeout`: the rollout had not ended in time (e.g. it is paused) |

mod render;

pub use render::{json, text};

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::canary::overlay::WeightsVia;
use crate::canary::pb::{self, rollout_service_client::RolloutServiceClient};
use crate::cli_support::Output;
use crate::sim::xds_tls::{self, ClientTls};

/// The `serve` flags of the rollout controller.
#[derive(Debug, Clone, Args)]
pub struct RolloutServeArgs {
    /// Keep sluice's state here: rollouts (`rollouts.json`; giving a
    /// directory enables the rollout controller) and drains
    /// (`sluice-drains.json`; default: beside the rules file).
    #[arg(long, env = "SLUICE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep rollouts and drains in etcd instead (URL[,URL…]): several
    /// replicas started with the same etcd and --state-prefix serve one
    /// fleet, and an elected leader runs the rollouts (docs/ha.md).
    #[arg(
        long,
        value_name = "URL[,URL…]",
        value_delimiter = ',',
        conflicts_with = "state_dir",
        env = "SLUICE_STATE_ETCD"
    )]
    pub state_etcd: Vec<String>,
    /// The etcd key prefix of this control plane's state.
    #[arg(long, default_value = "/sluice/", env = "SLUICE_STATE_PREFIX")]
    pub state_prefix: String,
    /// The leader's lease: a replica that could not renew it for this long
    /// stops driving rollouts, and another one takes over (whole seconds;
    /// etcd raises TTLs below its minimum, 2 s by default).
    #[arg(long, default_value = "10s", value_parser = lease_ttl)]
    pub state_lease_ttl: Duration,
    /// This replica's name in the election and on /status (default:
    /// HOSTNAME:PID).
    #[arg(long, env = "SLUICE_REPLICA_NAME")]
    pub replica_name: Option<String>,
    /// Serve the rollout admin gRPC API here (loopback; needs a token).
    #[arg(long, env = "SLUICE_ADMIN_GRPC")]
    pub admin_grpc: Option<SocketAddr>,
    /// File holding the admin token (else $SLUICE_ADMIN_TOKEN).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// An Envoy admin address (HOST:PORT) whose /stats rollouts analyse;
    /// repeat for every proxy.
    #[arg(long = "metrics-envoy-admin")]
    pub metrics_envoy_admin: Vec<String>,
    /// A Prometheus base URL to analyse rollouts with instead.
    #[arg(long)]
    pub metrics_prometheus: Option<String>,
    /// How a rollout step reaches Envoy: `routes` rewrites the routes to
    /// the service (works with any bootstrap); `runtime` changes only
    /// sluice's RTDS runtime layer, a few bytes per step, and needs Envoys
    /// bootstrapped with that layer (`sluice bootstrap` adds it).
    #[arg(long, env = "SLUICE_ROLLOUT_WEIGHTS", value_enum, default_value_t = WeightsVia::Routes)]
    pub rollout_weights: WeightsVia,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// sluice's admin gRPC address.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9903",
        env = "SLUICE_ADMIN_GRPC"
    )]
    pub admin_grpc: SocketAddr,
    /// File holding the admin token (else $SLUICE_ADMIN_TOKEN).
    #[arg(long, global = true)]
    pub admin_token_file: Option<PathBuf>,
    /// Connect over TLS (sluice serves the admin gRPC API with its
    /// `--xds-tls-cert`), trusting this CA bundle (PEM); the certificate
    /// must name the address's IP.
    #[arg(long, global = true, value_name = "FILE", env = "SLUICE_ADMIN_GRPC_CA")]
    pub admin_grpc_ca: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    Canary,
    Bluegreen,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start moving SERVICE's traffic from one subset to another.
    Start {
        service: String,
        /// The canary subset.
        #[arg(long)]
        to: String,
        /// The stable subset.
        #[arg(long, default_value = "stable")]
        from: String,
        /// Canary weight per step, percent.
        #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100")]
        steps: Vec<u32>,
        /// Analysis window per step (e.g. 30s, 500ms).
        #[arg(long, default_value = "30s", value_parser = duration)]
        interval: Duration,
        /// Largest canary 5xx share (e.g. 1% or 0.01).
        #[arg(long, default_value = "1%", value_parser = share)]
        max_error_rate: f64,
        /// Largest canary p99 latency; 0 turns the check off.
        #[arg(long, default_value = "500ms", value_parser = duration)]
        max_p99: Duration,
        /// Failed checks before rolling back.
        #[arg(long, default_value_t = 3)]
        failure_threshold: u32,
        /// NAME=VALUE: requests with this header go to the canary first.
        #[arg(long, value_parser = header)]
        header: Option<(String, String)>,
        #[arg(long, value_enum, default_value_t = StrategyArg::Canary)]
        strategy: StrategyArg,
        /// Share of targeted proxies that must ACK each step (e.g. 100%).
        #[arg(long, default_value = "100%", value_parser = share)]
        ack_share: f64,
        /// How long a step waits for those ACKs before pausing.
        #[arg(long, default_value = "30s", value_parser = duration)]
        ack_timeout: Duration,
    },
    /// Where rollouts stand; with --watch, follow until SERVICE's ends.
    Status {
        service: Option<String>,
        #[arg(long)]
        watch: bool,
        /// With --watch: give up (exit 6) if the rollout has not ended by
        /// then. A paused rollout waits for an operator, so a pipeline
        /// that watches one should set this. 0 waits forever.
        #[arg(long, default_value = "0", value_parser = duration, requires = "watch")]
        timeout: Duration,
    },
    Pause {
        service: String,
    },
    Resume {
        service: String,
    },
    /// Skip the current step's analysis; --full goes to 100 % now.
    Promote {
        service: String,
        #[arg(long)]
        full: bool,
    },
    /// Send 100 % back to the stable subset; final.
    Abort {
        service: String,
    },
    List,
    History {
        service: String,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    crate::rules::parse_duration(s)
}

/// `--state-lease-ttl`: a duration of whole seconds, at least one (etcd
/// counts lease TTLs in seconds).
fn lease_ttl(s: &str) -> Result<Duration, String> {
    let d = crate::rules::parse_duration(s)?;
    if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
        return Err(format!(
            "{s:?}: the lease TTL must be whole seconds, at least 1s (etcd counts leases in seconds)"
        ));
    }
    Ok(d)
}

fn share(s: &str) -> Result<f64, String> {
    let (num, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a number: {s:?}"))?;
    let v = v / scale;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s:?} is not between 0% and 100%"))
    }
}

fn header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if !n.is_empty() => Ok((n.trim().to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// Exit codes (see the module docs).
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const REFUSED: u8 = 3;
    pub const UNAUTHENTICATED: u8 = 4;
    pub const FAILED: u8 = 5;
    pub const TIMED_OUT: u8 = 6;
}

/// Adds the bearer token to every call.
type AuthFn =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;

type Client =
    RolloutServiceClient<tonic::service::interceptor::InterceptedService<Channel, AuthFn>>;

impl RolloutArgs {
    /// Run `sluice rollout …`.
    pub fn run(self) -> ExitCode {
        let Some(rt) = crate::cli_support::runtime() else {
            return ExitCode::from(exit::ERROR);
        };
        match rt.block_on(run(self)) {
            Ok(code) => ExitCode::from(code),
            Err(status) => {
                eprintln!("error: {}", status.message());
                ExitCode::from(code_of(&status))
            }
        }
    }
}

fn code_of(status: &tonic::Status) -> u8 {
    use tonic::Code;
    match status.code() {
        Code::Unauthenticated => exit::UNAUTHENTICATED,
        Code::NotFound | Code::InvalidArgument | Code::AlreadyExists | Code::FailedPrecondition => {
            exit::REFUSED
        }
        _ => exit::ERROR,
    }
}

async fn connect(args: &RolloutArgs) -> Result<Client, tonic::Status> {
    let token = crate::cli_support::token(args.admin_token_file.as_deref())
        .map_err(|e| tonic::Status::unauthenticated(format!("{e:#}")))?
        .ok_or_else(|| {
            tonic::Status::unauthenticated(
                "no admin token: --admin-token-file or $SLUICE_ADMIN_TOKEN",
            )
        })?;
    let value: MetadataValue<_> = format!("Bearer {}", token.trim()).parse().map_err(|_| {
        tonic::Status::unauthenticated("the admin token is not a valid header value")
    })?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", args.admin_grpc))
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .connect_timeout(Duration::from_secs(5));
    let tls = match &args.admin_grpc_ca {
        None => None,
        Some(ca) => Some(
            ClientTls::from_files(ca, None, &args.admin_grpc.ip().to_string())
                .map_err(|e| tonic::Status::unavailable(format!("--admin-grpc-ca: {e}")))?,
        ),
    };
    let channel = xds_tls::connect(&endpoint, tls.as_ref())
        .await
        .map_err(|e| {
            tonic::Status::unavailable(format!("connecting to {}: {e}", args.admin_grpc))
        })?;
    let auth: AuthFn = Box::new(move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", value.clone());
        Ok(req)
    });
    Ok(RolloutServiceClient::with_interceptor(channel, auth))
}

async fn run(args: RolloutArgs) -> Result<u8, tonic::Status> {
    let mut client = connect(&args).await?;
    let out = args.output;
    let one = |r: &pb::Rollout| match out {
        Output::Json => println!("{}", json::rollout(r)),
        Output::Text => print!("{}", text::rollout(r, None)),
    };
    let svc = |service: &String| pb::ServiceRequest {
        service: service.clone(),
    };
    match &args.command {
        RolloutCommand::Start {
            service,
            to,
            from,
            steps,
            interval,
            max_error_rate,
            max_p99,
            failure_threshold,
            header,
            strategy,
            ack_share,
            ack_timeout,
        } => {
            let (header_name, header_value) = header.clone().unwrap_or_default();
            let req = pb::StartRequest {
                service: service.clone(),
                from: from.clone(),
                to: to.clone(),
                steps: steps.clone(),
                interval_ms: millis(*interval),
                max_error_rate: *max_error_rate,
                max_p99_ms: millis(*max_p99),
                failure_threshold: *failure_threshold,
                header_name,
                header_value,
                strategy: match strategy {
                    StrategyArg::Canary => pb::Strategy::Canary,
                    StrategyArg::Bluegreen => pb::Strategy::BlueGreen,
                } as i32,
                ack_share: *ack_share,
                ack_timeout_ms: millis(*ack_timeout),
            };
            one(&client.start(req).await?.into_inner());
        }
        RolloutCommand::Status { service: None, .. } | RolloutCommand::List => {
            let all = client.list(pb::ListRequest {}).await?.into_inner();
            match out {
                Output::Json => println!("{}", json::list(&all.rollouts)),
                Output::Text => print!("{}", text::list(&all.rollouts)),
            }
        }
        RolloutCommand::Status {
            service: Some(service),
            watch: false,
            ..
        } => one(&client.get(svc(service)).await?.into_inner()),
        RolloutCommand::Status {
            service: Some(service),
            watch: true,
            timeout,
        } => return watch(&mut client, service, *timeout, out).await,
        RolloutCommand::Pause { service } => one(&client.pause(svc(service)).await?.into_inner()),
        RolloutCommand::Resume { service } => one(&client.resume(svc(service)).await?.into_inner()),
        RolloutCommand::Promote { service, full } => {
            let req = pb::PromoteRequest {
                service: service.clone(),
                full: *full,
            };
            one(&client.promote(req).await?.into_inner());
        }
        RolloutCommand::Abort { service } => one(&client.abort(svc(service)).await?.into_inner()),
        RolloutCommand::History { service } => {
            let r = client.get(svc(service)).await?.into_inner();
            match out {
                Output::Json => println!("{}", json::history(&r)),
                Output::Text => print!("{}", text::history(&r)),
            }
        }
    }
    Ok(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Follows one rollout until it ends, or until `timeout` (unless zero)
/// has passed: a redrawn progress bar on a terminal, else one line (or
/// JSON document) per change.
async fn watch(
    client: &mut Client,
    service: &str,
    timeout: Duration,
    out: Output,
) -> Result<u8, tonic::Status> {
    let tty = out == Output::Text && std::io::stdout().is_terminal();
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut last = None;
    loop {
        let r = client
            .get(pb::ServiceRequest {
                service: service.to_string(),
            })
            .await?
            .into_inner();
        let shown = (r.phase.clone(), r.step, r.acked, r.failures, r.checks.len());
        if last.as_ref() != Some(&shown) {
            match (out, tty) {
                (Output::Json, _) => println!("{}", json::rollout(&r)),
                (Output::Text, true) => print!("\x1b[2K\r{}", text::progress_line(&r)),
                (Output::Text, false) => println!("{}", text::summary_line(&r)),
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
            last = Some(shown);
        }
        if r.done {
            if tty {
                println!();
            }
            return Ok(if r.phase == "promoted" {
                0
            } else {
                exit::FAILED
            });
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            if tty {
                println!();
            }
            eprintln!(
                "sluice rollout: {service} is still {} after {timeout:?}",
                r.phase.replace('_', " ")
            );
            return Ok(exit::TIMED_OUT);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
