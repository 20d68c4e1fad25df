//! The `loadBalancerSourceRanges` allow-lists (`MAP_SRC_RANGES`, an LPM trie keyed by
//! service id + source prefix). Kept next to the main map image: prefixes are added
//! before the frontends that check them are written and removed after, so a
//! LoadBalancer never drops an allowed client during a sync.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use anyhow::{Context as _, Result};
use aya::maps::{
    MapData,
    lpm_trie::{Key, LpmTrie},
};
use svclb_common::{MAP_SRC_RANGES, SrcRangeKey};

use super::maps::MapSource;
use crate::{
    model::{DesiredState, SetKey},
    plan::ids::IdAllocator,
};

/// (service id, prefix address, prefix length).
pub type Range = (u32, Ipv4Addr, u8);

pub struct SrcRanges {
    map: LpmTrie<MapData, SrcRangeKey, u8>,
    /// What the map holds.
    held: BTreeSet<Range>,
    /// The prefixes of each set that has some, as last asked for.
    by_set: BTreeMap<SetKey, BTreeSet<Range>>,
}

fn key(&(svc_id, addr, len): &Range) -> Key<SrcRangeKey> {
    Key::new(
        32 + u32::from(len),
        SrcRangeKey {
            svc_id,
            addr_be: u32::from(addr).to_be(),
        },
    )
}

impl SrcRanges {
    /// Opens the map and reads what an earlier agent left in it.
    pub fn open(mut src: impl MapSource) -> Result<Self> {
        let map: LpmTrie<MapData, SrcRangeKey, u8> = LpmTrie::try_from(src.take(MAP_SRC_RANGES)?)
            .with_context(|| {
            format!("map {MAP_SRC_RANGES} has an unexpected type or layout")
        })?;
        let mut held = BTreeSet::new();
        for k in map.keys() {
            let k = k.with_context(|| format!("reading {MAP_SRC_RANGES}"))?;
            let data = k.data();
            let len = k.prefix_len().saturating_sub(32) as u8;
            held.insert((data.svc_id, Ipv4Addr::from(u32::from_be(data.addr_be)), len));
        }
        Ok(SrcRanges {
            map,
            held,
            by_set: BTreeMap::new(),
        })
    }

    /// The prefixes `desired` asks for, under the ids its sets have in `ids`. With
    /// `changed` (the sets that differ from the last call's `desired`) only those are
    /// looked at; without it, every set.
    pub fn wanted(
        &mut self,
        desired: &DesiredState,
        changed: Option<&BTreeSet<SetKey>>,
        ids: &IdAllocator,
    ) -> BTreeSet<Range> {
        let ranges_of = |key: &SetKey| -> Option<BTreeSet<Range>> {
            let ranges = desired.sets.get(key)?.source_ranges.as_ref()?;
            let id = ids.set_id(key)?;
            Some(ranges.iter().map(|&(addr, len)| (id, addr, len)).collect())
        };
        match changed {
            Some(keys) => {
                for key in keys {
                    match ranges_of(key) {
                        Some(r) => self.by_set.insert(key.clone(), r),
                        None => self.by_set.remove(key),
                    };
                }
            }
            None => {
                self.by_set = desired
                    .sets
                    .iter()
                    .filter(|(_, set)| set.source_ranges.is_some())
                    .filter_map(|(key, _)| Some((key.clone(), ranges_of(key)?)))
                    .collect();
            }
        }
        self.by_set.values().flatten().copied().collect()
    }

    /// Inserts the prefixes of `wanted` the map lacks.
    pub fn add(&mut self, wanted: &BTreeSet<Range>) -> Result<usize> {
        let missing: Vec<Range> = wanted.difference(&self.held).copied().collect();
        for r in &missing {
            self.map.insert(&key(r), 0, 0).with_context(|| {
                format!("adding source range {}/{} of service id {}", r.1, r.2, r.0)
            })?;
            self.held.insert(*r);
        }
        Ok(missing.len())
    }

    /// Removes the prefixes not in `wanted`.
    pub fn remove_stale(&mut self, wanted: &BTreeSet<Range>) -> Result<usize> {
        let stale: Vec<Range> = self.held.difference(wanted).copied().collect();
        for r in &stale {
            match self.map.remove(&key(r)) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "removing source range {}/{} of service id {}",
                            r.1, r.2, r.0
                        )
                    });
                }
            }
            self.held.remove(r);
        }
        Ok(stale.len())
    }
}
