//! `svclb-agent dump --flow SRC:PORT-DST:PORT/PROTO`: which backend a flow gets and why,
//! worked out from the pinned maps the way the data path (svclb-ebpf `lb.rs`) decides:
//! the flow's conntrack entry (either direction), then the frontend, then (for a new flow) the client's
//! session-affinity entry, then a Maglev slot (the same hash as the data path, so the
//! answer is exact) or a uniformly random slot (the candidates are listed with their
//! odds). Read-only: nothing is run on a packet, so no conntrack or affinity state is
//! created.
use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    str::FromStr,
};

use anyhow::Result;
use aya::{
    Pod,
    maps::{HashMap, MapData, MapError},
};
use serde::Serialize;
use svclb_common::{
    AffinityKey, AffinityValue, BE_F_TERMINATING, Backend, CT_DIR_FORWARD, CT_DIR_REPLY,
    CT_F_CLOSING, CT_F_SNAT, CtKey, CtValue, SCOPE_HOST, SCOPE_PACKET, SVC_F_AFFINITY,
    SVC_F_MAGLEV, ServiceKey, ServiceValue, SlotKey, SockRevKey, SockRevValue, flow_hash,
};

use crate::{
    dataplane::ebpf::{maps::Maps, pins::PinLayout},
    model::{FrontendKind, Proto},
    plan::image::{backend_addr, svc_name_str},
};

/// A flow as it arrives at the node: client → frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSpec {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub proto: Proto,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "flow {input:?}: {reason} (expected SRC:PORT-DST:PORT/PROTO, e.g. 198.19.4.2:40000-198.18.0.10:80/tcp)"
)]
pub struct FlowParseError {
    input: String,
    reason: String,
}

impl FromStr for FlowSpec {
    type Err = FlowParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| FlowParseError {
            input: s.to_owned(),
            reason,
        };
        let (tuple, proto) = s.rsplit_once('/').ok_or_else(|| err("no /PROTO".into()))?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => return Err(err(format!("protocol {other:?} is not tcp or udp"))),
        };
        let (src, dst) = tuple
            .split_once('-')
            .ok_or_else(|| err("no - between source and destination".into()))?;
        let src: SocketAddrV4 = src
            .parse()
            .map_err(|e| err(format!("source {src:?}: {e}")))?;
        let dst: SocketAddrV4 = dst
            .parse()
            .map_err(|e| err(format!("destination {dst:?}: {e}")))?;
        Ok(FlowSpec { src, dst, proto })
    }
}

impl fmt::Display for FlowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}/{}", self.src, self.dst, self.proto)
    }
}

impl FlowSpec {
    /// The fields as the data path reads them from the packet (network byte order).
    fn wire(&self) -> (u32, u32, u16, u16, u8) {
        (
            u32::from_ne_bytes(self.src.ip().octets()),
            u32::from_ne_bytes(self.dst.ip().octets()),
            u16::from_ne_bytes(self.src.port().to_be_bytes()),
            u16::from_ne_bytes(self.dst.port().to_be_bytes()),
            self.proto.number(),
        )
    }

    fn ct_key(&self) -> CtKey {
        let (saddr_be, daddr_be, sport_be, dport_be, proto) = self.wire();
        CtKey::new(saddr_be, daddr_be, sport_be, dport_be, proto)
    }

    /// The Maglev hash the data path computes for this flow.
    pub fn hash(&self) -> u32 {
        let (s, d, sp, dp, p) = self.wire();
        flow_hash(s, d, sp, dp, p)
    }
}

/// The map lookups the decision needs (the pinned maps, or a fixture in tests).
pub trait FlowMaps {
    fn service(&self, k: &ServiceKey) -> Result<Option<ServiceValue>>;
    fn slot(&self, k: &SlotKey) -> Result<Option<u32>>;
    fn backend(&self, id: u32) -> Result<Option<Backend>>;
    fn conntrack(&self, k: &CtKey) -> Result<Option<CtValue>>;
    fn affinity(&self, k: &AffinityKey) -> Result<Option<AffinityValue>>;
    fn name(&self, svc_id: u32) -> Result<Option<String>>;
    /// What the socket programs recorded for a node-local socket.
    fn sock_revnat(&self, _k: &SockRevKey) -> Result<Option<SockRevValue>> {
        Ok(None)
    }
}

