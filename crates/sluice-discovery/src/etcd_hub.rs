//! One etcd watch stream for every feed of one endpoint list.
//!
//! etcd multiplexes watchers on one `Watch` RPC: each create request
//! carries a watch id (ours, chosen here), and every response names the
//! watcher it is for. A [`Hub`] owns that stream. Feeds add their watcher
//! (prefix, start revision) and get their responses on a channel of their
//! own; the hub routes by watch id.
//!
//! **Liveness** is the stream's, so it is checked once for all feeds: every
//! probe interval the hub asks for one progress report (etcd answers with
//! watch id −1, for every watcher on the stream). No answer within the
//! request timeout, or an error or end of the stream, and every feed is
//! told the stream is lost: each fails (endpoints kept) and adds its
//! watcher again, after its backoff, from its own next revision; the first
//! to come back opens a new stream. Before, each feed had a stream and
//! asked for progress itself: 1,000 streams and 400 progress requests a
//! second at 1,000 etcd-backed services.
//!
//! A stream-wide progress report only confirms that etcd answers. It does
//! not move a feed's resume revision: etcd 3.4 answers it without waiting
//! for watchers that are still catching up, so its revision may be ahead
//! of events a new watcher has yet to receive. What moves it is a
//! watcher's own progress notification (`progress_notify`), which etcd
//! sends a watcher only when it is caught up (every 10 minutes by default,
//! etcd's `--experimental-watch-progress-notify-interval`). So a quiet
//! feed resumes from a revision at most that old, not from its listing,
//! and does not list again after a lost stream unless etcd compacted
//! meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions, WatchResponse, Watcher};
use tokio::sync::mpsc;

/// How long a failure to open the stream answers new watchers.
const OPEN_COOLDOWN: Duration = Duration::from_secs(1);

/// What a feed hears about its watcher.
#[derive(Debug)]
pub(super) enum Heard {
    /// etcd created the watcher.
    Created,
    /// Events, or a cancellation (compaction included), for this watcher.
    Response(WatchResponse),
    /// The stream answered a progress request: etcd is there.
    Alive,
    /// The stream is gone (or could not be opened); add the watcher again.
    Lost(StreamLost),
}

/// Why the shared watch stream was lost. One failure is told to every
/// feed on the stream, so etcd-client's error is shared (`Arc`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamLost {
    /// Adding this feed's watcher to the open stream failed.
    #[error("etcd watch of {prefix}")]
    Add {
        prefix: String,
        #[source]
        source: Arc<etcd_client::Error>,
    },
    #[error("etcd watch stream")]
    Failed(#[source] Arc<etcd_client::Error>),
    #[error("etcd watch stream: timed out")]
    OpenTimedOut,
    #[error("etcd watch stream closed")]
    Closed,
    #[error("etcd watch stream: no progress report")]
    NoProgress,
}

impl StreamLost {
    fn failed(e: etcd_client::Error) -> StreamLost {
        StreamLost::Failed(Arc::new(e))
    }
}

enum Cmd {
    Add {
        id: i64,
        prefix: String,
        from: i64,
        to: mpsc::UnboundedSender<Heard>,
    },
    Remove(i64),
}

/// The handle feeds hold; the hub's task ends once every handle is gone.
#[derive(Clone)]
pub(super) struct Hub {
    cmds: mpsc::UnboundedSender<Cmd>,
    /// Watch ids are ours (etcd takes a non-zero id in the create request),
    /// so a feed knows its id before etcd answers. Never reused.
    next_id: Arc<AtomicI64>,
}

/// A feed's watcher on the hub's stream; dropping it cancels the watcher.
pub(super) struct Watch {
    id: i64,
    cmds: mpsc::UnboundedSender<Cmd>,
    heard: mpsc::UnboundedReceiver<Heard>,
}

impl Watch {
    /// The next thing heard; `None` when the hub is gone.
    pub(super) async fn next(&mut self) -> Option<Heard> {
        self.heard.recv().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Remove(self.id));
    }
}

impl Hub {
    pub(super) fn start(client: Client, probe_every: Duration, timeout: Duration) -> Hub {
        let (cmds, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, rx, probe_every, timeout));
        Hub {
            cmds,
            next_id: Arc::new(AtomicI64::new(1)),
        }
    }

    /// Adds a watcher of `prefix` from revision `from`.
    pub(super) fn watch(&self, prefix: &str, from: i64) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (to, heard) = mpsc::unbounded_channel();
        let _ = self.cmds.send(Cmd::Add {
            id,
            prefix: prefix.to_string(),
            from,
            to,
        });
        Watch {
            id,
            cmds: self.cmds.clone(),
            heard,
        }
    }
}

struct Stream {
    watcher: Watcher,
    responses: etcd_client::WatchStream,
    /// When the progress request in flight was sent.
    awaiting: Option<Instant>,
}

