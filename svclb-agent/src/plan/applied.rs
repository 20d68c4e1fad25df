//! [`Applied`]: what the maps hold and which desired state they were compiled from, so
//! that a sync compiles and diffs only the backend sets that changed.
//!
//! Sets are compared with the last applied ones (a walk of two sorted maps, no
//! compilation); a changed set's old entries come from the image, its new ones from
//! compiling that set alone, and the delta between the two is the same one a full
//! compile and diff would give (unit-tested). Backends are shared between sets, so a
//! count of the sets that use each one decides when it may be deleted. After an
//! adoption or a failed write the applied state is unknown and the next sync is full.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use svclb_common::SlotKey;

use super::{
    diff::{Delta, apply_to_image, diff},
    ids::{IdAllocator, IdError},
    image::{MapImage, compile, service_key},
};
use crate::model::{BackendSet, DesiredState, SetKey};

pub struct Applied {
    image: MapImage,
    /// The sets the image was compiled from; None when unknown.
    sets: Option<BTreeMap<SetKey, BackendSet>>,
    /// Backend id → number of sets whose slots name it.
    refs: HashMap<u32, u32>,
}

/// A delta and what the maps hold once it is written.
pub struct Pending {
    pub delta: Delta,
    after: After,
}

enum After {
    /// A full compile: the whole target.
    Full(MapImage, BTreeMap<SetKey, BackendSet>),
    /// The changed sets (None: removed) and the backend reference changes.
    Sets(Vec<(SetKey, Option<BackendSet>)>, HashMap<u32, i64>),
}

impl Applied {
    /// What an earlier agent left in the maps.
    pub fn adopt(image: MapImage) -> Self {
        Applied {
            image,
            sets: None,
            refs: HashMap::new(),
        }
    }

    pub fn image(&self) -> &MapImage {
        &self.image
    }

    /// The delta that turns the maps into `desired`. `hint` lists the sets that may
    /// differ from the last committed ones (None: compare all). Nothing changes until
    /// [`Applied::commit`] says it was written.
    pub fn delta(
        &self,
        desired: &DesiredState,
        hint: Option<&BTreeSet<SetKey>>,
        ids: &mut IdAllocator,
    ) -> Result<Pending, IdError> {
        let Some(applied) = &self.sets else {
            let (target, fresh) = compile(desired, ids, &self.image)?;
            let delta = diff(&self.image, &target, &fresh);
            return Ok(Pending {
                delta,
                after: After::Full(target, desired.sets.clone()),
            });
        };
        let changed = match hint {
            Some(keys) => keys
                .iter()
                .filter(|k| applied.get(*k) != desired.sets.get(*k))
                .cloned()
                .collect(),
            None => changed_sets(applied, &desired.sets),
        };
        let mut old = MapImage::default();
        let mut new = DesiredState::default();
        for key in &changed {
            if let (Some(set), Some(svc_id)) = (applied.get(key), ids.set_id(key)) {
                self.extract(svc_id, set, &mut old);
            }
            if let Some(set) = desired.sets.get(key) {
                new.sets.insert(key.clone(), set.clone());
            }
        }
        let (new, fresh) = compile(&new, ids, &self.image)?;
        let mut delta = diff(&old, &new, &fresh);

        // Backends are shared: write one only if the maps lack it as it should be, and
        // delete one only when no set uses it any more.
        let mut ref_changes: HashMap<u32, i64> = HashMap::new();
        for svc_id in old.service_ids() {
            for b in old.members(svc_id) {
                *ref_changes.entry(b).or_default() -= 1;
            }
        }
        for svc_id in new.service_ids() {
            for b in new.members(svc_id) {
                *ref_changes.entry(b).or_default() += 1;
            }
        }
        delta
            .put_backends
            .retain(|(id, be)| self.image.backends.get(id) != Some(be));
        delta.del_backends.retain(|id| {
            let refs = i64::from(self.refs.get(id).copied().unwrap_or(0));
            refs + ref_changes.get(id).copied().unwrap_or(0) <= 0
        });
        let sets = changed
            .into_iter()
            .map(|k| {
                let set = desired.sets.get(&k).cloned();
                (k, set)
            })
            .collect();
        Ok(Pending {
            delta,
            after: After::Sets(sets, ref_changes),
        })
    }

    /// The entries of one applied set: its services, slots, name and backends.
    fn extract(&self, svc_id: u32, set: &BackendSet, into: &mut MapImage) {
        for fe in set.frontends.keys() {
            let key = service_key(fe);
            if let Some(v) = self.image.services.get(&key) {
                into.services.insert(key, *v);
            }
        }
        let range = SlotKey { svc_id, slot: 0 }..SlotKey {
            svc_id: svc_id + 1,
            slot: 0,
        };
        for (k, &b) in self.image.slots.range(range) {
            into.slots.insert(*k, b);
            if let Some(be) = self.image.backends.get(&b) {
                into.backends.insert(b, *be);
            }
        }
        if let Some(name) = self.image.names.get(&svc_id) {
            into.names.insert(svc_id, name.clone());
        }
    }

    /// The pending delta was written: the maps now hold its target.
    pub fn commit(&mut self, pending: Pending) {
        match pending.after {
            After::Full(image, sets) => {
                self.refs = refs_of(&image);
                self.image = image;
                self.sets = Some(sets);
            }
            After::Sets(changed, ref_changes) => {
                apply_to_image(&mut self.image, &pending.delta);
                for (id, change) in ref_changes {
                    let n = i64::from(self.refs.get(&id).copied().unwrap_or(0)) + change;
                    match u32::try_from(n) {
                        Ok(n) if n > 0 => {
                            self.refs.insert(id, n);
                        }
                        _ => {
                            self.refs.remove(&id);
                        }
                    }
                }
                let sets = self.sets.get_or_insert_default();
                for (key, set) in changed {
                    match set {
                        Some(set) => sets.insert(key, set),
                        None => sets.remove(&key),
                    };
                }
            }
        }
    }

    /// A write failed: the maps hold `image` (read back), compiled from nobody knows
    /// what; the next delta is computed in full.
    pub fn reset(&mut self, image: MapImage) {
        *self = Applied::adopt(image);
    }
}

/// Keys of the sets that differ between `old` and `new` (added, removed or changed),
/// sorted: a merge walk of the two sorted maps.
fn changed_sets(
    old: &BTreeMap<SetKey, BackendSet>,
    new: &BTreeMap<SetKey, BackendSet>,
) -> Vec<SetKey> {
    let mut out = Vec::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return out,
            (Some((ka, _)), None) => {
                out.push((*ka).clone());
                a.next();
            }
            (None, Some((kb, _))) => {
                out.push((*kb).clone());
                b.next();
            }
            (Some((ka, sa)), Some((kb, sb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.push((*ka).clone());
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((*kb).clone());
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if sa != sb {
                        out.push((*ka).clone());
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
}

/// Number of sets naming each backend in their slots.
fn refs_of(image: &MapImage) -> HashMap<u32, u32> {
    let mut refs = HashMap::new();
    let mut current = None;
    let mut seen = BTreeSet::new();
    for (k, &b) in &image.slots {
        if current != Some(k.svc_id) {
            current = Some(k.svc_id);
            seen.clear();
        }
        if seen.insert(b) {
            *refs.entry(b).or_default() += 1;
        }
    }
    refs
}
