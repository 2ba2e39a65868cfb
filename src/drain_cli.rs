//! `sluice drain add|remove|list`: asks a running sluice's admin listener to
//! drain (or undrain) an endpoint or a locality of a service, or lists the
//! drains. The server persists and applies them ([`crate::drain`]).
//! Adding and removing send the admin token (`--admin-token-file` or
//! `$SLUICE_ADMIN_TOKEN`) when one is set; sluice requires it when it was
//! started with one.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};

use crate::cli_support::{client, send, with_token, AdminAddr, AdminToken, Output};
use crate::drain::{Drain, LocalityRef, Target};

#[derive(Debug, Subcommand)]
pub enum DrainCommand {
    /// Drain: new requests avoid the endpoint or locality; in-flight ones
    /// finish. Kept across restarts of sluice until removed.
    Add(DrainArgs),
    /// Undo a drain.
    Remove(DrainArgs),
    /// List the drains and how many endpoints each matches.
    List {
        #[command(flatten)]
        admin: AdminAddr,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["endpoint", "locality"])))]
pub struct DrainArgs {
    /// The service, as named in the rules.
    #[arg(long)]
    pub service: String,
    /// One endpoint, ADDR:PORT.
    #[arg(long)]
    pub endpoint: Option<SocketAddr>,
    /// Every endpoint in REGION, or in REGION/ZONE.
    #[arg(long)]
    pub locality: Option<LocalityRef>,
    #[command(flatten)]
    pub admin: AdminAddr,
    #[command(flatten)]
    pub token: AdminToken,
}

impl DrainArgs {
    fn drain(&self) -> Option<Drain> {
        let target = match (&self.endpoint, &self.locality) {
            (Some(a), None) => Target::Endpoint(*a),
            (None, Some(l)) => Target::Locality(l.clone()),
            // clap's group makes exactly one present.
            _ => return None,
        };
        Some(Drain {
            service: self.service.clone(),
            target,
        })
    }
}

impl DrainCommand {
    /// Run `sluice drain …`.
    pub fn run(self) -> ExitCode {
        let Some(rt) = crate::cli_support::runtime() else {
            return ExitCode::FAILURE;
        };
        match rt.block_on(call(self)) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

async fn call(cmd: DrainCommand) -> Result<String, String> {
    let client = client()?;
    let (admin, method, args) = match cmd {
        DrainCommand::List { admin, output } => {
            let list: Vec<serde_json::Value> = send(client.get(url(admin.addr))).await?;
            return Ok(match output {
                Output::Json => format!("{}\n", serde_json::Value::from(list)),
                Output::Text => render_list(&list),
            });
        }
        DrainCommand::Add(a) => (a.admin.addr, reqwest::Method::POST, a),
        DrainCommand::Remove(a) => (a.admin.addr, reqwest::Method::DELETE, a),
    };
    let drain = args.drain().ok_or("give --endpoint or --locality")?;
    let token = args.token.read()?;
    let adding = method == reqwest::Method::POST;
    let req = client.request(method, url(admin)).json(&drain);
    let answer: serde_json::Value = send(with_token(req, token.as_deref())).await?;
    let changed = answer["changed"].as_bool().unwrap_or(false);
    let what = format!("{} of service {}", drain.target, drain.service);
    Ok(match (adding, changed) {
        (true, true) => format!("drained {what}\n"),
        (true, false) => format!("already drained: {what}\n"),
        (false, true) => format!("undrained {what}\n"),
        (false, false) => format!("was not drained: {what}\n"),
    })
}

fn url(admin: SocketAddr) -> String {
    format!("http://{admin}/drains")
}

fn render_list(list: &[serde_json::Value]) -> String {
    use std::fmt::Write;
    if list.is_empty() {
        return "no drains\n".to_string();
    }
    let mut s = format!("{:<20} {:<32} MATCHES\n", "SERVICE", "TARGET");
    for d in list {
        let target = match (d["endpoint"].as_str(), d["locality"].as_str()) {
            (Some(e), _) => format!("endpoint {e}"),
            (None, Some(l)) => format!("locality {l}"),
            (None, None) => "?".to_string(),
        };
        let service = d["service"].as_str().unwrap_or("?");
        let _ = writeln!(s, "{service:<20} {target:<32} {}", d["matches"]);
    }
    s
}
