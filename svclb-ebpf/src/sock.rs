//! Node-local load balancing at the socket layer (cgroup sock_addr programs).
//!
//! A process of the node's own network namespace (the agent, kubelet, hostNetwork
//! pods) sends no packet through an interface the packet path sits on before it
//! leaves, so its connections are translated where they start: `connect()` and
//! `sendmsg()` to a frontend are pointed at a backend chosen as the packet path would
//! choose (same maps: random or Maglev slot, ClientIP affinity with the node as the
//! client, Local policies), and `getpeername()`/`recvmsg()` show the frontend again.
//! No packet is rewritten afterwards and no conntrack entry is made: the socket talks
//! to the backend directly.
//!
//! Only sockets of the network namespace whose cookie the agent wrote into the config
//! map are touched: pods keep the per-packet path.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_netns_cookie, bpf_get_prandom_u32, bpf_get_socket_cookie, bpf_set_retval},
    programs::SockAddrContext,
};
use svclb_common::{
    Counter, FEAT_SET_RETVAL, NETNS_PROBE_ADDR, NETNS_PROBE_PORT, PROTO_TCP, PROTO_UDP, SCOPE_HOST,
    SCOPE_PACKET, SVC_F_MAGLEV, SVC_F_NO_LOCAL_DROP, SVC_F_NODE_DENIED, ServiceKey, ServiceValue,
    SockRevKey, SockRevValue,
};

use crate::{
    clock, features, lb,
    maps::{CONFIG, SERVICES, SOCK_REVNAT},
    stats::{self, count},
};

/// sock_addr programs return 1 to let the call go on, 0 to fail it (EPERM, or the
/// value given to `bpf_set_retval`).
const PROCEED: i32 = 1;
const FAIL: i32 = 0;
const ECONNREFUSED: i32 = 111;

/// What a forward hook does with the address it was given.
enum Forward {
    /// Not a frontend (or not our socket): leave it.
    Untouched,
    /// Send to this backend (address, port; network byte order).
    To(u32, u16),
    /// A frontend without endpoints: ECONNREFUSED, as kube-proxy's REJECT gives.
    Refuse,
    /// A Local policy without local endpoints, source ranges that leave the node out,
    /// or a map race: EPERM.
    Deny,
}

/// `connect()` / `sendmsg()`: IPv4.
#[inline(always)]
pub fn forward4(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    let (addr, port) = unsafe { ((*sa).user_ip4, (*sa).user_port as u16) };
    match forward(ctx, addr, port) {
        Forward::Untouched => PROCEED,
        Forward::To(a, p) => {
            unsafe {
                (*sa).user_ip4 = a;
                (*sa).user_port = u32::from(p);
            }
            PROCEED
        }
        Forward::Refuse => refuse(),
        Forward::Deny => FAIL,
    }
}

/// `connect()` / `sendmsg()` of an IPv6 socket: IPv4-mapped addresses only.
#[inline(always)]
pub fn forward6(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    let Some(addr) = mapped_v4(ctx) else {
        return PROCEED;
    };
    let port = unsafe { (*sa).user_port as u16 };
    match forward(ctx, addr, port) {
        Forward::Untouched => PROCEED,
        Forward::To(a, p) => {
            unsafe {
                (*sa).user_ip6[3] = a;
                (*sa).user_port = u32::from(p);
            }
            PROCEED
        }
        Forward::Refuse => refuse(),
        Forward::Deny => FAIL,
    }
}

/// `getpeername()` / `recvmsg()`: IPv4.
#[inline(always)]
pub fn reverse4(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    let (addr, port) = unsafe { ((*sa).user_ip4, (*sa).user_port as u16) };
    if let Some((a, p)) = reverse(ctx, addr, port) {
        unsafe {
            (*sa).user_ip4 = a;
            (*sa).user_port = u32::from(p);
        }
    }
    PROCEED
}

/// `getpeername()` / `recvmsg()` of an IPv6 socket with an IPv4-mapped peer.
#[inline(always)]
pub fn reverse6(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    let Some(addr) = mapped_v4(ctx) else {
        return PROCEED;
    };
    let port = unsafe { (*sa).user_port as u16 };
    if let Some((a, p)) = reverse(ctx, addr, port) {
        unsafe {
            (*sa).user_ip6[3] = a;
            (*sa).user_port = u32::from(p);
        }
    }
    PROCEED
}

/// The IPv4 address inside `::ffff:a.b.c.d`, network byte order.
#[inline(always)]
fn mapped_v4(ctx: &SockAddrContext) -> Option<u32> {
    let sa = ctx.sock_addr;
    let w = unsafe { [(*sa).user_ip6[0], (*sa).user_ip6[1], (*sa).user_ip6[2]] };
    if w[0] == 0 && w[1] == 0 && w[2] == 0x0000_ffffu32.to_be() {
        Some(unsafe { (*sa).user_ip6[3] })
    } else {
        None
    }
}

