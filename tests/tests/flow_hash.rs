//! The data path's Maglev slot is `svclb_common::flow_hash(tuple) % table size`, the
//! function `svclb-agent dump --flow` uses to predict it: the real eBPF object (TC and
//! XDP, through BPF_PROG_TEST_RUN) and the shared function agree on every flow.
//! Needs root.
use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context as _, Result, bail, ensure};
use svclb_common::{PROTO_TCP, PROTO_UDP, SVC_F_MAGLEV, flow_hash};
use svclb_tests::packet::{
    build::{L4, Pkt},
    check::headers,
    harness::{Harness, Hook, Service},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 16);
/// A Maglev-sized table (prime): slot i holds backend 1 + i % 3.
const TABLE: u32 = 251;

fn backend(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 19, n, 2), 5005)
}

fn dnat_target(frame: &[u8]) -> Result<SocketAddrV4> {
    let h = headers(frame)?;
    let Some(etherparse::NetHeaders::Ipv4(ip, _)) = h.net else {
        bail!("not IPv4")
    };
    let port = match h.transport {
        Some(etherparse::TransportHeader::Tcp(t)) => t.destination_port,
        Some(etherparse::TransportHeader::Udp(u)) => u.destination_port,
        _ => bail!("no TCP/UDP header"),
    };
    Ok(SocketAddrV4::new(Ipv4Addr::from(ip.destination), port))
}

fn wire(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

fn wire_port(p: u16) -> u16 {
    u16::from_ne_bytes(p.to_be_bytes())
}

#[test]
fn maglev_slot_of_the_program_is_the_shared_flow_hash() -> Result<()> {
    for hook in Hook::ALL {
        for (l4, proto) in [(L4::Tcp, PROTO_TCP), (L4::Udp, PROTO_UDP)] {
            let svc = Service {
                vip: VIP,
                port: 53,
                proto,
                svc_id: 9,
                flags: SVC_F_MAGLEV,
                affinity_timeout_s: 0,
                backends: (1..=3).map(|i| (u32::from(i), backend(i))).collect(),
            };
            let mut h = Harness::load().with_context(|| format!("{hook:?}: load"))?;
            h.install(&svc)?;
            let table: Vec<u32> = (0..TABLE).map(|i| 1 + i % 3).collect();
            h.set_slots(&svc, &table)?;
            for i in 0..150u16 {
                let client = Ipv4Addr::new(198, 19, 4 + (i % 5) as u8, 2);
                let sport = 20_000 + i * 7;
                let pkt = match l4 {
                    L4::Tcp => Pkt::tcp(client, sport, VIP, 53),
                    L4::Udp => Pkt::udp(client, sport, VIP, 53),
                };
                let out = h.run(hook, &pkt.bytes())?;
                let got = dnat_target(&out.data)
                    .with_context(|| format!("{hook:?} flow {client}:{sport}"))?;
                let hash = flow_hash(
                    wire(client),
                    wire(VIP),
                    wire_port(sport),
                    wire_port(53),
                    proto,
                );
                let want = backend((1 + (hash % TABLE) % 3) as u8);
                ensure!(
                    got == want,
                    "{hook:?} {client}:{sport}/{proto}: program chose {got}, flow_hash says {want}"
                );
            }
        }
    }
    Ok(())
}
