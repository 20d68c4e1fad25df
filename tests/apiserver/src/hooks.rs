//! Test hooks under `/_test/`: end watch streams, compact history (forcing 410s),
//! simulate a restart, read counters. The same operations are methods of
//! [`crate::TestApiServer`] for in-process use.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::json;

use crate::error::ApiError;
use crate::http::{AppState, json_response};
use crate::store::Store;

/// A request to the accept loop: drop every connection, stop listening for `down`, then
/// listen again on the same address. `done` is told once listening again.
#[derive(Debug)]
pub struct RestartRequest {
    pub down: Duration,
    pub done: Option<std::sync::mpsc::Sender<()>>,
}

/// Counters of the server, as `/_test/stats` answers them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub requests: u64,
    pub lists: u64,
    pub gets: u64,
    pub writes: u64,
    pub watches_started: u64,
    pub watches_active: u64,
    pub watches_cut: u64,
    /// Watches answered with a 410 Expired ERROR event.
    pub watch_expired: u64,
    pub bookmarks: u64,
    pub resource_version: u64,
    /// Oldest version a watch may start from.
    pub history_floor: u64,
    pub history_len: usize,
    pub objects: usize,
}

impl Stats {
    pub fn collect(store: &Store) -> Stats {
        let c = &store.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            requests: get(&c.requests),
            lists: get(&c.lists),
            gets: get(&c.gets),
            writes: get(&c.writes),
            watches_started: get(&c.watches_started),
            watches_active: get(&c.watches_active),
            watches_cut: get(&c.watches_cut),
            watch_expired: get(&c.watch_expired),
            bookmarks: get(&c.bookmarks),
            resource_version: store.resource_version(),
            history_floor: store.floor(),
            history_len: store.history_len(),
            objects: store.object_count(),
        }
    }
}

pub async fn handle(st: &AppState, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query: std::collections::HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::POST, "/_test/cut-watches") => {
            let cut = st.store.cut_watches();
            Ok(json_response(StatusCode::OK, &json!({"cut": cut})))
        }
        (Method::POST, "/_test/expire") => {
            let floor = st.store.expire();
            Ok(json_response(StatusCode::OK, &json!({"floor": floor})))
        }
        (Method::GET, "/_test/stats") => {
            let stats = serde_json::to_value(Stats::collect(&st.store)).expect("stats encode");
            Ok(json_response(StatusCode::OK, &stats))
        }
        (Method::POST, "/_test/restart") => {
            let ms: u64 = match query.get("downMillis") {
                Some(v) => v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid downMillis: {v}")))?,
                None => 500,
            };
            let restart = st.restart.clone();
            // Answer first; the restart then drops this connection along with the others.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = restart.send(RestartRequest {
                    down: Duration::from_millis(ms),
                    done: None,
                });
            });
            Ok(json_response(
                StatusCode::OK,
                &json!({"restarting": true, "downMillis": ms}),
            ))
        }
        _ => Err(ApiError::UnknownPath),
    }
}
