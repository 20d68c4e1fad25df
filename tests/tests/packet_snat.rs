//! Packet fixtures for source NAT (externalTrafficPolicy Cluster to an endpoint on
//! another node, hairpin), loadBalancerSourceRanges and the Local-policy drop: the
//! real eBPF object through BPF_PROG_TEST_RUN, TC and XDP alike, every output byte
//! checked against an independently built packet.
//!
//! Source NAT asks the kernel's FIB for the address towards the endpoint, so those
//! fixtures run in a namespace of their own with one route: 198.19.0.0/16 via
//! 198.18.50.2 on a link holding 198.18.50.1 (the node address NAT must pick).
//!
//! Needs root. `cargo test -p svclb-tests --test packet_snat`
use std::net::{Ipv4Addr, SocketAddrV4};

use svclb_agent::dataplane::ebpf::features::Choice;

/// The feature variants (see packet_fixtures.rs).
#[allow(dead_code)]
const FEATURES: Choice = Choice::Probe;

use anyhow::{Context as _, Result, ensure};
use svclb_common::{
    BE_F_LOCAL, Backend, CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_CLOSING, CT_F_SNAT, CT_F_SRC_RANGES,
    CtValue, IfaceInfo, KIND_CLUSTER_IP, KIND_LOAD_BALANCER, KIND_NODE_PORT, MAP_CONNTRACK,
    PROTO_TCP, SNAT_PORT_MIN, SVC_F_LOCAL, SVC_F_NO_LOCAL_DROP, SVC_F_SRC_RANGES, ServiceValue,
};
use svclb_tests::{
    netns::NetNs,
    packet::{
        build::{ACK, FIN, Pkt, SYN},
        check::{same_bytes, verify_checksums},
        harness::{Harness, Hook, Output, Verdict, addr_be, ct_key, service_key},
    },
};

const FE: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const NP: u16 = 30080;
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
const CPORT: u16 = 40000;
const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 19, 2, 2);
const BPORT: u16 = 8080;
/// The routed link's address: where the FIB says the endpoint is reached from.
const NODE_SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 50, 1);
const HAIRPIN: Ipv4Addr = Ipv4Addr::new(169, 254, 42, 1);
const SVC_ID: u32 = 7;
const BE_ID: u32 = 1;

/// Runs `f` for each hook on a thread inside a fresh namespace with the route above.
fn in_fib_ns(f: fn(Hook) -> Result<()>) -> Result<()> {
    let ns = NetNs::new("fib")?;
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    // A veth pair inside the namespace (no dummy module needed); d0 holds the route.
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"])?;
    ns.ip(&["link", "set", "d0", "up"])?;
    ns.ip(&["link", "set", "d1", "up"])?;
    ns.ip(&["addr", "add", &format!("{NODE_SRC}/24"), "dev", "d0"])?;
    ns.ip(&["route", "add", "198.19.0.0/16", "via", "198.18.50.2"])?;
    ns.in_thread(move || -> Result<()> {
        for hook in Hook::ALL {
            f(hook).with_context(|| format!("with the {hook:?} program"))?;
        }
        Ok(())
    })?
}

/// One frontend of `kind` with `flags`, one backend (`be_flags`) at BACKEND:BPORT.
fn setup(
    kind: u8,
    fe: Ipv4Addr,
    port: u16,
    flags: u16,
    backend: Ipv4Addr,
    be_flags: u8,
) -> Result<Harness> {
    let mut h = Harness::load_with(crate::FEATURES)?;
    // The interface table as the agent fills it: where source NAT finds the node's
    // address on kernels whose FIB lookup cannot return one.
    let d0 = svclb_agent::netif::ifindex("d0")?;
    h.put_iface(
        d0,
        IfaceInfo {
            flags: 0,
            addr_be: addr_be(NODE_SRC),
        },
    )?;
    h.put_backend(
        BE_ID,
        Backend {
            addr_be: addr_be(backend),
            port_be: BPORT.to_be(),
            proto: PROTO_TCP,
            flags: be_flags,
        },
    )?;
    h.put_slot(SVC_ID, 0, BE_ID)?;
    h.put_service(
        service_key(fe, port, PROTO_TCP),
        ServiceValue {
            svc_id: SVC_ID,
            backend_count: 1,
            flags,
            affinity_timeout_s: 0,
            kind,
            _pad: [0; 3],
        },
    )?;
    Ok(h)
}

fn node_port(flags: u16, be_flags: u8) -> Result<Harness> {
    setup(KIND_NODE_PORT, FE, NP, flags, BACKEND, be_flags)
}