async fn run(
    client: Client,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    probe_every: Duration,
    timeout: Duration,
) {
    let mut feeds: HashMap<i64, mpsc::UnboundedSender<Heard>> = HashMap::new();
    let mut stream: Option<Stream> = None;
    // The last failure to open a stream: for a while, watchers added
    // meanwhile fail with it at once instead of each trying (and, with
    // etcd hanging, each waiting out the timeout) in turn.
    let mut failed: Option<(Instant, StreamLost)> = None;
    let mut probe = tokio::time::interval(probe_every);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Remove(id)) => {
                    if feeds.remove(&id).is_some() {
                        if let Some(s) = &mut stream {
                            // A failed cancel means a failed stream, which
                            // the next message or probe finds.
                            let _ = s.watcher.cancel_by_id(id).await;
                        }
                    }
                }
                Some(Cmd::Add { id, prefix, from, to }) => {
                    if to.is_closed() {
                        // The feed gave up on this watcher while it waited.
                        continue;
                    }
                    if stream.is_none() {
                        if let Some((at, why)) = &failed {
                            if at.elapsed() < OPEN_COOLDOWN {
                                let _ = to.send(Heard::Lost(why.clone()));
                                continue;
                            }
                        }
                    }
                    // Progress notifications of its own, which etcd sends
                    // a watcher only once it is caught up, keep the feed's
                    // resume revision fresh.
                    let options = WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(from)
                        .with_progress_notify()
                        .with_watch_id(id);
                    match &mut stream {
                        Some(s) => match s.watcher.watch(prefix.as_str(), Some(options)).await {
                            Ok(()) => {
                                feeds.insert(id, to);
                            }
                            Err(e) => {
                                let source = Arc::new(e);
                                let _ = to.send(Heard::Lost(StreamLost::Add { prefix, source: source.clone() }));
                                lose(&mut stream, &mut feeds, StreamLost::Failed(source));
                            }
                        },
                        None => {
                            let mut wc = client.watch_client();
                            let open = tokio::time::timeout(timeout, wc.watch(prefix.as_str(), Some(options)));
                            match open.await {
                                Ok(Ok((watcher, responses))) => {
                                    // The first watcher's created response
                                    // was read by `watch`.
                                    let _ = to.send(Heard::Created);
                                    feeds.insert(id, to);
                                    stream = Some(Stream { watcher, responses, awaiting: None });
                                    failed = None;
                                    probe.reset();
                                }
                                Ok(Err(e)) => {
                                    let why = StreamLost::failed(e);
                                    let _ = to.send(Heard::Lost(why.clone()));
                                    failed = Some((Instant::now(), why));
                                }
                                Err(_) => {
                                    let why = StreamLost::OpenTimedOut;
                                    let _ = to.send(Heard::Lost(why.clone()));
                                    failed = Some((Instant::now(), why));
                                }
                            }
                        }
                    }
                }
            },
            msg = message(&mut stream) => match msg {
                Ok(Some(resp)) => {
                    if let Some(s) = &mut stream {
                        s.awaiting = None;
                    }
                    route(resp, &mut feeds);
                }
                Ok(None) => lose(&mut stream, &mut feeds, StreamLost::Closed),
                Err(e) => lose(&mut stream, &mut feeds, StreamLost::failed(e)),
            },
            _ = probe.tick() => {
                let Some(s) = &mut stream else { continue };
                if feeds.is_empty() {
                    // Nobody watches: let the stream go.
                    stream = None;
                    continue;
                }
                match s.awaiting {
                    Some(t) if t.elapsed() > timeout => {
                        lose(&mut stream, &mut feeds, StreamLost::NoProgress);
                    }
                    Some(_) => {}
                    None => match s.watcher.request_progress().await {
                        Ok(()) => s.awaiting = Some(Instant::now()),
                        Err(e) => lose(&mut stream, &mut feeds, StreamLost::failed(e)),
                    },
                }
            }
        }
    }
}

/// The next response of the stream, or never when there is none.
async fn message(stream: &mut Option<Stream>) -> Result<Option<WatchResponse>, etcd_client::Error> {
    match stream {
        Some(s) => s.responses.message().await,
        None => std::future::pending().await,
    }
}

/// Hands one response to the feed it is for, or to every feed when it is
/// the answer to a progress request.
fn route(resp: WatchResponse, feeds: &mut HashMap<i64, mpsc::UnboundedSender<Heard>>) {
    let id = resp.watch_id();
    let bare = resp.events().is_empty() && !resp.created() && !resp.canceled();
    if bare && !feeds.contains_key(&id) {
        // etcd answers a progress request with watch id -1: for all.
        feeds.retain(|_, to| to.send(Heard::Alive).is_ok());
        return;
    }
    let Some(to) = feeds.get(&id) else {
        // A watcher already removed (its cancel confirmed, or late events).
        return;
    };
    let heard = if resp.created() && !resp.canceled() && resp.events().is_empty() {
        Heard::Created
    } else {
        Heard::Response(resp)
    };
    let ended = matches!(&heard, Heard::Response(r) if r.canceled());
    if to.send(heard).is_err() || ended {
        feeds.remove(&id);
    }
}

/// Tells every feed the stream is gone, and drops it.
fn lose(
    stream: &mut Option<Stream>,
    feeds: &mut HashMap<i64, mpsc::UnboundedSender<Heard>>,
    why: StreamLost,
) {
    *stream = None;
    for (_, to) in feeds.drain() {
        let _ = to.send(Heard::Lost(why.clone()));
    }
}
