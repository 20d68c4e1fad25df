//! What a live source (apiserver watch, polled manifest directory) tells the run loop.
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The objects changed: reconcile the whole state.
    Changed {
        /// When the agent noticed the oldest change this covers; `None` for the
        /// initial state (no event to measure from).
        noticed: Option<Instant>,
        /// When the changed objects were changed, where they say
        /// (EndpointSlice `last-change-trigger-time`).
        triggered: Vec<Timestamp>,
    },
    /// The source re-checked (a relist, a resumed watch) and nothing changed: the
    /// data path is still current.
    Unchanged,
}
