//! /healthz and /livez, with kube-proxy's semantics: the agent is healthy unless a
//! change has waited longer than the health timeout for the data path (here also:
//! the apiserver has been unreachable that long, so changes may be waiting unseen).
//! /healthz additionally needs one successful sync since start and an eligible node
//! (not being deleted, not tainted `ToBeDeletedByClusterAutoscaler`), so load
//! balancers send nothing to a node that is not programmed or is going away.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::time::Instant;

use crate::source::kube::client::ApiReachability;

#[derive(Debug)]
pub struct Health {
    timeout: Duration,
    reach: Option<Arc<ApiReachability>>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Arrival of the oldest change not yet in the data path. Start counts as one:
    /// the source's state is owed to the data path.
    pending_since: Option<Instant>,
    last_updated: Option<Timestamp>,
    node_eligible: Option<bool>,
}

/// The JSON body of /healthz and /livez (kube-proxy's fields, plus svclb's).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Last successful sync (or check that found the data path current).
    pub last_updated: Option<String>,
    pub current_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_eligible: Option<bool>,
    pub healthy: bool,
    /// Seconds the oldest unapplied change has waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apiserver_reachable: Option<bool>,
}

impl Health {
    /// `reach` is the apiserver client's record, when there is an apiserver.
    pub fn new(timeout: Duration, reach: Option<Arc<ApiReachability>>) -> Self {
        Health {
            timeout,
            reach,
            state: Mutex::new(State {
                pending_since: Some(Instant::now()),
                last_updated: None,
                node_eligible: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A change arrived at `at` and is not in the data path yet (kube-proxy's
    /// QueuedUpdate).
    pub fn queued(&self, at: Instant) {
        let mut s = self.state();
        s.pending_since = Some(s.pending_since.map_or(at, |p| p.min(at)));
    }

    /// The data path now holds every change seen (kube-proxy's Updated).
    pub fn updated(&self) {
        let mut s = self.state();
        s.pending_since = None;
        s.last_updated = Some(Timestamp::now());
    }

    /// `None` when the agent has no Node object to judge by.
    pub fn set_node_eligible(&self, eligible: Option<bool>) {
        self.state().node_eligible = eligible;
    }

    /// /livez: no change waiting too long.
    pub fn livez(&self) -> (bool, Report) {
        let r = self.report(false);
        (r.healthy, r)
    }

    /// /healthz: /livez, synced once, and the node eligible.
    pub fn healthz(&self) -> (bool, Report) {
        let r = self.report(true);
        (r.healthy, r)
    }

    fn report(&self, with_node: bool) -> Report {
        let now = Instant::now();
        let s = self.state();
        let down_since = self.reach.as_ref().and_then(|r| r.down_since());
        let stale_since = match (s.pending_since, down_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let live = stale_since.is_none_or(|t| now.saturating_duration_since(t) < self.timeout);
        let node_eligible = if with_node { s.node_eligible } else { None };
        let healthy =
            live && (!with_node || (s.last_updated.is_some() && node_eligible != Some(false)));
        Report {
            last_updated: s.last_updated.map(|t| t.to_string()),
            current_time: Timestamp::now().to_string(),
            node_eligible,
            healthy,
            pending_seconds: s
                .pending_since
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            apiserver_reachable: self.reach.as_ref().map(|_| down_since.is_none()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn not_healthy_before_the_first_sync_and_not_live_after_the_timeout() {
        let h = Health::new(T, None);
        assert!(!h.healthz().0);
        assert!(h.livez().0, "live while starting up");
        tokio::time::advance(T + Duration::from_secs(1)).await;
        assert!(!h.livez().0, "start is a pending change");
        h.updated();
        assert!(h.healthz().0);
        assert!(h.livez().0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_waiting_beyond_the_timeout_is_unhealthy() {
        let h = Health::new(T, None);
        h.updated();
        h.queued(Instant::now());
        tokio::time::advance(T / 2).await;
        assert!(h.healthz().0, "pending, not late yet");
        h.queued(Instant::now()); // the oldest one counts
        tokio::time::advance(T / 2 + Duration::from_secs(1)).await;
        let (ok, report) = h.healthz();
        assert!(!ok);
        assert!(report.pending_seconds.unwrap() > T.as_secs_f64());
        h.updated();
        assert!(h.healthz().0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ineligible_node_fails_healthz_but_not_livez() {
        let h = Health::new(T, None);
        h.updated();
        h.set_node_eligible(Some(false));
        assert!(!h.healthz().0);
        assert!(h.livez().0);
        h.set_node_eligible(None);
        assert!(h.healthz().0);
    }

    #[test]
    fn report_json_uses_kube_proxy_field_names() {
        let h = Health::new(T, None);
        h.updated();
        h.set_node_eligible(Some(true));
        let v = serde_json::to_value(h.healthz().1).unwrap();
        assert_eq!(v["healthy"], true);
        assert_eq!(v["nodeEligible"], true);
        assert!(
            v["lastUpdated"].is_string() && v["currentTime"].is_string(),
            "{v}"
        );
    }
}
