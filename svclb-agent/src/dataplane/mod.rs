//! Dataplane backends. They take a [`crate::model::DesiredState`] and know nothing of
//! Kubernetes objects.
use std::{collections::BTreeSet, net::SocketAddrV4, time::Duration};

use crate::model::{DesiredState, Proto, SetKey};

pub mod ebpf;
pub mod iptables;
pub mod ipvs;
pub mod select;

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Map updates and deletions (or rules) written.
    pub writes: usize,
    /// Flow-table and affinity entries removed because their backend left the set.
    pub purged: usize,
    /// Time spent writing to the kernel.
    pub duration: Duration,
}

/// (frontend, endpoint) pairs of UDP endpoints in `old` that `new` no longer has: the
/// kernel conntrack flows the rule-based data paths must delete, or a flow keeps
/// sending its datagrams to a removed endpoint.
pub fn removed_udp_endpoints(
    old: &DesiredState,
    new: &DesiredState,
) -> Vec<(SocketAddrV4, SocketAddrV4)> {
    let mut out = Vec::new();
    for (key, set) in &old.sets {
        let now: BTreeSet<_> = new
            .sets
            .get(key)
            .map(|s| s.endpoints.iter().map(|e| e.backend).collect())
            .unwrap_or_default();
        for ep in set
            .endpoints
            .iter()
            .filter(|e| e.backend.proto == Proto::Udp && !now.contains(&e.backend))
        {
            for fe in set.frontends.keys() {
                out.push((SocketAddrV4::new(fe.addr, fe.port), ep.backend.socket()));
            }
        }
    }
    out
}

/// A kernel data path the agent keeps equal to the desired state.
pub trait Dataplane {
    fn mode(&self) -> &'static str;
    /// Whether this data path serves host-scope frontends (what only the node's own
    /// clients reach: the eBPF socket programs, iptables' OUTPUT rules): only then are
    /// they planned for it.
    fn serves_host_scope(&self) -> bool {
        false
    }
    /// Make the kernel state equal to `desired` with minimal, make-before-break writes.
    /// Re-applying an unchanged state writes nothing.
    fn sync(&mut self, desired: &DesiredState) -> anyhow::Result<SyncReport>;

    /// Like [`Dataplane::sync`], told which sets may have changed since the last
    /// successful sync (None: unknown), so that it need not compare the others.
    fn sync_changed(
        &mut self,
        desired: &DesiredState,
        changed: Option<&BTreeSet<SetKey>>,
    ) -> anyhow::Result<SyncReport> {
        let _ = changed;
        self.sync(desired)
    }

    /// The interfaces the agent serves changed (pods come and go): the data path hooks
    /// the new ones. Rule-based data paths do not depend on interfaces.
    fn set_interfaces(&mut self, tc_ifaces: &[String]) -> anyhow::Result<()> {
        let _ = tc_ifaces;
        Ok(())
    }

    /// Called every second: work that waits on the kernel rather than on a change
    /// (IPVS deletes a drained real server once its connections end).
    fn housekeep(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The mode is chosen at start ([`select`]): the agent holds whichever it got.
impl<D: Dataplane + ?Sized> Dataplane for Box<D> {
    fn mode(&self) -> &'static str {
        (**self).mode()
    }
    fn serves_host_scope(&self) -> bool {
        (**self).serves_host_scope()
    }
    fn sync(&mut self, desired: &DesiredState) -> anyhow::Result<SyncReport> {
        (**self).sync(desired)
    }
    fn sync_changed(
        &mut self,
        desired: &DesiredState,
        changed: Option<&BTreeSet<SetKey>>,
    ) -> anyhow::Result<SyncReport> {
        (**self).sync_changed(desired, changed)
    }
    fn set_interfaces(&mut self, tc_ifaces: &[String]) -> anyhow::Result<()> {
        (**self).set_interfaces(tc_ifaces)
    }
    fn housekeep(&mut self) -> anyhow::Result<()> {
        (**self).housekeep()
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::Ipv4Addr};

    use super::*;
    use crate::model::{BackendAddr, BackendSet, Endpoint, Frontend, FrontendKind};

    fn set(proto: Proto, pods: &[u8]) -> BackendSet {
        BackendSet {
            endpoints: pods
                .iter()
                .map(|&n| Endpoint {
                    backend: BackendAddr {
                        addr: Ipv4Addr::new(198, 19, n, 2),
                        port: 53,
                        proto,
                    },
                    terminating: false,
                    local: false,
                })
                .collect(),
            frontends: BTreeMap::from([(
                Frontend {
                    addr: Ipv4Addr::new(198, 18, 0, 12),
                    port: 53,
                    proto,
                    scope: Default::default(),
                },
                FrontendKind::ClusterIp,
            )]),
            ..Default::default()
        }
    }

    #[test]
    fn removed_udp_endpoints_are_those_gone_from_their_set() {
        let state = |sets: Vec<(&str, BackendSet)>| DesiredState {
            sets: sets
                .into_iter()
                .map(|(k, s)| (SetKey(k.into()), s))
                .collect(),
        };
        let old = state(vec![
            ("a:dns/UDP", set(Proto::Udp, &[1, 2, 3])),
            ("a:dns/TCP", set(Proto::Tcp, &[1, 2])),
        ]);
        let new = state(vec![
            ("a:dns/UDP", set(Proto::Udp, &[1, 3])),
            ("a:dns/TCP", set(Proto::Tcp, &[1])),
        ]);
        let vip = "198.18.0.12:53".parse().unwrap();
        assert_eq!(
            removed_udp_endpoints(&old, &new),
            [(vip, "198.19.2.2:53".parse().unwrap())]
        );
        // A removed set takes all its UDP endpoints with it; TCP needs no purge.
        let gone = removed_udp_endpoints(&old, &DesiredState::default());
        assert_eq!(gone.len(), 3);
        assert!(removed_udp_endpoints(&new, &old).is_empty());
    }
}
