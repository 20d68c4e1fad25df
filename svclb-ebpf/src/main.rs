//! svclb data path: TC and XDP programs that load balance IPv4 TCP/UDP to Kubernetes
//! Service backends. Entry points only; the shared logic is in `lb`.
//!
//! Per packet (both programs): Ethernet → IPv4 → TCP/UDP (`parse`). Anything else —
//! IPv6, ARP, ICMP, IP fragments, truncated headers — passes untouched and is counted.
//! IPv4 options are fine (the L4 header is found at IHL × 4). A packet to a frontend
//! (address, port, protocol in SERVICES) follows its conntrack entry if there is one,
//! else gets a backend (session affinity, Maglev hash or random slot), two conntrack
//! entries and a DNAT. A packet that is no frontend's but matches a reply entry is
//! reverse-translated. A frontend without backends answers a new flow with a TCP RST
//! or an ICMP port unreachable. A slot or backend missing in the middle of an agent
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

mod csum;
mod ct;
mod frame;
mod lb;
mod maps;
mod nat;
mod parse;
mod reject;
mod stats;
mod tc;
mod xdp;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    helpers::bpf_redirect,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use lb::Verdict;

/// TC ingress on every attached interface: both directions (DNAT and reverse NAT).
#[classifier]
pub fn svclb_tc(ctx: TcContext) -> i32 {
    match lb::process(&ctx) {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop => TC_ACT_SHOT,
        // Back out of the interface the packet came in on (TC_ACT_REDIRECT).
        Verdict::Reject => unsafe { bpf_redirect((*ctx.skb.skb).ifindex, 0) as i32 },
    }
}

/// XDP fast path for external interfaces: same logic; rewritten packets go on to the
/// kernel (XDP_PASS), which routes them; rejects go straight back (XDP_TX).
#[xdp]
pub fn svclb_xdp(ctx: XdpContext) -> u32 {
    match lb::process(&ctx) {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Reject => xdp_action::XDP_TX,
    }
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
