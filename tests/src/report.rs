//! What the `probe` binary prints (one JSON object) and the tests read back.

use std::{collections::BTreeMap, io, time::Duration};

use serde::{Deserialize, Serialize};

/// Outcome of one probe run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `tcp`, `udp`, `resolver` or `hold`.
    pub mode: String,
    /// `ADDR:PORT` probed.
    pub target: String,
    /// Requests attempted.
    pub attempts: u64,
    /// Requests answered by a backend.
    pub ok: u64,
    /// Answers per backend name.
    pub backends: BTreeMap<String, u64>,
    /// Answers per pod port (HTTP only: the port the pod says it served on).
    pub ports: BTreeMap<u16, u64>,
    /// Failures per kind (see [`failure_kind`]).
    pub failures: BTreeMap<String, u64>,
    /// Latency of the answered requests, microseconds.
    pub latency_us: Option<LatencyStats>,
    /// Time until each failure was known, microseconds: "refused fast" vs "timed out".
    pub failure_latency_us: Option<LatencyStats>,
    /// `resolver`: queries answered only after their socket failed at once and a new
    /// one asked again.
    #[serde(default)]
    pub retried: u64,
}

impl ProbeReport {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Share of the answers that came from `backend`, 0.0 when nothing answered.
    pub fn share(&self, backend: &str) -> f64 {
        if self.ok == 0 {
            return 0.0;
        }
        *self.backends.get(backend).unwrap_or(&0) as f64 / self.ok as f64
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

impl LatencyStats {
    /// Stats of `samples` (microseconds); `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut us: Vec<u64> = samples.iter().map(|d| d.as_micros() as u64).collect();
        if us.is_empty() {
            return None;
        }
        us.sort_unstable();
        let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            count: us.len() as u64,
            min: us[0],
            p50: at(0.50),
            p99: at(0.99),
            max: us[us.len() - 1],
            mean: us.iter().sum::<u64>() / us.len() as u64,
        })
    }
}

/// Short name of a network error: `refused` (TCP RST or ICMP port unreachable),
/// `unreachable` (ICMP host/net unreachable), `timeout`, `reset`, `denied` (EPERM: a
/// local filter or socket program said no), or `other`.
pub fn failure_kind(err: &io::Error) -> &'static str {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => "refused",
        HostUnreachable | NetworkUnreachable => "unreachable",
        TimedOut | WouldBlock => "timeout",
        ConnectionReset | ConnectionAborted | BrokenPipe => "reset",
        UnexpectedEof => "eof",
        PermissionDenied => "denied",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_share() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let stats = LatencyStats::of(&samples).unwrap();
        assert_eq!(
            (stats.min, stats.p50, stats.p99, stats.max),
            (1, 51, 99, 100)
        );
        assert_eq!(stats.mean, 50);
        assert_eq!(LatencyStats::of(&[]), None);

        let mut report = ProbeReport {
            ok: 4,
            ..Default::default()
        };
        report.backends.insert("pod1".into(), 3);
        report.backends.insert("pod2".into(), 1);
        assert_eq!(report.share("pod1"), 0.75);
        assert_eq!(report.share("pod3"), 0.0);
    }

    #[test]
    fn error_kinds() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let unreachable = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        let timeout = io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(failure_kind(&refused), "refused");
        assert_eq!(failure_kind(&unreachable), "unreachable");
        assert_eq!(failure_kind(&timeout), "timeout");
    }
}