fn get<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>, key: &K) -> Result<Option<V>> {
    match map.get(key, 0) {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl FlowMaps for Maps {
    fn service(&self, k: &ServiceKey) -> Result<Option<ServiceValue>> {
        get(&self.services, k)
    }
    fn slot(&self, k: &SlotKey) -> Result<Option<u32>> {
        get(&self.slots, k)
    }
    fn backend(&self, id: u32) -> Result<Option<Backend>> {
        get(&self.backends, &id)
    }
    fn conntrack(&self, k: &CtKey) -> Result<Option<CtValue>> {
        get(&self.conntrack, k)
    }
    fn affinity(&self, k: &AffinityKey) -> Result<Option<AffinityValue>> {
        get(&self.affinity, k)
    }
    fn name(&self, svc_id: u32) -> Result<Option<String>> {
        Ok(get(&self.names, &svc_id)?.map(|n| svc_name_str(&n)))
    }
    fn sock_revnat(&self, k: &SockRevKey) -> Result<Option<SockRevValue>> {
        get(&self.sock_revnat, k)
    }
}

/// How the backend is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Not a frontend and not the reply of a tracked flow: passed untouched.
    NoService,
    /// Not a frontend, but the reply of a tracked flow: source put back to the frontend.
    Reply,
    /// The frontend has no usable endpoint: TCP RST / ICMP port unreachable.
    Reject,
    /// An existing flow: its conntrack entry names the backend.
    Conntrack,
    /// A new flow of a client with a fresh affinity entry.
    Affinity,
    /// A new flow on a Maglev table: the slot is the flow hash modulo the table size.
    Maglev,
    /// A new flow on a plain list: one slot drawn at random.
    Random,
    /// A node-local socket: the socket programs sent it to this backend at connect()
    /// (or sendmsg()); no packet is translated afterwards.
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendRef {
    pub id: u32,
    pub address: Ipv4Addr,
    pub port: u16,
    pub terminating: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FrontendRef {
    pub service: String,
    pub kind: &'static str,
    pub svc_id: u32,
    pub backend_count: u16,
    pub flags: Vec<&'static str>,
}

/// A conntrack entry of the flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConntrackRef {
    pub direction: &'static str,
    /// Forward: the backend; reply: the frontend restored as source.
    pub nat_address: Ipv4Addr,
    pub nat_port: u16,
    pub backend_id: u32,
    pub svc_id: u32,
    pub closing: bool,
    /// Whether the backend id still exists (a new SYN on the tuple picks again if not).
    pub backend_present: bool,
    pub idle_ms: u64,
    /// A source-NATed flow (externalTrafficPolicy Cluster to another node's endpoint,
    /// or hairpin): forward: the source the node puts on the client's packets; reply:
    /// the client put back as destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snat: Option<SocketAddrV4>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AffinityRef {
    pub backend_id: u32,
    pub age_ms: u64,
    pub timeout_s: u32,
    /// Younger than the timeout and its backend still exists: the data path uses it.
    pub fresh: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaglevRef {
    pub hash: u32,
    pub table_size: u16,
    pub slot: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub backend: BackendRef,
    /// Share of the slots this backend holds: its chance for a new flow.
    pub odds: f64,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowView {
    pub flow: String,
    pub decision: Decision,
    pub reason: String,
    /// The backend the flow gets; `None` for no-service, reply, reject and random.
    pub backend: Option<BackendRef>,
    pub frontend: Option<FrontendRef>,
    pub conntrack: Option<ConntrackRef>,
    pub affinity: Option<AffinityRef>,
    pub maglev: Option<MaglevRef>,
    /// Random choice: every backend it may get, with its odds.
    pub candidates: Vec<Candidate>,
}

/// `bpf_ktime_get_ns()`'s clock.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Opens the pins under `bpffs` and explains `flow`. A flow from one of this network
/// namespace's own addresses (or loopback) is a node-local one: the socket programs'
/// decision, with the live socket of that source port if there is one.
pub fn read(bpffs: &Path, flow: &FlowSpec) -> Result<FlowView> {
    let maps = Maps::open(&PinLayout::new(bpffs))?;
    let src = *flow.src.ip();
    let local = src.is_loopback()
        || crate::ifaces::list()
            .map(|l| l.iter().any(|i| i.ipv4.contains(&src)))
            .unwrap_or(false);
    if !local {
        return explain(&maps, flow, monotonic_ns());
    }
    let sockets = crate::sockdiag::SockDiag::open()
        .and_then(|mut d| d.sockets(flow.proto.number()))
        .unwrap_or_default();
    let peers: Vec<(u64, SocketAddrV4)> = sockets
        .iter()
        .filter(|s| s.local.port() == flow.src.port())
        .filter(|s| s.local.ip() == flow.src.ip() || s.local.ip().is_unspecified())
        .map(|s| (s.cookie, s.peer))
        .collect();
    explain_node_local(&maps, flow, monotonic_ns(), &peers)
}

/// The decision for a node-local `flow`: `sockets` are the (cookie, peer) of this
/// namespace's sockets with the flow's source port.
pub fn explain_node_local(
    maps: &impl FlowMaps,
    flow: &FlowSpec,
    now: u64,
    sockets: &[(u64, SocketAddrV4)],
) -> Result<FlowView> {
    let (_, daddr_be, _, dport_be, proto) = flow.wire();
    for (cookie, peer) in sockets {
        let key = SockRevKey {
            cookie: *cookie,
            addr_be: u32::from_ne_bytes(peer.ip().octets()),
            port_be: u16::from_ne_bytes(peer.port().to_be_bytes()),
            proto,
            _pad: 0,
        };
        let Some(v) = maps.sock_revnat(&key)? else {
            continue;
        };
        if v.addr_be != daddr_be || v.port_be != dport_be {
            continue;
        }
        let mut view = explain_at(maps, flow, now, true)?;
        view.decision = Decision::Socket;
        view.affinity = None;
        view.maglev = None;
        view.candidates.clear();
        view.backend = backend_ref(maps, v.backend_id)?.or(Some(BackendRef {
            id: v.backend_id,
            address: *peer.ip(),
            port: peer.port(),
            terminating: false,
        }));
        view.reason = format!(
            "node-local socket (cookie {cookie}): sent to backend {peer} (id {}) when it connected;              it talks to the backend directly and sees {} as its peer",
            v.backend_id, flow.dst
        );
        return Ok(view);
    }
    explain_at(maps, flow, now, true)
}

fn backend_ref(maps: &impl FlowMaps, id: u32) -> Result<Option<BackendRef>> {
    Ok(maps.backend(id)?.and_then(|be| {
        let a = backend_addr(&be)?;
        Some(BackendRef {
            id,
            address: a.addr,
            port: a.port,
            terminating: be.flags & BE_F_TERMINATING != 0,
        })
    }))
}

/// ", source-NATed to ADDR:PORT" for a source-NATed forward entry, else nothing.
fn snat_note(r: &ConntrackRef) -> String {
    r.snat
        .map(|a| format!(", source-NATed to {a}"))
        .unwrap_or_default()
}

fn ct_ref(ct: &CtValue, present: bool, now: u64) -> ConntrackRef {
    ConntrackRef {
        direction: if ct.dir == CT_DIR_FORWARD {
            "forward"
        } else {
            "reply"
        },
        nat_address: Ipv4Addr::from(ct.nat_addr_be.to_ne_bytes()),
        nat_port: u16::from_be(ct.nat_port_be),
        backend_id: ct.backend_id,
        svc_id: ct.svc_id,
        closing: ct.flags & CT_F_CLOSING != 0,
        backend_present: present,
        idle_ms: now.saturating_sub(ct.last_seen_ns) / 1_000_000,
        snat: (ct.flags & CT_F_SNAT != 0).then(|| {
            SocketAddrV4::new(
                Ipv4Addr::from(ct.rev_addr_be.to_ne_bytes()),
                u16::from_be(ct.rev_port_be),
            )
        }),
    }
}

/// The decision for `flow` given the maps and the data path's clock `now` (ns).
pub fn explain(maps: &impl FlowMaps, flow: &FlowSpec, now: u64) -> Result<FlowView> {
    explain_at(maps, flow, now, false)
}

/// [`explain`], or with `node_local` the socket programs' choice for a new node-local
/// socket: no conntrack, the host-scope frontend first, the node as the affinity client.
fn explain_at(
    maps: &impl FlowMaps,
    flow: &FlowSpec,
    now: u64,
    node_local: bool,
) -> Result<FlowView> {
    let (_, daddr_be, _, dport_be, proto) = flow.wire();
    let mut view = FlowView {
        flow: flow.to_string(),
        decision: Decision::NoService,
        reason: String::new(),
        backend: None,
        frontend: None,
        conntrack: None,
        affinity: None,
        maglev: None,
        candidates: Vec::new(),
    };
    let key = ServiceKey {
        addr_be: daddr_be,
        port_be: dport_be,
        proto,
        scope: SCOPE_PACKET,
    };
    // One conntrack lookup by the packet's own tuple finds either direction, as in the
    // data path, and comes before the Service. Node-local sockets make no entries.
    let ct = if node_local {
        None
    } else {
        maps.conntrack(&flow.ct_key())?
    };
    let tracked = match ct {
        Some(ct) => {
            let be = maps.backend(ct.backend_id)?;
            let terminating = be.is_some_and(|b| b.flags & BE_F_TERMINATING != 0);
            Some((ct, ct_ref(&ct, be.is_some(), now), terminating))
        }
        None => None,
    };
    if let Some((_, r, _)) = tracked.as_ref().filter(|(ct, ..)| ct.dir == CT_DIR_REPLY) {
        view.decision = Decision::Reply;
        view.reason = format!(
            "reply of a tracked flow: source becomes {}:{}{}",
            r.nat_address,
            r.nat_port,
            r.snat
                .map(|c| format!(", destination the client {c} (source-NATed flow)"))
                .unwrap_or_default()
        );
        view.conntrack = tracked.map(|(_, r, _)| r);
        return Ok(view);
    }
    let svc = if node_local {
        let host = ServiceKey {
            scope: SCOPE_HOST,
            ..key
        };
        match maps.service(&host)? {
            Some(v) => Some(v),
            None => maps.service(&key)?,
        }
    } else {
        maps.service(&key)?
    };
    if let Some(svc) = &svc {
        let mut flags = Vec::new();
        for (bit, name) in [
            (SVC_F_AFFINITY, "affinity"),
            (svclb_common::SVC_F_LOCAL, "local"),
            (SVC_F_MAGLEV, "maglev"),
        ] {
            if svc.flags & bit != 0 {
                flags.push(name);
            }
        }
        view.frontend = Some(FrontendRef {
            service: maps.name(svc.svc_id)?.unwrap_or_default(),
            kind: FrontendKind::from_code(svc.kind).map_or("?", FrontendKind::as_str),
            svc_id: svc.svc_id,
            backend_count: svc.backend_count,
            flags,
        });
    }

    // A tracked forward entry decides, with or without its frontend, unless a new TCP
    // SYN may choose again (closing, or its backend is gone).
    let mut notes = Vec::new();
    if let Some((ct, r, terminating)) = tracked {
        if (!r.closing && r.backend_present) || flow.proto == Proto::Udp {
            view.decision = Decision::Conntrack;
            let (whose, left) = match (&svc, r.backend_present) {
                (None, _) => (" of a frontend that is gone", ""),
                (Some(_), false) => ("", " even though it left the Service"),
                (Some(_), true) => ("", ""),
            };
            view.reason = format!(
                "tracked flow (idle {} ms){whose}: keeps backend {}:{} (id {}){left}{}",
                r.idle_ms,
                r.nat_address,
                r.nat_port,
                ct.backend_id,
                snat_note(&r)
            );
            view.backend = Some(BackendRef {
                id: ct.backend_id,
                address: r.nat_address,
                port: r.nat_port,
                terminating,
            });
            view.conntrack = Some(r);
            return Ok(view);
        }
        if svc.is_some() {
            notes.push(format!(
                "tracked TCP flow to {}:{} is {}: its packets keep that backend, a new SYN on this tuple chooses again as below",
                r.nat_address,
                r.nat_port,
                if r.closing { "closing" } else { "orphaned (backend gone)" }
            ));
            view.conntrack = Some(r);
        }
    }
    let Some(svc) = svc else {
        view.reason = format!(
            "no service at {}/{} and no tracked flow: passed untouched",
            flow.dst, flow.proto
        );
        return Ok(view);
    };

    if svc.backend_count == 0 {
        view.decision = Decision::Reject;
        view.reason = if node_local {
            "reject (no endpoints): connect()/sendmsg() fail with ECONNREFUSED".into()
        } else {
            "reject (no endpoints): TCP RST / ICMP port unreachable".into()
        };
        return Ok(view);
    }

    if svc.flags & SVC_F_AFFINITY != 0 {
        let akey = AffinityKey {
            // The node is one affinity client of its own, whatever address it binds.
            client_addr_be: if node_local { 0 } else { flow.wire().0 },
            svc_id: svc.svc_id,
        };
        if let Some(a) = maps.affinity(&akey)? {
            let age_ns = now.saturating_sub(a.last_used_ns);
            let be = backend_ref(maps, a.backend_id)?;
            let young = age_ns < u64::from(svc.affinity_timeout_s) * 1_000_000_000;
            let r = AffinityRef {
                backend_id: a.backend_id,
                age_ms: age_ns / 1_000_000,
                timeout_s: svc.affinity_timeout_s,
                fresh: young && be.is_some(),
            };
            if let (true, Some(be)) = (r.fresh, be) {
                view.decision = Decision::Affinity;
                view.reason = format!(
                    "new flow; client {} used backend {}:{} {} ms ago (timeout {} s): session affinity",
                    flow.src.ip(),
                    be.address,
                    be.port,
                    r.age_ms,
                    r.timeout_s
                );
                view.backend = Some(be);
                view.affinity = Some(r);
                append_notes(&mut view.reason, &notes);
                return Ok(view);
            }
            notes.push(if young {
                format!(
                    "affinity entry names backend id {} which is gone",
                    a.backend_id
                )
            } else {
                format!(
                    "affinity entry expired ({} ms idle > {} s)",
                    r.age_ms, r.timeout_s
                )
            });
            view.affinity = Some(r);
        }
    }

    let n = u32::from(svc.backend_count);
    // Node-local sockets hash their cookie (UDP, Maglev): a socket not made yet has none.
    let by_cookie = node_local && (flow.proto == Proto::Udp || svc.flags & SVC_F_MAGLEV != 0);
    if svc.flags & SVC_F_MAGLEV != 0 && !by_cookie {
        let hash = flow.hash();
        let slot = hash % n;
        let id = maps.slot(&SlotKey {
            svc_id: svc.svc_id,
            slot,
        })?;
        let be = match id {
            Some(id) => backend_ref(maps, id)?,
            None => None,
        };
        view.decision = Decision::Maglev;
        view.maglev = Some(MaglevRef {
            hash,
            table_size: svc.backend_count,
            slot,
        });
        view.reason = match &be {
            Some(be) => format!(
                "new flow; Maglev: hash {hash:#010x} % {n} = slot {slot} → {}:{}",
                be.address, be.port
            ),
            None => format!(
                "new flow; Maglev slot {slot} is empty: the data path drops it (update in flight?)"
            ),
        };
        view.backend = be;
    } else {
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        for slot in 0..n {
            if let Some(id) = maps.slot(&SlotKey {
                svc_id: svc.svc_id,
                slot,
            })? {
                *counts.entry(id).or_default() += 1;
            }
        }
        for (id, c) in counts {
            if let Some(be) = backend_ref(maps, id)? {
                view.candidates.push(Candidate {
                    backend: be,
                    odds: f64::from(c) / f64::from(n),
                });
            }
        }
        view.decision = Decision::Random;
        view.reason = if by_cookie {
            format!(
                "new node-local socket; slot = hash of the socket's cookie % {n}: any of {} backends",
                view.candidates.len()
            )
        } else if node_local {
            format!(
                "new node-local connection; random slot of {n} at connect(): any of {} backends",
                view.candidates.len()
            )
        } else {
            format!(
                "new flow; random slot of {n}: any of {} backends",
                view.candidates.len()
            )
        };
    }
    if svc.flags & SVC_F_AFFINITY != 0 {
        notes.push("the choice becomes the client's affinity backend".into());
    }
    append_notes(&mut view.reason, &notes);
    Ok(view)
}

fn append_notes(reason: &mut String, notes: &[String]) {
    for n in notes {
        let _ = write!(reason, "; {n}");
    }
}

/// Human output.
pub fn render_text(v: &FlowView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "flow {}", v.flow);
    if let Some(fe) = &v.frontend {
        let _ = writeln!(
            s,
            "frontend {} ({}, set {}, {} slots{}{})",
            if fe.service.is_empty() {
                "?"
            } else {
                &fe.service
            },
            fe.kind,
            fe.svc_id,
            fe.backend_count,
            if fe.flags.is_empty() { "" } else { ", " },
            fe.flags.join(",")
        );
    }
    let decision = serde_json::to_value(v.decision)
        .ok()
        .and_then(|d| d.as_str().map(str::to_owned))
        .unwrap_or_default();
    let _ = writeln!(s, "decision {decision}: {}", v.reason);
    if let Some(b) = &v.backend {
        let _ = writeln!(
            s,
            "backend {}:{} (id {}){}",
            b.address,
            b.port,
            b.id,
            if b.terminating { " terminating" } else { "" }
        );
    }
    if let Some(ct) = &v.conntrack {
        let _ = writeln!(
            s,
            "conntrack {} → {}:{} backend id {} set {} idle {} ms{}{}",
            ct.direction,
            ct.nat_address,
            ct.nat_port,
            ct.backend_id,
            ct.svc_id,
            ct.idle_ms,
            if ct.closing { " closing" } else { "" },
            if ct.backend_present {
                ""
            } else {
                " backend-gone"
            }
        );
        if let Some(a) = ct.snat {
            let _ = writeln!(
                s,
                "  source NAT: {}",
                if ct.direction == "forward" {
                    format!("the client's packets leave with source {a}")
                } else {
                    format!("replies go back to the client {a}")
                }
            );
        }
    }
    if let Some(a) = &v.affinity {
        let _ = writeln!(
            s,
            "affinity backend id {} age {} ms timeout {} s ({})",
            a.backend_id,
            a.age_ms,
            a.timeout_s,
            if a.fresh { "fresh" } else { "stale" }
        );
    }
    if let Some(m) = &v.maglev {
        let _ = writeln!(
            s,
            "maglev hash {:#010x} table {} slot {}",
            m.hash, m.table_size, m.slot
        );
    }
    for c in &v.candidates {
        let _ = writeln!(
            s,
            "  candidate {}:{} (id {}) odds {:.3}",
            c.backend.address, c.backend.port, c.backend.id, c.odds
        );
    }
    s
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
