//! Dataplane backends. They take a [`crate::model::DesiredState`] and know nothing of
//! Kubernetes objects.
use std::{collections::BTreeSet, time::Duration};

use crate::model::{DesiredState, SetKey};

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

/// A kernel data path the agent keeps equal to the desired state.
pub trait Dataplane {
    fn mode(&self) -> &'static str;
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
}

/// The mode is chosen at start ([`select`]): the agent holds whichever it got.
impl<D: Dataplane + ?Sized> Dataplane for Box<D> {
    fn mode(&self) -> &'static str {
        (**self).mode()
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
}
