//! The delta between two [`MapImage`]s, ordered make-before-break.
//!
//! Apply the fields in declaration order: everything a packet could reach through a
//! new pointer exists before the pointer is written (backends before slots before the
//! service entry that counts them), and nothing is deleted while something live may
//! still point at it (service entries first, backends last). Each single map update
//! is atomic, so at every instant a packet sees either the old or the new choice for a
//! slot, and every slot below the count it read names an existing backend.
use std::collections::BTreeSet;

use svclb_common::{Backend, ServiceKey, ServiceValue, SlotKey};

use super::image::MapImage;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub put_backends: Vec<(u32, Backend)>,
    pub put_names: Vec<(u32, String)>,
    /// Freshly allocated service ids whose per-service counters must start at zero.
    pub reset_stats: Vec<u32>,
    pub put_slots: Vec<(SlotKey, u32)>,
    pub put_services: Vec<(ServiceKey, ServiceValue)>,
    pub del_services: Vec<ServiceKey>,
    pub del_slots: Vec<SlotKey>,
    pub del_names: Vec<u32>,
    pub del_backends: Vec<u32>,
    /// (service id, backend id) pairs that stopped being members: their UDP conntrack
    /// and affinity entries are purged so no new datagram goes to a removed backend.
    pub purge: Vec<(u32, u32)>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.writes() == 0 && self.purge.is_empty() && self.reset_stats.is_empty()
    }

    /// Number of map updates and deletions (excluding purges).
    pub fn writes(&self) -> usize {
        self.put_backends.len()
            + self.put_names.len()
            + self.put_slots.len()
            + self.put_services.len()
            + self.del_services.len()
            + self.del_slots.len()
            + self.del_names.len()
            + self.del_backends.len()
    }
}

/// What to write to turn `current` into `target`. `fresh_ids` are service ids allocated
/// for this target (their stats are reset).
pub fn diff(current: &MapImage, target: &MapImage, fresh_ids: &BTreeSet<u32>) -> Delta {
    let mut d = Delta {
        reset_stats: fresh_ids.iter().copied().collect(),
        ..Delta::default()
    };
    for (id, be) in &target.backends {
        if current.backends.get(id) != Some(be) {
            d.put_backends.push((*id, *be));
        }
    }
    for (id, name) in &target.names {
        if current.names.get(id) != Some(name) {
            d.put_names.push((*id, name.clone()));
        }
    }
    for (k, b) in &target.slots {
        if current.slots.get(k) != Some(b) {
            d.put_slots.push((*k, *b));
        }
    }
    for (k, v) in &target.services {
        if current.services.get(k) != Some(v) {
            d.put_services.push((*k, *v));
        }
    }
    d.del_services = current
        .services
        .keys()
        .filter(|k| !target.services.contains_key(k))
        .copied()
        .collect();
    d.del_slots = current
        .slots
        .keys()
        .filter(|k| !target.slots.contains_key(k))
        .copied()
        .collect();
    d.del_names = current
        .names
        .keys()
        .filter(|k| !target.names.contains_key(k))
        .copied()
        .collect();
    d.del_backends = current
        .backends
        .keys()
        .filter(|k| !target.backends.contains_key(k))
        .copied()
        .collect();

    for svc_id in current.service_ids() {
        let before = current.members(svc_id);
        if before.is_empty() {
            continue;
        }
        let after = target.members(svc_id);
        d.purge
            .extend(before.difference(&after).map(|&b| (svc_id, b)));
    }
    d
}

/// `current` after `delta` was applied: what the maps hold then.
pub fn apply_to_image(current: &mut MapImage, delta: &Delta) {
    for (id, be) in &delta.put_backends {
        current.backends.insert(*id, *be);
    }
    for (id, n) in &delta.put_names {
        current.names.insert(*id, n.clone());
    }
    for (k, b) in &delta.put_slots {
        current.slots.insert(*k, *b);
    }
    for (k, v) in &delta.put_services {
        current.services.insert(*k, *v);
    }
    for k in &delta.del_services {
        current.services.remove(k);
    }
    for k in &delta.del_slots {
        current.slots.remove(k);
    }
    for k in &delta.del_names {
        current.names.remove(k);
    }
    for k in &delta.del_backends {
        current.backends.remove(k);
    }
}