#[inline(always)]
fn refuse() -> i32 {
    // Without it the call fails with EPERM; with it, as a REJECT would.
    if features::has(FEAT_SET_RETVAL) {
        unsafe { bpf_set_retval(-ECONNREFUSED) };
    }
    FAIL
}

/// The socket belongs to the node's own network namespace.
#[inline(always)]
fn host_socket(ctx: &SockAddrContext) -> bool {
    let Some(cfg) = CONFIG.get(0) else {
        return false;
    };
    let want = cfg.host_netns_cookie;
    want != 0 && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } == want
}

/// The agent's probe socket (`Config::probe_sock_cookie`) connecting to the probe
/// address: tell the agent its namespace's cookie (kernels before 5.14 have no
/// `SO_NETNS_COOKIE`). Two compares for every other socket.
#[inline(always)]
fn answer_probe(ctx: &SockAddrContext, addr: u32, port: u16) {
    if addr != u32::from_ne_bytes(NETNS_PROBE_ADDR) || port != NETNS_PROBE_PORT.to_be() {
        return;
    }
    let Some(cfg) = CONFIG.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the array's one slot; written here only for the agent's own socket.
    unsafe {
        let probe = (*cfg).probe_sock_cookie;
        if probe != 0 && bpf_get_socket_cookie(ctx.as_ptr()) == probe {
            (*cfg).learned_netns_cookie = bpf_get_netns_cookie(ctx.as_ptr());
        }
    }
}

#[inline(always)]
fn protocol(ctx: &SockAddrContext) -> Option<u8> {
    match unsafe { (*ctx.sock_addr).protocol } {
        p if p == u32::from(PROTO_TCP) => Some(PROTO_TCP),
        p if p == u32::from(PROTO_UDP) => Some(PROTO_UDP),
        _ => None,
    }
}

/// The frontend's host-scope entry, else the one the packet path uses.
#[inline(always)]
fn lookup(addr: u32, port: u16, proto: u8) -> Option<ServiceValue> {
    let mut key = ServiceKey {
        addr_be: addr,
        port_be: port,
        proto,
        scope: SCOPE_HOST,
    };
    if let Some(v) = unsafe { SERVICES.get(key) } {
        return Some(*v);
    }
    key.scope = SCOPE_PACKET;
    unsafe { SERVICES.get(key) }.copied()
}

#[inline(always)]
fn forward(ctx: &SockAddrContext, addr: u32, port: u16) -> Forward {
    answer_probe(ctx, addr, port);
    let Some(proto) = protocol(ctx) else {
        return Forward::Untouched;
    };
    let Some(svc) = lookup(addr, port, proto) else {
        return Forward::Untouched;
    };
    if !host_socket(ctx) {
        return Forward::Untouched;
    }
    stats::service(svc.svc_id, 0);
    // loadBalancerSourceRanges that leave the node out: as kube-proxy's firewall
    // chain drops the node's own packets to that load-balancer IP.
    if svc.flags & SVC_F_NODE_DENIED != 0 {
        count(Counter::SockDrop);
        return Forward::Deny;
    }
    if svc.backend_count == 0 {
        if svc.flags & SVC_F_NO_LOCAL_DROP != 0 {
            count(Counter::SockDrop);
            return Forward::Deny;
        }
        count(Counter::SockReject);
        return Forward::Refuse;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // TCP: a random slot per connection. UDP and Maglev: the socket's own hash, so
    // an unconnected UDP socket keeps its backend from one datagram to the next while
    // the backend set stays the same (no conntrack entry remembers it here).
    let hash = || {
        if proto == PROTO_UDP || svc.flags & SVC_F_MAGLEV != 0 {
            svclb_common::fmix(cookie as u32 ^ (cookie >> 32) as u32)
        } else {
            unsafe { bpf_get_prandom_u32() }
        }
    };
    // Affinity: the node is one client (address 0), whatever source it binds.
    let Some((backend_id, be)) = lb::choose(0, &svc, clock::now_ns(), hash) else {
        count(Counter::SockDrop);
        return Forward::Deny;
    };
    let key = SockRevKey {
        cookie,
        addr_be: be.addr_be,
        port_be: be.port_be,
        proto,
        _pad: 0,
    };
    let val = SockRevValue {
        addr_be: addr,
        port_be: port,
        _pad: 0,
        svc_id: svc.svc_id,
        backend_id,
    };
    // Without it the socket would see the backend as its peer: refuse instead.
    if SOCK_REVNAT.insert(&key, &val, 0).is_err() {
        count(Counter::SockDrop);
        return Forward::Deny;
    }
    count(Counter::SockNew);
    Forward::To(be.addr_be, be.port_be)
}

#[inline(always)]
fn reverse(ctx: &SockAddrContext, addr: u32, port: u16) -> Option<(u32, u16)> {
    let proto = protocol(ctx)?;
    let key = SockRevKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        addr_be: addr,
        port_be: port,
        proto,
        _pad: 0,
    };
    let v = unsafe { SOCK_REVNAT.get(&key) }?;
    count(Counter::SockRevNat);
    Some((v.addr_be, v.port_be))
}