fn expect_frame(out: &Output, want: &[u8]) -> Result<()> {
    ensure!(
        out.verdict == Verdict::Pass,
        "verdict {:?} (ret {}), want Pass",
        out.verdict,
        out.ret
    );
    verify_checksums(&out.data).context("output checksums")?;
    same_bytes(&out.data, want)
}

fn sa(a: Ipv4Addr, p: u16) -> SocketAddrV4 {
    SocketAddrV4::new(a, p)
}

#[test]
fn external_flow_to_remote_endpoint_is_source_natted_both_ways() -> Result<()> {
    in_fib_ns(|hook| {
        let h = node_port(0, 0)?;
        let syn = Pkt::tcp(CLIENT, CPORT, FE, NP);
        let before = h.counters()?;
        let out = h.run(hook, &syn.bytes())?;
        // The client port is free on the node address: kept.
        let natted = syn.to(BACKEND, BPORT).from(NODE_SRC, CPORT);
        expect_frame(&out, &natted.bytes())?;
        let moved = h.counters()?.since(&before);
        ensure!(moved == [("fwd_new", 1), ("snat_new", 1)], "{moved:?}");

        let fwd = h
            .ct(&ct_key(sa(CLIENT, CPORT), sa(FE, NP), PROTO_TCP))?
            .context("forward entry")?;
        ensure!(
            (fwd.flags, fwd.dir) == (CT_F_SNAT, CT_DIR_FORWARD),
            "{fwd:?}"
        );
        ensure!(
            (fwd.rev_addr_be, fwd.rev_port_be) == (addr_be(NODE_SRC), CPORT.to_be()),
            "{fwd:?}"
        );
        ensure!((fwd.nat_addr_be, fwd.nat_port_be) == (addr_be(BACKEND), BPORT.to_be()));
        let rep = h
            .ct(&ct_key(sa(BACKEND, BPORT), sa(NODE_SRC, CPORT), PROTO_TCP))?
            .context("reply entry keyed by the NAT address")?;
        ensure!((rep.flags, rep.dir) == (CT_F_SNAT, CT_DIR_REPLY), "{rep:?}");
        ensure!(
            (rep.nat_addr_be, rep.nat_port_be) == (addr_be(FE), NP.to_be()),
            "{rep:?}"
        );
        ensure!(
            (rep.rev_addr_be, rep.rev_port_be) == (addr_be(CLIENT), CPORT.to_be()),
            "{rep:?}"
        );
        ensure!(h.ct_entries()?.len() == 2);

        // The endpoint answers the node; the client gets it from the NodePort.
        let reply = natted.reply(SYN | ACK).payload(b"hi");
        let before = h.counters()?;
        let out = h.run(hook, &reply.bytes())?;
        expect_frame(&out, &reply.from(FE, NP).to(CLIENT, CPORT).bytes())?;
        ensure!(h.counters()?.since(&before) == [("reply", 1)]);

        // Later forward packets take both translations from the entry.
        let ack = syn.flags(ACK).payload(b"GET /");
        let out = h.run(hook, &ack.bytes())?;
        expect_frame(&out, &ack.to(BACKEND, BPORT).from(NODE_SRC, CPORT).bytes())?;

        // A FIN from the endpoint marks the client's forward entry closing.
        h.run(hook, &natted.reply(FIN | ACK).bytes())?;
        let fwd = h
            .ct(&ct_key(sa(CLIENT, CPORT), sa(FE, NP), PROTO_TCP))?
            .context("forward entry")?;
        ensure!(fwd.flags == CT_F_SNAT | CT_F_CLOSING, "{fwd:?}");
        Ok(())
    })
}

#[test]
fn udp_is_source_natted_too() -> Result<()> {
    in_fib_ns(|hook| {
        let mut h = node_port(0, 0)?;
        // Same service over UDP.
        h.put_backend(
            BE_ID,
            Backend {
                addr_be: addr_be(BACKEND),
                port_be: BPORT.to_be(),
                proto: svclb_common::PROTO_UDP,
                flags: 0,
            },
        )?;
        h.put_service(
            service_key(FE, NP, svclb_common::PROTO_UDP),
            ServiceValue {
                svc_id: SVC_ID,
                backend_count: 1,
                flags: 0,
                affinity_timeout_s: 0,
                kind: KIND_NODE_PORT,
                _pad: [0; 3],
            },
        )?;
        let dgram = Pkt::udp(CLIENT, CPORT, FE, NP);
        let out = h.run(hook, &dgram.bytes())?;
        let natted = dgram.to(BACKEND, BPORT).from(NODE_SRC, CPORT);
        expect_frame(&out, &natted.bytes())?;
        let reply = natted.reply(0);
        let out = h.run(hook, &reply.bytes())?;
        expect_frame(&out, &reply.from(FE, NP).to(CLIENT, CPORT).bytes())
    })
}

