//! Typed handles on the svclb maps, opened from a freshly loaded object or from the
//! pins alone (dump, cleanup), and the reads and writes the syncer needs.
use std::collections::BTreeSet;

use anyhow::{Context as _, Result, bail};
use aya::maps::{Array, HashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray};
use svclb_common::{
    AffinityKey, AffinityValue, Backend, COUNTER_COUNT, Config, CtKey, CtValue, IfaceInfo,
    MAP_AFFINITY, MAP_BACKENDS, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_IFACES, MAP_SERVICES,
    MAP_SLOTS, MAP_SOCK_REVNAT, MAP_SVC_NAMES, MAP_SVC_STATS, PROTO_UDP, ServiceKey, ServiceValue,
    SlotKey, SockRevKey, SockRevValue, SvcName, SvcStats,
};

use super::{batch, pins::PinLayout};
use crate::plan::{
    diff::Delta,
    image::{MapImage, svc_name, svc_name_str},
};

pub struct Maps {
    pub services: HashMap<MapData, ServiceKey, ServiceValue>,
    pub slots: HashMap<MapData, SlotKey, u32>,
    pub backends: HashMap<MapData, u32, Backend>,
    pub conntrack: HashMap<MapData, CtKey, CtValue>,
    pub affinity: HashMap<MapData, AffinityKey, AffinityValue>,
    pub counters: PerCpuArray<MapData, u64>,
    pub svc_stats: PerCpuArray<MapData, SvcStats>,
    pub config: Array<MapData, Config>,
    pub names: HashMap<MapData, u32, SvcName>,
    pub ifaces: HashMap<MapData, u32, IfaceInfo>,
    pub sock_revnat: HashMap<MapData, SockRevKey, SockRevValue>,
}

/// Where a map comes from.
pub trait MapSource {
    fn take(&mut self, name: &str) -> Result<Map>;
}

impl MapSource for &mut aya::Ebpf {
    fn take(&mut self, name: &str) -> Result<Map> {
        self.take_map(name)
            .with_context(|| format!("the eBPF object has no map {name}"))
    }
}

impl MapSource for &PinLayout {
    fn take(&mut self, name: &str) -> Result<Map> {
        let path = self.map(name);
        let data = MapData::from_pin(&path).with_context(|| {
            format!(
                "cannot open pinned map {} (is the agent installed? see `svclb-agent run`)",
                path.display()
            )
        })?;
        Ok(Map::from_map_data(data)?)
    }
}

fn typed<T: TryFrom<Map, Error = MapError>>(src: &mut impl MapSource, name: &str) -> Result<T> {
    let map = src.take(name)?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type or layout"))
}

impl Maps {
    pub fn open(mut src: impl MapSource) -> Result<Self> {
        Ok(Maps {
            services: typed(&mut src, MAP_SERVICES)?,
            slots: typed(&mut src, MAP_SLOTS)?,
            backends: typed(&mut src, MAP_BACKENDS)?,
            conntrack: typed(&mut src, MAP_CONNTRACK)?,
            affinity: typed(&mut src, MAP_AFFINITY)?,
            counters: typed(&mut src, MAP_COUNTERS)?,
            svc_stats: typed(&mut src, MAP_SVC_STATS)?,
            config: typed(&mut src, MAP_CONFIG)?,
            names: typed(&mut src, MAP_SVC_NAMES)?,
            ifaces: typed(&mut src, MAP_IFACES)?,
            sock_revnat: typed(&mut src, MAP_SOCK_REVNAT)?,
        })
    }

    /// Everything the syncer owns, read back from the kernel.
    pub fn read_image(&self) -> Result<MapImage> {
        let mut image = MapImage::default();
        for kv in self.services.iter() {
            let (k, v) = kv.context("reading the services map")?;
            image.services.insert(k, v);
        }
        for kv in self.slots.iter() {
            let (k, v) = kv.context("reading the slots map")?;
            image.slots.insert(k, v);
        }
        for kv in self.backends.iter() {
            let (k, v) = kv.context("reading the backends map")?;
            image.backends.insert(k, v);
        }
        for kv in self.names.iter() {
            let (k, v) = kv.context("reading the service names map")?;
            image.names.insert(k, svc_name_str(&v));
        }
        Ok(image)
    }

