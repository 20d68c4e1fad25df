//! [`MapImage`]: the exact contents of the BPF maps the agent owns, as plain Rust.
//!
//! The desired state is compiled into an image; the current maps are read into an
//! image; the delta between two images is what gets written.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use svclb_common::{
    BE_F_LOCAL, BE_F_TERMINATING, Backend, SVC_F_AFFINITY, SVC_F_LOCAL, SVC_F_MAGLEV, SVC_NAME_LEN,
    ServiceKey, ServiceValue, SlotKey, SvcName,
};

use super::{
    ids::{IdAllocator, IdError},
    maglev,
};
use crate::model::{BackendAddr, DesiredState, Frontend, Proto, Scope};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapImage {
    pub services: BTreeMap<ServiceKey, ServiceValue>,
    pub slots: BTreeMap<SlotKey, u32>,
    pub backends: BTreeMap<u32, Backend>,
    /// Service id → set key (the SVC_NAMES map).
    pub names: BTreeMap<u32, String>,
}

impl MapImage {
    /// Backend ids in slots `0..count` of `svc_id`: who may receive new flows.
    pub fn members(&self, svc_id: u32) -> BTreeSet<u32> {
        let range = SlotKey { svc_id, slot: 0 }..SlotKey {
            svc_id: svc_id + 1,
            slot: 0,
        };
        self.slots.range(range).map(|(_, &b)| b).collect()
    }

    pub fn service_ids(&self) -> BTreeSet<u32> {
        self.services
            .values()
            .map(|v| v.svc_id)
            .chain(self.names.keys().copied())
            .collect()
    }
}

pub fn service_key(fe: &Frontend) -> ServiceKey {
    ServiceKey {
        addr_be: u32::from(fe.addr).to_be(),
        port_be: fe.port.to_be(),
        proto: fe.proto.number(),
        scope: fe.scope.code(),
    }
}

pub fn frontend(key: &ServiceKey) -> Option<Frontend> {
    Some(Frontend {
        addr: Ipv4Addr::from(u32::from_be(key.addr_be)),
        port: u16::from_be(key.port_be),
        proto: Proto::from_number(key.proto)?,
        scope: Scope::from_code(key.scope)?,
    })
}

pub fn backend_addr(be: &Backend) -> Option<BackendAddr> {
    Some(BackendAddr {
        addr: Ipv4Addr::from(u32::from_be(be.addr_be)),
        port: u16::from_be(be.port_be),
        proto: Proto::from_number(be.proto)?,
    })
}

pub fn svc_name(name: &str) -> SvcName {
    let mut out = SvcName {
        name: [0; SVC_NAME_LEN],
    };
    // Truncate on a char boundary; names are ASCII in practice (DNS labels).
    let mut end = name.len().min(SVC_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out.name[..end].copy_from_slice(&name.as_bytes()[..end]);
    out
}

pub fn svc_name_str(name: &SvcName) -> String {
    let end = name
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(SVC_NAME_LEN);
    String::from_utf8_lossy(&name.name[..end]).into_owned()
}

/// Compile the desired state into the map contents, allocating ids as needed.
/// Returns the image and the ids of sets that were allocated by this call.
/// `current` (what the maps hold) only supplies the Maglev table sizes in use.
pub fn compile(
    desired: &DesiredState,
    ids: &mut IdAllocator,
    current: &MapImage,
) -> Result<(MapImage, BTreeSet<u32>), IdError> {
    let mut image = MapImage::default();
    let mut fresh = BTreeSet::new();
    for (key, set) in &desired.sets {
        let (svc_id, new) = ids.set_id_or_alloc(key)?;
        if new {
            fresh.insert(svc_id);
        }
        image
            .names
            .insert(svc_id, key.0.chars().take(SVC_NAME_LEN).collect());
        let mut ids_in_order = Vec::with_capacity(set.endpoints.len());
        for ep in &set.endpoints {
            let backend_id = ids.backend_id_or_alloc(ep.backend)?;
            let mut flags = 0;
            if ep.terminating {
                flags |= BE_F_TERMINATING;
            }
            if ep.local {
                flags |= BE_F_LOCAL;
            }
            image.backends.insert(
                backend_id,
                Backend {
                    addr_be: u32::from(ep.backend.addr).to_be(),
                    port_be: ep.backend.port.to_be(),
                    proto: ep.backend.proto.number(),
                    flags,
                },
            );
            ids_in_order.push(backend_id);
        }
        // Maglev: the slots hold the lookup table (the data path indexes it by flow
        // hash); otherwise one slot per endpoint, picked at random.
        let table = if set.maglev {
            let addrs: Vec<_> = set
                .endpoints
                .iter()
                .map(|e| (e.backend.addr, e.backend.port))
                .collect();
            let prev = set
                .frontends
                .keys()
                .next()
                .and_then(|fe| current.services.get(&service_key(fe)));
            let prev = prev.filter(|v| v.svc_id == svc_id && v.flags & SVC_F_MAGLEV != 0);
            let t = maglev::table(&addrs, prev.map(|v| u32::from(v.backend_count)));
            if t.is_none() && addrs.len() > maglev::MAX_BACKENDS {
                tracing::warn!(set = %key, endpoints = addrs.len(), max = maglev::MAX_BACKENDS, "too many endpoints for a Maglev table; using random selection");
            }
            t
        } else {
            None
        };
        let slots: Vec<u32> = match &table {
            Some(t) => t.iter().map(|&i| ids_in_order[i as usize]).collect(),
            None => ids_in_order,
        };
        for (slot, backend_id) in slots.iter().enumerate() {
            image.slots.insert(
                SlotKey {
                    svc_id,
                    slot: slot as u32,
                },
                *backend_id,
            );
        }
        let mut flags = 0;
        if set.affinity_timeout_s.is_some() {
            flags |= SVC_F_AFFINITY;
        }
        if set.local_policy {
            flags |= SVC_F_LOCAL;
        }
        if table.is_some() {
            flags |= SVC_F_MAGLEV;
        }
        for (fe, kind) in &set.frontends {
            image.services.insert(
                service_key(fe),
                ServiceValue {
                    svc_id,
                    // The planner rejects sets larger than MAX_BACKENDS_PER_SERVICE and
                    // Maglev tables are at most maglev::MAX_TABLE entries.
                    backend_count: u16::try_from(slots.len()).unwrap_or(u16::MAX),
                    flags: flags | super::policy_flags::extra(set, *kind),
                    affinity_timeout_s: set.affinity_timeout_s.unwrap_or(0),
                    kind: kind.code(),
                    _pad: [0; 3],
                },
            );
        }
    }
    Ok((image, fresh))
}