#[test]
fn taken_or_frontend_ports_are_skipped() -> Result<()> {
    in_fib_ns(|hook| {
        let mut h = node_port(0, 0)?;
        // Another client's flow already holds the reply tuple with port CPORT...
        let other = CtValue {
            nat_addr_be: addr_be(FE),
            nat_port_be: NP.to_be(),
            flags: CT_F_SNAT,
            dir: CT_DIR_REPLY,
            rev_addr_be: addr_be(Ipv4Addr::new(198, 18, 100, 3)),
            rev_port_be: CPORT.to_be(),
            backend_id: BE_ID,
            svc_id: SVC_ID,
            ..Default::default()
        };
        let taken = ct_key(sa(BACKEND, BPORT), sa(NODE_SRC, CPORT), PROTO_TCP);
        h.hash_mut::<_, CtValue>(MAP_CONNTRACK)?
            .insert(taken, other, 0)?;
        let syn = Pkt::tcp(CLIENT, CPORT, FE, NP);
        let out = h.run(hook, &syn.bytes())?;
        ensure!(out.verdict == Verdict::Pass);
        let fwd = h
            .ct(&ct_key(sa(CLIENT, CPORT), sa(FE, NP), PROTO_TCP))?
            .context("forward entry")?;
        let port = u16::from_be(fwd.rev_port_be);
        ensure!(port >= SNAT_PORT_MIN, "port {port}: not from the NAT range");
        expect_frame(&out, &syn.to(BACKEND, BPORT).from(NODE_SRC, port).bytes())?;
        // ... which is untouched, and the reply on the new port reaches our client.
        ensure!(h.ct(&taken)? == Some(other));
        let reply = syn.to(BACKEND, BPORT).from(NODE_SRC, port).reply(SYN | ACK);
        let out = h.run(hook, &reply.bytes())?;
        expect_frame(&out, &reply.from(FE, NP).to(CLIENT, CPORT).bytes())?;

        // A client port that is a frontend of the NAT address is never used: the
        // reply would be taken for a new flow to it.
        let mut h = node_port(0, 0)?;
        h.put_service(
            service_key(NODE_SRC, 31000, PROTO_TCP),
            ServiceValue {
                svc_id: 9,
                backend_count: 0,
                flags: 0,
                affinity_timeout_s: 0,
                kind: KIND_NODE_PORT,
                _pad: [0; 3],
            },
        )?;
        let syn = Pkt::tcp(CLIENT, 31000, FE, NP);
        h.run(hook, &syn.bytes())?;
        let fwd = h
            .ct(&ct_key(sa(CLIENT, 31000), sa(FE, NP), PROTO_TCP))?
            .context("forward entry")?;
        ensure!(u16::from_be(fwd.rev_port_be) >= SNAT_PORT_MIN, "{fwd:?}");
        Ok(())
    })
}

#[test]
fn no_route_to_the_endpoint_drops() -> Result<()> {
    in_fib_ns(|hook| {
        // Nothing routes 198.18.77.0/24 in the namespace.
        let h = setup(KIND_NODE_PORT, FE, NP, 0, Ipv4Addr::new(198, 18, 77, 2), 0)?;
        let before = h.counters()?;
        let out = h.run(hook, &Pkt::tcp(CLIENT, CPORT, FE, NP).bytes())?;
        ensure!(out.verdict == Verdict::Drop, "{:?}", out.verdict);
        ensure!(h.counters()?.since(&before) == [("snat_no_route", 1)]);
        ensure!(h.ct_entries()?.is_empty());
        Ok(())
    })
}

#[test]
fn local_endpoint_local_policy_and_cluster_ip_keep_the_client() -> Result<()> {
    in_fib_ns(|hook| {
        let syn = Pkt::tcp(CLIENT, CPORT, FE, NP);
        for (what, h) in [
            ("endpoint on this node", node_port(0, BE_F_LOCAL)?),
            ("externalTrafficPolicy Local", node_port(SVC_F_LOCAL, 0)?),
            ("ClusterIP", setup(KIND_CLUSTER_IP, FE, NP, 0, BACKEND, 0)?),
        ] {
            let out = h.run(hook, &syn.bytes())?;
            expect_frame(&out, &syn.to(BACKEND, BPORT).bytes()).context(what)?;
            let fwd = h
                .ct(&ct_key(sa(CLIENT, CPORT), sa(FE, NP), PROTO_TCP))?
                .context("forward entry")?;
            ensure!(fwd.flags & CT_F_SNAT == 0, "{what}: {fwd:?}");
        }
        Ok(())
    })
}

