//! Watch streams: newline-delimited `WatchEvent`s, read from the store's history after a
//! cursor. A cursor older than the history gets a 410 Expired ERROR event, as from the
//! real apiserver's watch cache after compaction.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, EventType, Since, Store, Stored};
use crate::table::{self, IncludeObject};

/// Changes read from the store per batch: bounds the time the store lock is held.
const BATCH: usize = 512;

/// What one watch request asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub resource: &'static ResourceType,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` (unset, "" or "0"): start with synthetic ADDED events of the current state.
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    /// `sendInitialEvents=true`: end the initial events with a marked BOOKMARK.
    pub send_initial_events: bool,
    /// Objects sent as one-row Tables (`kubectl get -w` asks for them).
    pub table: Option<IncludeObject>,
}

impl WatchRequest {
    fn selects(&self, obj: &Value) -> bool {
        let ns_ok = match (&self.namespace, self.resource.namespaced) {
            (Some(ns), true) => {
                obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
            }
            _ => true,
        };
        ns_ok && self.labels.matches_object(obj) && self.fields.matches_object(obj)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": meta});
        event_line(
            "BOOKMARK",
            &serde_json::to_vec(&obj).expect("JSON values encode"),
        )
    }

    /// The line for an object event, as a Table row when the client asked for Tables.
    fn line(&self, event: EventType, object: &Stored) -> Bytes {
        match self.table {
            None => event_line(event.as_str(), &object.json),
            Some(include) => {
                let rv = object
                    .value
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let t = table::render(
                    self.resource,
                    std::slice::from_ref(object),
                    rv,
                    None,
                    include,
                );
                event_line(
                    event.as_str(),
                    &serde_json::to_vec(&t).expect("JSON values encode"),
                )
            }
        }
    }
}

fn event_line(kind: &str, object_json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object_json.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object_json);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// The 410 ERROR event a too-old cursor gets.
fn expired_line(cursor: u64, floor: u64) -> Bytes {
    let status =
        ApiError::Expired(format!("too old resource version: {cursor} ({floor})")).status();
    event_line(
        "ERROR",
        &serde_json::to_vec(&status).expect("JSON values encode"),
    )
}

/// The event a change is for this watch, if any: with selectors, an object that starts
/// matching is ADDED and one that stops matching is DELETED, as in the real apiserver.
fn translate(req: &WatchRequest, change: &Change) -> Option<Bytes> {
    if change.key.res != req.resource.index() {
        return None;
    }
    let was = change.prev.as_ref().is_some_and(|p| req.selects(&p.value));
    let is = change.event != EventType::Deleted && req.selects(&change.object.value);
    let event = match (was, is) {
        (false, true) => EventType::Added,
        (true, true) => EventType::Modified,
        (true, false) => EventType::Deleted,
        (false, false) => return None,
    };
    if event == change.event && req.table.is_none() {
        Some(change.line.clone())
    } else {
        Some(req.line(event, &change.object))
    }
}

/// Waits until the store reaches `rv` (up to 3 s, like the real watch cache) so a watch
/// from a version the server has not seen yet fails with 504 instead of silently waiting.
pub async fn wait_for_version(store: &Store, rv: u64) -> Result<(), ApiError> {
    let mut versions = store.subscribe_versions();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let current = *versions.borrow_and_update();
        if current >= rv {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, versions.changed())
            .await
            .is_err()
        {
            return Err(ApiError::Timeout(format!(
                "Too large resource version: {rv}, current: {current}"
            )));
        }
    }
}

/// Starts a watch; the returned stream is the response body.
pub fn start(
    store: Arc<Store>,
    req: WatchRequest,
    bookmark_interval: Duration,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        store
            .counters
            .watches_started
            .fetch_add(1, Ordering::Relaxed);
        store
            .counters
            .watches_active
            .fetch_add(1, Ordering::Relaxed);
        run(&store, &req, bookmark_interval, &tx).await;
        store
            .counters
            .watches_active
            .fetch_sub(1, Ordering::Relaxed);
    });
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    )
}

async fn run(
    store: &Store,
    req: &WatchRequest,
    bookmark_interval: Duration,
    tx: &mpsc::Sender<Bytes>,
) {
    // Subscribe before reading, so no change between the read and the wait is missed.
    let mut cuts = store.subscribe_cuts();
    cuts.borrow_and_update();
    let mut versions = store.subscribe_versions();
    versions.borrow_and_update();
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let mut cursor = match req.resource_version {
        Some(rv) => rv,
        None => {
            let (items, at) = store.snapshot(req.resource, req.namespace.as_deref());
            for item in items.iter().filter(|i| req.selects(&i.value)) {
                if tx.send(req.line(EventType::Added, item)).await.is_err() {
                    return;
                }
            }
            if req.send_initial_events
                && req.bookmarks
                && tx.send(req.bookmark(at, true)).await.is_err()
            {
                return;
            }
            at
        }
    };
    let mut starting = req.resource_version.is_some();
    let mut ticker =
        tokio::time::interval_at(Instant::now() + bookmark_interval, bookmark_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        loop {
            let since = store.since(cursor, BATCH, starting);
            // A cut takes effect before anything written after it: a cut made before
            // a write that `since` returned is visible by now, so a test that cuts and
            // then writes never sees that write on the old stream.
            if cuts.has_changed().unwrap_or(true) {
                return;
            }
            starting = false;
            match since {
                Since::TooOld { floor } => {
                    store.counters.watch_expired.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(expired_line(cursor, floor)).await;
                    return;
                }
                Since::Changes {
                    changes,
                    cursor: next,
                } => {
                    for change in &changes {
                        if let Some(line) = translate(req, change)
                            && tx.send(line).await.is_err()
                        {
                            return;
                        }
                    }
                    cursor = next;
                    if changes.len() < BATCH {
                        break;
                    }
                }
            }
        }
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cuts.changed() => return,
            changed = versions.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticker.tick(), if req.bookmarks => {
                store.counters.bookmarks.fetch_add(1, Ordering::Relaxed);
                if tx.send(req.bookmark(cursor, false)).await.is_err() {
                    return;
                }
            }
            _ = timeout => {
                // The real apiserver sends a last bookmark before a timed-out watch ends.
                if req.bookmarks {
                    let _ = tx.send(req.bookmark(cursor, false)).await;
                }
                return;
            }
            _ = tx.closed() => return,
        }
    }
}