    /// Write `delta` in make-before-break order (see [`crate::plan::diff`]), each step
    /// as batches.
    pub fn write(&mut self, delta: &Delta) -> Result<()> {
        batch::update(self.backends.map(), &delta.put_backends).context("writing backends")?;
        let names: Vec<(u32, SvcName)> = delta
            .put_names
            .iter()
            .map(|(id, n)| (*id, svc_name(n)))
            .collect();
        batch::update(self.names.map(), &names).context("writing service names")?;
        if !delta.reset_stats.is_empty() {
            let cpus = aya::util::nr_cpus()
                .map_err(|(_, e)| e)
                .context("counting CPUs")?;
            batch::zero_percpu(
                self.svc_stats.map(),
                &delta.reset_stats,
                size_of::<SvcStats>(),
                cpus,
            )
            .context("resetting per-service stats")?;
        }
        batch::update(self.slots.map(), &delta.put_slots).context("writing backend slots")?;
        batch::update(self.services.map(), &delta.put_services).context("writing frontends")?;
        batch::delete(self.services.map(), &delta.del_services).context("deleting frontends")?;
        batch::delete(self.slots.map(), &delta.del_slots).context("deleting backend slots")?;
        batch::delete(self.names.map(), &delta.del_names).context("deleting service names")?;
        batch::delete(self.backends.map(), &delta.del_backends).context("deleting backends")?;
        Ok(())
    }

    /// Remove UDP flows and affinity entries of (service, backend) pairs that ended.
    /// TCP flows stay: an established connection keeps its backend until it closes.
    /// `udp_pairs` are the pairs whose backend is UDP: only they have flows to purge, so a
    /// TCP-only change never walks the (possibly large) flow table.
    pub fn purge(&mut self, udp_pairs: &[(u32, u32)], all_pairs: &[(u32, u32)]) -> Result<usize> {
        let mut ct_victims = Vec::new();
        if !udp_pairs.is_empty() {
            let pairs: BTreeSet<(u32, u32)> = udp_pairs.iter().copied().collect();
            for kv in self.conntrack.iter() {
                // An LRU map may drop entries while we walk it: skip what vanished.
                let Ok((k, v)) = kv else { continue };
                if k.proto == PROTO_UDP && pairs.contains(&(v.svc_id, v.backend_id)) {
                    ct_victims.push(k);
                }
            }
        }
        // Affinity entries exist only for Services with ClientIP affinity: usually none.
        let mut aff_victims = Vec::new();
        if !all_pairs.is_empty() && self.affinity.keys().next().is_some() {
            let pairs: BTreeSet<(u32, u32)> = all_pairs.iter().copied().collect();
            for kv in self.affinity.iter() {
                let Ok((k, v)) = kv else { continue };
                if pairs.contains(&(k.svc_id, v.backend_id)) {
                    aff_victims.push(k);
                }
            }
        }
        let mut n = 0;
        for k in &ct_victims {
            n += usize::from(remove_existing(&mut self.conntrack, k)?);
        }
        for k in &aff_victims {
            n += usize::from(remove_existing(&mut self.affinity, k)?);
        }
        Ok(n)
    }

    /// Make the interface table hold exactly `ifaces` (ifindex → info).
    pub fn set_ifaces(&mut self, ifaces: &[(u32, IfaceInfo)]) -> Result<()> {
        let stale: Vec<u32> = self
            .ifaces
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !ifaces.iter().any(|(i, _)| i == k))
            .collect();
        for k in &stale {
            remove_existing(&mut self.ifaces, k)?;
        }
        for (idx, info) in ifaces {
            self.ifaces
                .insert(idx, info, 0)
                .with_context(|| format!("writing interface {idx}"))?;
        }
        Ok(())
    }

    /// The config slot (zeros in a new map).
    pub fn config(&self) -> Result<Config> {
        self.config.get(&0, 0).context("reading the config map")
    }

    pub fn set_config(&mut self, cfg: Config) -> Result<()> {
        self.config.set(0, cfg, 0).context("writing the config map")
    }

    /// Counters summed over CPUs, indexed like `COUNTER_NAMES`.
    pub fn counters(&self) -> Result<Vec<u64>> {
        (0..COUNTER_COUNT)
            .map(|i| Ok(self.counters.get(&i, 0)?.iter().sum()))
            .collect()
    }

    pub fn svc_stats(&self, svc_id: u32) -> Result<SvcStats> {
        let per_cpu = self.svc_stats.get(&svc_id, 0)?;
        Ok(per_cpu.iter().fold(SvcStats::default(), |a, s| SvcStats {
            packets: a.packets + s.packets,
            bytes: a.bytes + s.bytes,
        }))
    }

    /// Conntrack entries (LRU: they age out by pressure, not time).
    pub fn conntrack_entries(&self) -> Vec<(CtKey, CtValue)> {
        self.conntrack.iter().filter_map(|kv| kv.ok()).collect()
    }
}

/// Delete `key`; a key that is already gone is fine (returns false).
fn remove_existing<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
) -> Result<bool> {
    match map.remove(key) {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => bail!(e),
    }
}