#[test]
fn hairpin_is_source_natted_to_the_link_local_address() -> Result<()> {
    in_fib_ns(|hook| {
        let vip = Ipv4Addr::new(198, 18, 0, 10);
        let h = setup(KIND_CLUSTER_IP, vip, 80, 0, BACKEND, BE_F_LOCAL)?;
        // The endpoint itself is the client.
        let syn = Pkt::tcp(BACKEND, CPORT, vip, 80);
        let before = h.counters()?;
        let out = h.run(hook, &syn.bytes())?;
        let natted = syn.to(BACKEND, BPORT).from(HAIRPIN, CPORT);
        expect_frame(&out, &natted.bytes())?;
        let moved = h.counters()?.since(&before);
        ensure!(moved == [("fwd_new", 1), ("hairpin_new", 1)], "{moved:?}");
        let reply = natted.reply(SYN | ACK);
        let out = h.run(hook, &reply.bytes())?;
        expect_frame(&out, &reply.from(vip, 80).to(BACKEND, CPORT).bytes())
    })
}

#[test]
fn source_ranges_let_only_listed_sources_into_load_balancers() -> Result<()> {
    in_fib_ns(|hook| {
        let lb = Ipv4Addr::new(198, 18, 200, 10);
        let mut h = setup(
            KIND_LOAD_BALANCER,
            lb,
            80,
            SVC_F_SRC_RANGES,
            BACKEND,
            BE_F_LOCAL,
        )?;
        let outsider = Pkt::tcp(Ipv4Addr::new(198, 18, 101, 2), CPORT, lb, 80);
        // No prefix at all: nobody.
        let before = h.counters()?;
        let out = h.run(hook, &Pkt::tcp(CLIENT, CPORT, lb, 80).bytes())?;
        ensure!(out.verdict == Verdict::Drop);
        ensure!(h.counters()?.since(&before) == [("src_range_drop", 1)]);

        h.put_src_range(SVC_ID, Ipv4Addr::new(198, 18, 100, 0), 24)?;
        // Another service's prefix does not count.
        h.put_src_range(SVC_ID + 1, Ipv4Addr::new(198, 18, 101, 0), 24)?;
        let syn = Pkt::tcp(CLIENT, CPORT, lb, 80);
        let out = h.run(hook, &syn.bytes())?;
        expect_frame(&out, &syn.to(BACKEND, BPORT).bytes())?;
        let before = h.counters()?;
        let out = h.run(hook, &outsider.bytes())?;
        ensure!(out.verdict == Verdict::Drop, "{:?}", out.verdict);
        ensure!(h.counters()?.since(&before) == [("src_range_drop", 1)]);
        ensure!(
            h.ct_entries()?.len() == 2,
            "only the allowed flow is tracked"
        );
        let fwd = h
            .ct(&ct_key(sa(CLIENT, CPORT), sa(lb, 80), PROTO_TCP))?
            .context("forward entry")?;
        ensure!(fwd.flags & CT_F_SRC_RANGES != 0, "{fwd:?}");

        // The tracked flow is checked on every packet: narrowing the list cuts it.
        let ack = syn.flags(ACK).payload(b"more");
        let out = h.run(hook, &ack.bytes())?;
        expect_frame(&out, &ack.to(BACKEND, BPORT).bytes())?;
        h.remove_src_range(SVC_ID, Ipv4Addr::new(198, 18, 100, 0), 24)?;
        let before = h.counters()?;
        let out = h.run(hook, &ack.bytes())?;
        ensure!(out.verdict == Verdict::Drop, "{:?}", out.verdict);
        ensure!(h.counters()?.since(&before) == [("src_range_drop", 1)]);
        Ok(())
    })
}

#[test]
fn local_policy_without_local_endpoint_drops_instead_of_rejecting() -> Result<()> {
    in_fib_ns(|hook| {
        for pkt in [
            Pkt::tcp(CLIENT, CPORT, FE, NP),
            Pkt::udp(CLIENT, CPORT, FE, NP),
        ] {
            let mut h = Harness::load_with(crate::FEATURES)?;
            h.put_service(
                service_key(FE, NP, pkt.l4.proto()),
                ServiceValue {
                    svc_id: SVC_ID,
                    backend_count: 0,
                    flags: SVC_F_LOCAL | SVC_F_NO_LOCAL_DROP,
                    affinity_timeout_s: 0,
                    kind: KIND_NODE_PORT,
                    _pad: [0; 3],
                },
            )?;
            let before = h.counters()?;
            let out = h.run(hook, &pkt.bytes())?;
            // No reset or ICMP (TC), and XDP does not leave it to TC either.
            ensure!(
                out.verdict == Verdict::Drop,
                "{:?}: {:?}",
                pkt.l4,
                out.verdict
            );
            ensure!(h.counters()?.since(&before) == [("no_local_drop", 1)]);
        }
        Ok(())
    })
}
