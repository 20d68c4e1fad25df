//! svclb data path: TC and XDP programs that load balance IPv4 TCP/UDP to Kubernetes
//! Service backends. Entry points only; the shared logic is in `lb`.
//!
//! Per packet (both programs): Ethernet → IPv4 → TCP/UDP (`parse`). Anything else —
//! IPv6, ARP, ICMP, IP fragments, truncated headers — passes untouched and is counted.
//! IPv4 options are fine (the L4 header is found at IHL × 4). One conntrack lookup by
//! the packet's tuple comes first: a forward entry gives the backend to DNAT to, a
//! reply entry the frontend to reverse-translate to. Otherwise a packet to a frontend
//! (address, port, protocol in SERVICES) gets a backend (session affinity, Maglev hash
//! or random slot), two conntrack entries and a DNAT. A frontend without backends
//! answers a new flow with a TCP RST or an ICMP port unreachable, sent by TC (XDP
//! passes such packets on to TC). A slot or backend missing in the middle of an agent
//! update drops the packet rather than forwarding it anywhere wrong.
//!
//! Checksums: TC uses the kernel's csum helpers, correct for every `ip_summed` state;
//! XDP updates them by hand (RFC 1624), which assumes full checksums in the packet,
//! as NICs deliver them. XDP on a veth whose peer has TX checksum offload on can see
//! CHECKSUM_PARTIAL packets, whose L4 field holds only the pseudo-header sum; there
//! the hand update is wrong. Attach XDP only where senders compute full checksums
//! (physical NICs; veth peers with `ethtool -K … tx off`), and leave the rest to TC.
#![no_std]
#![no_main]

mod clock;
mod csum;
mod ct;
mod features;
mod frame;
mod lb;
mod maps;
mod nat;
mod parse;
mod reject;
mod snat;
mod sock;
mod stats;
mod tc;
mod xdp;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    helpers::{bpf_redirect, bpf_redirect_peer},
    macros::{cgroup_sock_addr, classifier, xdp},
    programs::{SockAddrContext, TcContext, XdpContext},
};
use lb::Verdict;
use svclb_common::IF_F_PEER;

/// TC ingress on every attached interface: both directions (DNAT and reverse NAT).
#[classifier]
pub fn svclb_tc(ctx: TcContext) -> i32 {
    match lb::process(&ctx) {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop => TC_ACT_SHOT,
        Verdict::Reject => send_back(&ctx),
    }
}

/// Sends a reject back where the packet came from (TC_ACT_REDIRECT). On a device with a
/// peer (veth, netkit) it goes to the peer's ingress: an egress redirect would let the
/// kernel complete a CHECKSUM_PARTIAL skb's checksum with the original packet's offsets
/// and corrupt the rebuilt RST/ICMP.
#[inline(always)]
fn send_back(ctx: &TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let peer = unsafe { maps::IFACES.get(&ifindex) }.is_some_and(|i| i.flags & IF_F_PEER != 0);
    let ret = if peer {
        unsafe { bpf_redirect_peer(ifindex, 0) }
    } else {
        unsafe { bpf_redirect(ifindex, 0) }
    };
    ret as i32
}

/// XDP fast path for external interfaces: same logic; rewritten packets go on to the
/// kernel (XDP_PASS), which routes them. Rejects are left to TC on the same interface.
#[xdp]
pub fn svclb_xdp(ctx: XdpContext) -> u32 {
    match lb::process(&ctx) {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
        // Not produced by XDP (Frame::SENDS_REJECTS is false); pass rather than guess.
        Verdict::Reject => xdp_action::XDP_PASS,
    }
}

// Node-local clients (`sock`): the names are svclb_common::SOCK_PROGS.

#[cgroup_sock_addr(connect4)]
pub fn svclb_connect4(ctx: SockAddrContext) -> i32 {
    sock::forward4(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn svclb_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::forward4(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn svclb_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::reverse4(&ctx)
}

#[cgroup_sock_addr(getpeername4)]
pub fn svclb_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::reverse4(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn svclb_connect6(ctx: SockAddrContext) -> i32 {
    sock::forward6(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn svclb_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::forward6(&ctx)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn svclb_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::reverse6(&ctx)
}

#[cgroup_sock_addr(getpeername6)]
pub fn svclb_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::reverse6(&ctx)
}

/// Probe of the kernel's FIB source lookup, run once by the agent (see snat.rs).
#[classifier]
pub fn svclb_probe_fib_src(ctx: TcContext) -> i32 {
    snat::probe_fib_src(&ctx)
}

/// Does nothing: the floor for benchmarks of `svclb_xdp`.
#[xdp]
pub fn svclb_xdp_noop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
