//! The file source: a YAML endpoints file, polled.
//!
//! Every `interval` the file is read and, when its content changed, parsed
//! and given to the index as a complete listing (`reset`). An unreadable
//! file or one that is not an endpoints document fails the feed, which
//! keeps its endpoints; a bad entry is skipped and counted while the rest
//! of the file is used. Polling by content, as for the rules file, also
//! sees editors that replace the file and ConfigMap symlink swaps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_core::digest::content_hash;
use sluice_core::model::Endpoint;
use sluice_core::rules::yaml::{self, Events, KeySet, NodeStart};
use tracing::warn;

use super::record::{Record, RecordError};
use super::Feeder;

/// A parsed endpoints file: good entries by `address:port`, and one
/// message per skipped entry.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub endpoints: BTreeMap<String, Endpoint>,
    pub rejected: Vec<String>,
}

/// Why an endpoints file could not be used as a whole (the feed fails and
/// keeps its endpoints); the I/O or YAML error is its source.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {name}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}")]
    Yaml {
        name: String,
        #[source]
        source: yaml::Error,
    },
    #[error("{name}: expected a mapping with an `endpoints` list")]
    NotEndpoints { name: String },
}

/// Why one entry was skipped (its message goes to `Parsed::rejected`).
#[derive(Debug, thiserror::Error)]
enum EntryError {
    /// Worded without its position: the entry's line leads the message.
    #[error("{}", .0.message())]
    Yaml(yaml::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Parses an endpoints file (`endpoints: [{address, port, ...}]`).
/// `Err` when the document as a whole is not one.
pub fn parse(name: &str, text: &str) -> Result<Parsed, FileError> {
    let mut out = Parsed::default();
    let mut events = Events::new(text);
    entries(&mut events, name, &mut out)?;
    Ok(out)
}

/// Reads the `endpoints` list of the top mapping into `out`, other keys
/// skipped; an entry that fails is counted in `out.rejected`. `Err` for
/// text that is not YAML or not such a mapping.
fn entries(events: &mut Events, name: &str, out: &mut Parsed) -> Result<(), FileError> {
    let not_endpoints = || FileError::NotEndpoints {
        name: name.to_string(),
    };
    let err = |source: yaml::Error| FileError::Yaml {
        name: name.to_string(),
        source,
    };
    if !events.start_document().map_err(err)? {
        return Err(not_endpoints());
    }
    if !matches!(events.peek_node().map_err(err)?, NodeStart::Mapping(_)) {
        return Err(not_endpoints());
    }
    events.enter().map_err(err)?;
    let mut seen = KeySet::default();
    let mut found = false;
    while let Some((key, _)) = events.next_key(&mut seen).map_err(err)? {
        if key != "endpoints" {
            events.skip_node().map_err(err)?;
            continue;
        }
        found = true;
        match events.peek_node().map_err(err)? {
            NodeStart::Sequence(_) => events.enter().map_err(err)?,
            NodeStart::Scalar { value: "", .. } => {
                events.skip_node().map_err(err)?;
                continue;
            }
            _ => return Err(not_endpoints()),
        }
        let mut i = 0;
        while events.next_item().map_err(err)? {
            entry(events, name, i, out).map_err(err)?;
            i += 1;
        }
    }
    if found {
        Ok(())
    } else {
        Err(not_endpoints())
    }
}

/// Reads endpoint `i` into `out`, or its reason into `out.rejected`. `Err`
/// only for a YAML syntax error, which ends the whole file.
fn entry(events: &mut Events, name: &str, i: usize, out: &mut Parsed) -> Result<(), yaml::Error> {
    let line = events.next_at()?.line();
    let checked = match events.entry::<Record>(&format!("endpoints[{i}]")) {
        Ok(record) => record.check().map_err(EntryError::from),
        Err(e) if e.error.is_fatal() => return Err(e.error),
        Err(e) => Err(EntryError::Yaml(e.error)),
    };
    match checked {
        Ok(ep) => {
            let id = SocketAddr::new(ep.address, ep.port).to_string();
            out.endpoints.insert(id, ep);
        }
        Err(e) => out
            .rejected
            .push(format!("{name}:{line}: endpoints[{i}]: {e}")),
    }
    Ok(())
}

/// Polls `path` until the feeder is stopped.
pub async fn run(feeder: Feeder, path: PathBuf, interval: Duration) {
    let name = path.display().to_string();
    let mut seen: Option<String> = None;
    let stop = feeder.stop.clone();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(source) => {
                // Forget the hash so the file is re-read in full once back.
                seen = None;
                let name = name.clone();
                feeder.fail(&FileError::Read { name, source });
                continue;
            }
        };
        let hash = content_hash(&[text.as_bytes()]);
        if seen.as_deref() == Some(hash.as_str()) {
            feeder.confirm();
            continue;
        }
        match parse(&name, &text) {
            Ok(parsed) => {
                seen = Some(hash);
                for msg in parsed.rejected {
                    warn!(file = %name, error = %msg, "endpoint entry skipped");
                    feeder.reject(msg);
                }
                feeder.with(|index, key| index.reset(key, parsed.endpoints, Instant::now()));
            }
            Err(e) => {
                seen = Some(hash);
                feeder.fail(&e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_skips_bad_ones_with_their_line() {
        let text = "endpoints:
  - {address: 10.0.0.1, port: 8080, labels: {version: v1}}
  - {address: not-an-ip, port: 8080}
  - {address: 10.0.0.2}
  - address: 10.0.0.3
    port: 9090
    health: draining
";
        let parsed = parse("eps.yaml", text).expect("document");
        let ids: Vec<&str> = parsed.endpoints.keys().map(String::as_str).collect();
        assert_eq!(ids, ["10.0.0.1:8080", "10.0.0.3:9090"]);
        assert_eq!(parsed.rejected.len(), 2, "{:?}", parsed.rejected);
        assert!(parsed.rejected[0].starts_with("eps.yaml:3: endpoints[1]: invalid address"));
        assert!(parsed.rejected[1].contains("eps.yaml:4: endpoints[2]"));
        assert!(parsed.rejected[1].contains("port"));
    }

    #[test]
    fn an_entry_with_a_duplicate_key_is_skipped_not_half_read() {
        // Which of the two ports was meant is a guess; the entry is skipped
        // and the others kept.
        let text = "endpoints:
  - {address: 10.0.0.1, port: 8080}
  - address: 10.0.0.2
    port: 8080
    port: 9090
  - {address: 10.0.0.3, port: 8080}
";
        let parsed = parse("eps.yaml", text).expect("document");
        let ids: Vec<&str> = parsed.endpoints.keys().map(String::as_str).collect();
        assert_eq!(ids, ["10.0.0.1:8080", "10.0.0.3:8080"]);
        assert_eq!(
            parsed.rejected,
            ["eps.yaml:3: endpoints[1]: duplicate key `port` (first at line 4)"]
        );
    }

    #[test]
    fn empty_list_is_zero_endpoints_but_garbage_is_an_error() {
        assert_eq!(parse("f", "endpoints: []").expect("ok"), Parsed::default());
        assert_eq!(parse("f", "endpoints:").expect("ok"), Parsed::default());
        assert!(parse("f", "[1, 2").is_err());
        assert!(parse("f", "hosts: []").is_err());
    }
}
