//! `sluice diff FILE` and `sluice rules confirm VERSION`: the rules
//! endpoints of a running sluice's admin listener (`/rules/diff`,
//! `/rules/confirm`), with the plan printed like `terraform plan`.
//!
//! `sluice diff` exits 0 when the file changes nothing served, 1 when it
//! changes something, 2 when the mass-removal guard would hold it, 3 when
//! it is invalid (the diagnostics are printed), 4 when sluice cannot be
//! asked (unreachable, or it refused the admin token). Both send the admin
//! token (`--admin-token-file` or `$SLUICE_ADMIN_TOKEN`) when one is set.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::cli_support::{client, runtime, send, with_token, AdminAddr, AdminToken, Output};
use crate::guard::{Change, DiffDoc, HeldEdit};

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The rules file to compare with what is served.
    pub file: PathBuf,
    #[command(flatten)]
    pub admin: AdminAddr,
    #[command(flatten)]
    pub token: AdminToken,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Publish the rules edit the mass-removal guard holds, named by the
    /// version `sluice status` shows (the file's content hash).
    Confirm {
        version: String,
        #[command(flatten)]
        admin: AdminAddr,
        #[command(flatten)]
        token: AdminToken,
    },
}

/// The exit codes of `sluice diff`.
const NO_CHANGE: u8 = 0;
const CHANGES: u8 = 1;
const HELD: u8 = 2;
const INVALID: u8 = 3;
const UNREACHABLE: u8 = 4;

/// What `/rules/diff` answered.
enum Answer {
    Plan(DiffDoc),
    Invalid(String),
}

impl DiffArgs {
    /// Run `sluice diff`.
    pub fn run(self) -> ExitCode {
        diff(self)
    }
}

impl RulesCommand {
    /// Run `sluice rules …`.
    pub fn run(self) -> ExitCode {
        confirm(self)
    }
}

fn diff(args: DiffArgs) -> ExitCode {
    let text = match std::fs::read(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", args.file.display());
            return ExitCode::from(INVALID);
        }
    };
    let token = match args.token.read() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(UNREACHABLE);
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::from(UNREACHABLE);
    };
    let file = args.file.display().to_string();
    match rt.block_on(ask_diff(args.admin.addr, token.as_deref(), &file, text)) {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(UNREACHABLE)
        }
        Ok(Answer::Invalid(diagnostics)) => {
            eprintln!("{diagnostics}");
            ExitCode::from(INVALID)
        }
        Ok(Answer::Plan(doc)) => {
            match args.output {
                Output::Json => match serde_json::to_string_pretty(&doc) {
                    Ok(json) => println!("{json}"),
                    Err(e) => eprintln!("error: {e}"),
                },
                Output::Text => print!("{}", render(&file, &doc)),
            }
            ExitCode::from(if doc.held.is_some() {
                HELD
            } else if doc.plan.groups.is_empty() {
                NO_CHANGE
            } else {
                CHANGES
            })
        }
    }
}

async fn ask_diff(
    admin: SocketAddr,
    token: Option<&str>,
    file: &str,
    text: Vec<u8>,
) -> Result<Answer, String> {
    let req = client()?
        .post(format!("http://{admin}/rules/diff"))
        .query(&[("file", file)])
        .body(text);
    let resp = with_token(req, token)
        .send()
        .await
        .map_err(|e| format!("cannot reach sluice at {admin}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    let doc: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("unexpected answer ({status}): {e}"))?;
    if status == reqwest::StatusCode::BAD_REQUEST {
        let msg = doc["error"].as_str().unwrap_or(&body).to_string();
        return Ok(Answer::Invalid(msg));
    }
    if !status.is_success() {
        return Err(format!("sluice answered {status}: {body}"));
    }
    serde_json::from_value(doc)
        .map(Answer::Plan)
        .map_err(|e| format!("unexpected answer: {e}"))
}

/// The plan as text: per group and type, `+` added, `~` changed, `-`
/// removed, each with its rule; then the guard's verdict.
pub fn render(file: &str, doc: &DiffDoc) -> String {
    let mut s = String::new();
    let served = doc.served.as_deref().unwrap_or("-");
    let _ = writeln!(s, "{file}: version {} (served: {served})", doc.version);
    if doc.plan.groups.is_empty() {
        let _ = writeln!(s, "no changes");
    }
    let mut counts = [0usize; 3];
    for (group, gp) in &doc.plan.groups {
        let _ = writeln!(s, "\ngroup {group}:");
        for (ty, tc) in &gp.types {
            for (i, (mark, list)) in [('+', &tc.added), ('~', &tc.changed), ('-', &tc.removed)]
                .into_iter()
                .enumerate()
            {
                counts[i] += list.len();
                for Change { name, rule } in list {
                    let rule = rule.as_deref().unwrap_or("");
                    let _ = writeln!(s, "  {ty:<4} {mark} {name:<40} {rule}");
                }
            }
        }
    }
    if !doc.plan.groups.is_empty() {
        let [added, changed, removed] = counts;
        let _ = writeln!(
            s,
            "\n{added} to add, {changed} to change, {removed} to remove"
        );
    }
    if let Some(held) = &doc.held {
        s.push_str(&render_held(held, true));
    }
    s
}

/// Why an edit is (or would be, `in_diff`) held, and how to release it.
pub fn render_held(held: &HeldEdit, in_diff: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nHELD by the mass-removal guard (more than {}% of a group's listeners or clusters, all of them, or an empty file):",
        held.max_removal_percent
    );
    if held.empty_file {
        let _ = writeln!(
            s,
            "  the file is empty (no YAML, only whitespace or comments)"
        );
    }
    for r in &held.removals {
        const SHOWN: usize = 10;
        let mut names = r.removed[..r.removed.len().min(SHOWN)].join(", ");
        if r.removed.len() > SHOWN {
            let _ = write!(names, ", ... ({} more)", r.removed.len() - SHOWN);
        }
        let _ = writeln!(
            s,
            "  group {}: removes {} of {} {}: {names}",
            r.group,
            r.removed.len(),
            r.served,
            r.kind
        );
    }
    let when = if in_diff {
        " (once it is sluice's rules file)"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "  publish it with: sluice rules confirm {}{when}",
        held.version
    );
    s
}

fn confirm(cmd: RulesCommand) -> ExitCode {
    let RulesCommand::Confirm {
        version,
        admin,
        token,
    } = cmd;
    let token = match token.read() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let answer = rt.block_on(async {
        let req = client()?
            .post(format!("http://{}/rules/confirm", admin.addr))
            .json(&serde_json::json!({ "version": version }));
        send::<serde_json::Value>(with_token(req, token.as_deref())).await
    });
    match answer {
        Ok(_) => {
            println!("published rules version {version}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
