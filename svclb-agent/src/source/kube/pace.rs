//! When to reconcile after changes. Like kube-proxy's minSyncPeriod: a change after a
//! quiet spell is applied at once (a single change reaches the data path without a
//! debounce delay), and changes that arrive within `min_period` of the last
//! reconcile are batched into the next one, `min_period` after it. A burst of events
//! (a relist, a rollout) thus costs one reconcile per period, never more.
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Pacer {
    min_period: Duration,
    last_run: Option<Instant>,
    /// Arrival of the oldest change not yet reconciled.
    pending_since: Option<Instant>,
}

impl Pacer {
    pub fn new(min_period: Duration) -> Self {
        Pacer {
            min_period,
            last_run: None,
            pending_since: None,
        }
    }

    pub fn note_change(&mut self, at: Instant) {
        self.pending_since.get_or_insert(at);
    }

    /// When the pending changes are due; `None` when nothing is pending.
    pub fn due(&self) -> Option<Instant> {
        let since = self.pending_since?;
        Some(match self.last_run {
            Some(last) => since.max(last + self.min_period),
            None => since,
        })
    }

    /// A reconcile starts at `now`: returns the arrival of the oldest change it covers.
    pub fn run(&mut self, now: Instant) -> Option<Instant> {
        self.last_run = Some(now);
        self.pending_since.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(20);

    #[test]
    fn nothing_pending_nothing_due() {
        let p = Pacer::new(P);
        assert_eq!(p.due(), None);
    }

    #[test]
    fn first_change_is_due_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(P);
        p.note_change(t0);
        assert_eq!(p.due(), Some(t0));
    }

    #[test]
    fn change_after_a_quiet_spell_is_due_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(P);
        p.note_change(t0);
        p.run(t0);
        let t1 = t0 + Duration::from_millis(500);
        p.note_change(t1);
        assert_eq!(p.due(), Some(t1));
    }

    #[test]
    fn changes_within_the_period_are_batched_until_it_ends() {
        let t0 = Instant::now();
        let mut p = Pacer::new(P);
        p.note_change(t0);
        assert_eq!(p.run(t0), Some(t0));
        let a = t0 + Duration::from_millis(3);
        let b = t0 + Duration::from_millis(12);
        p.note_change(a);
        p.note_change(b);
        assert_eq!(p.due(), Some(t0 + P));
        // The reconcile covers both and reports the older arrival.
        assert_eq!(p.run(t0 + P), Some(a));
        assert_eq!(p.due(), None);
    }

    #[test]
    fn run_without_changes_reports_none() {
        let mut p = Pacer::new(P);
        assert_eq!(p.run(Instant::now()), None);
    }
}
