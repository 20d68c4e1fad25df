//! Stable ids for backend sets and backends.
//!
//! Ids outlive a sync and an agent restart: a flow's conntrack entry and a client's
//! affinity entry name them, so reassigning an id would silently move traffic. They are
//! recovered from the maps on adoption ([`IdAllocator::adopt`]).
use std::collections::{BTreeMap, HashMap};

use svclb_common::MAX_SERVICE_IDS;

use crate::model::{BackendAddr, SetKey};

use super::image::MapImage;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("no free service id: all {max} are in use")]
    ServiceIdsExhausted { max: u32 },
    #[error("no free backend id")]
    BackendIdsExhausted,
}

#[derive(Debug, Default, Clone)]
pub struct IdAllocator {
    sets: HashMap<SetKey, u32>,
    /// Allocated set ids → their key (also the sorted set of ids in use).
    set_ids: BTreeMap<u32, SetKey>,
    backends: HashMap<BackendAddr, u32>,
    /// Allocated backend ids → their address.
    backend_ids: BTreeMap<u32, BackendAddr>,
    /// No set id below this is free (keeps allocation of N sets O(N log N)).
    set_hint: u32,
    /// Next backend id to try. Backend ids only grow (wrapping) so that an id freed in
    /// one sync is not handed to another endpoint while flows may still name it.
    next_backend: u32,
}

impl IdAllocator {
    /// Rebuild the allocation from what the maps hold (after an agent restart).
    pub fn adopt(image: &MapImage) -> Self {
        let mut ids = IdAllocator::default();
        for (&id, name) in &image.names {
            ids.sets.insert(SetKey(name.clone()), id);
            ids.set_ids.insert(id, SetKey(name.clone()));
        }
        for (&id, be) in &image.backends {
            if let Some(addr) = super::image::backend_addr(be) {
                ids.backends.insert(addr, id);
                ids.backend_ids.insert(id, addr);
            }
        }
        ids.next_backend = ids.backend_ids.keys().next_back().copied().unwrap_or(0);
        ids
    }

    pub fn set_id(&self, key: &SetKey) -> Option<u32> {
        self.sets.get(key).copied()
    }

    /// The id of `key`, allocating the lowest free one (service ids index the per-service
    /// stats array, so they must stay below `MAX_SERVICE_IDS`).
    pub fn set_id_or_alloc(&mut self, key: &SetKey) -> Result<(u32, bool), IdError> {
        if let Some(&id) = self.sets.get(key) {
            return Ok((id, false));
        }
        // Lowest free id: the first gap in the sorted used set, found from the hint.
        let mut id = self.set_hint.max(1);
        for &used in self.set_ids.range(id..).map(|(k, _)| k) {
            if used != id {
                break;
            }
            id += 1;
        }
        self.set_hint = id + 1;
        if id >= MAX_SERVICE_IDS {
            return Err(IdError::ServiceIdsExhausted {
                max: MAX_SERVICE_IDS - 1,
            });
        }
        self.sets.insert(key.clone(), id);
        self.set_ids.insert(id, key.clone());
        Ok((id, true))
    }

    pub fn backend_id_or_alloc(&mut self, addr: BackendAddr) -> Result<u32, IdError> {
        if let Some(&id) = self.backends.get(&addr) {
            return Ok(id);
        }
        let mut candidate = self.next_backend;
        for _ in 0..=self.backend_ids.len() {
            candidate = candidate.wrapping_add(1);
            if candidate == 0 {
                candidate = 1;
            }
            if !self.backend_ids.contains_key(&candidate) {
                self.backends.insert(addr, candidate);
                self.backend_ids.insert(candidate, addr);
                self.next_backend = candidate;
                return Ok(candidate);
            }
        }
        Err(IdError::BackendIdsExhausted)
    }

    /// Forget the given set and backend ids (they were deleted from the maps). O(freed).
    pub fn release(&mut self, set_ids: &[u32], backend_ids: &[u32]) {
        for id in set_ids {
            if let Some(key) = self.set_ids.remove(id) {
                self.sets.remove(&key);
                self.set_hint = self.set_hint.min(*id);
            }
        }
        for id in backend_ids {
            if let Some(addr) = self.backend_ids.remove(id) {
                self.backends.remove(&addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::Proto;

    fn be(n: u8) -> BackendAddr {
        BackendAddr {
            addr: Ipv4Addr::new(198, 19, n, 2),
            port: 80,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn set_ids_are_lowest_free_and_stable() {
        let mut ids = IdAllocator::default();
        let a = SetKey("a".into());
        let b = SetKey("b".into());
        let c = SetKey("c".into());
        assert_eq!(ids.set_id_or_alloc(&a), Ok((1, true)));
        assert_eq!(ids.set_id_or_alloc(&b), Ok((2, true)));
        assert_eq!(ids.set_id_or_alloc(&a), Ok((1, false)));
        ids.release(&[1], &[]);
        assert_eq!(ids.set_id_or_alloc(&c), Ok((1, true)));
        assert_eq!(ids.set_id(&b), Some(2));
    }

    #[test]
    fn backend_ids_are_not_reused_immediately() {
        let mut ids = IdAllocator::default();
        assert_eq!(ids.backend_id_or_alloc(be(1)), Ok(1));
        assert_eq!(ids.backend_id_or_alloc(be(2)), Ok(2));
        ids.release(&[], &[1]);
        // id 1 is free again, but a fresh endpoint gets 3: flows may still name 1.
        assert_eq!(ids.backend_id_or_alloc(be(3)), Ok(3));
        assert_eq!(ids.backend_id_or_alloc(be(2)), Ok(2));
    }
}
