//! iptables mode: the rules kube-proxy's iptables mode writes, for nodes that cannot
//! load BPF programs. Rules are generated purely ([`rules`]), diffed per chain against
//! what was applied ([`restore`]) and written with `iptables-restore --noflush`, so a
//! sync rewrites only the chains that changed.
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use tracing::{debug, info, warn};

pub mod dump;
pub mod exec;
pub mod names;
pub mod restore;
pub mod rules;
#[cfg(test)]
mod tests;

pub use self::exec::Backend;
use self::{
    dump::{Saved, parse_save},
    restore::{Applied, delete_all, payload},
    rules::{RuleOptions, SERVICES, Table, generate_with, is_ours},
};
use super::{Dataplane, SyncReport};
use crate::model::DesiredState;

/// `--iptables-backend`: which implementation to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// The one that already holds our rules, else nft, else legacy.
    Auto,
    Nft,
    Legacy,
}

impl BackendArg {
    pub fn resolve(self) -> Result<Backend> {
        let want = match self {
            BackendArg::Nft => Some(Backend::Nft),
            BackendArg::Legacy => Some(Backend::Legacy),
            BackendArg::Auto => None,
        };
        if let Some(b) = want {
            if !b.available() {
                bail!(
                    "iptables-{} does not run here (is the iptables package installed?)",
                    b.as_str()
                );
            }
            return Ok(b);
        }
        let usable: Vec<Backend> = Backend::ALL.into_iter().filter(|b| b.available()).collect();
        if let Some(b) = usable.iter().copied().find(|b| holds_ours(*b)) {
            return Ok(b);
        }
        usable.first().copied().context(
            "neither iptables-nft nor iptables-legacy runs here (install the iptables package)",
        )
    }
}

/// Whether `backend` holds our nat KUBE-SERVICES chain.
pub fn holds_ours(backend: Backend) -> bool {
    backend
        .save(Table::Nat, false)
        .is_ok_and(|t| t.lines().any(|l| l.starts_with(&format!(":{SERVICES} "))))
}

/// Both tables of `backend`, parsed.
pub fn read(backend: Backend, counters: bool) -> Result<Saved> {
    let mut saved = Saved::new();
    for table in [Table::Filter, Table::Nat] {
        parse_save(&backend.save(table, counters)?, &mut saved);
    }
    Ok(saved)
}

pub struct IptablesDataplane {
    backend: Backend,
    applied: Applied,
    jumps_ok: bool,
    opts: RuleOptions,
    /// The last synced state, to find UDP endpoints that left (their flows are purged).
    last: DesiredState,
}

impl IptablesDataplane {
    /// Adopts the chains of ours already there (their content is rewritten on the
    /// first sync; nothing is flushed before, so traffic keeps flowing meanwhile).
    pub fn start(
        backend: Backend,
        opts: RuleOptions,
        proc_sys: &crate::sysctl::ProcSys,
    ) -> Result<Self> {
        let saved = read(backend, false).with_context(|| {
            format!("reading the rules with iptables-{}-save", backend.as_str())
        })?;
        let applied: Applied = saved
            .keys()
            .filter(|(t, c)| is_ours(*t, c))
            .map(|k| (k.clone(), None))
            .collect();
        if !applied.is_empty() {
            info!(
                chains = applied.len(),
                "found chains of an earlier run; the first sync rewrites them"
            );
        }
        for other in Backend::ALL.into_iter().filter(|b| *b != backend) {
            if other.available() && holds_ours(other) {
                warn!(
                    backend = other.as_str(),
                    "rules of ours in the other iptables backend; removing them"
                );
                remove_rules(other)?;
            }
        }
        if opts.localhost_node_ports {
            proc_sys.route_localnet_for_node_ports();
        }
        Ok(IptablesDataplane {
            backend,
            applied,
            jumps_ok: false,
            opts,
            last: DesiredState::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn purge_udp(&self, desired: &DesiredState) -> usize {
        exec::purge_removed_udp(&self.last, desired)
    }
}

impl Dataplane for IptablesDataplane {
    fn mode(&self) -> &'static str {
        "iptables"
    }
    fn serves_host_scope(&self) -> bool {
        true
    }

    fn sync(&mut self, desired: &DesiredState) -> Result<SyncReport> {
        let chains = generate_with(desired, self.opts)?;
        let start = Instant::now();
        let mut writes = 0;
        if let Some((text, count)) = payload(&chains, &self.applied) {
            if let Err(e) = self.backend.restore(&text) {
                // What the kernel holds is unknown now: re-read which chains exist so the
                // retry rewrites all of them.
                if let Ok(saved) = read(self.backend, false) {
                    self.applied = saved
                        .keys()
                        .filter(|(t, c)| is_ours(*t, c))
                        .map(|k| (k.clone(), None))
                        .collect();
                }
                return Err(e);
            }
            self.applied = chains.into_iter().map(|(k, v)| (k, Some(v))).collect();
            writes = count;
            debug!(chains = count, "iptables-restore applied");
        }
        if !self.jumps_ok {
            writes += self.backend.ensure_jumps()?;
            self.jumps_ok = true;
        }
        let purged = self.purge_udp(desired);
        self.last = desired.clone();
        Ok(SyncReport {
            writes,
            purged,
            duration: start.elapsed(),
        })
    }
}

/// Removes every rule and chain of ours from `backend`: jumps first, then the chains.
pub fn remove_rules(backend: Backend) -> Result<()> {
    backend.remove_jumps()?;
    let saved = read(backend, false)?;
    let ours: Vec<(Table, String)> = saved
        .keys()
        .filter(|(t, c)| is_ours(*t, c))
        .cloned()
        .collect();
    if !ours.is_empty() {
        backend.restore(&delete_all(&ours))?;
        info!(
            backend = backend.as_str(),
            chains = ours.len(),
            "removed iptables chains"
        );
    }
    Ok(())
}

/// Removes our rules from every iptables backend that holds some (cleanup, switching to
/// another mode). A missing iptables tool means there is nothing of ours to remove.
pub fn cleanup() -> Result<()> {
    for b in Backend::ALL {
        if b.available() && holds_ours(b) {
            remove_rules(b)?;
        }
    }
    Ok(())
}
