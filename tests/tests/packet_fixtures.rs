//! Packet fixtures: the real eBPF object through BPF_PROG_TEST_RUN, for the TC and the
//! XDP program alike. Each test builds packets, fills the maps, runs the program and
//! checks the verdict, every output byte against a packet etherparse serialized
//! independently, the checksums recomputed from the bytes, the maps and the counters.
//!
//! Needs root (BPF_PROG_TEST_RUN). `cargo test -p svclb-tests --test packet_fixtures`
use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context as _, Result, ensure};
use svclb_agent::dataplane::ebpf::features::Choice;
use svclb_common::{
    AffinityValue, CT_DIR_FORWARD, CT_DIR_REPLY, CT_F_CLOSING, CtValue, MAP_AFFINITY, MAP_BACKENDS,
    MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_SERVICES, MAP_SLOTS, MAP_SVC_NAMES, MAP_SVC_STATS,
    MAX_AFFINITY, MAX_BACKENDS, MAX_CONNTRACK, MAX_SERVICE_IDS, MAX_SERVICES, MAX_SLOTS, PROTO_TCP,
    PROTO_UDP, SVC_F_AFFINITY, SVC_F_MAGLEV, ServiceKey, ServiceValue,
};
use svclb_tests::packet::{
    build::{
        ACK, FIN, L4, PSH, Pkt, RST, SYN, arp_request, icmp_echo, icmp_port_unreachable,
        ipv6_tcp_syn, tcp_reset,
    },
    check::{headers, same_bytes, verify_checksums},
    harness::{
        Counters, Harness, Hook, Output, Service, Verdict, addr_of_be, ct_key, monotonic_ns,
        service_key,
    },
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const OTHER_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 99);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
const CPORT: u16 = 40000;

fn backend(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 19, n, 2), 8080)
}

/// VIP:80 with backends 1..=n (backend i at 198.19.i.2:8080).
fn service(proto: L4, n: u8) -> Service {
    Service {
        vip: VIP,
        port: 80,
        proto: proto.proto(),
        svc_id: 7,
        flags: 0,
        affinity_timeout_s: 0,
        backends: (1..=n).map(|i| (u32::from(i), backend(i))).collect(),
    }
}

fn client_pkt(proto: L4, sport: u16) -> Pkt {
    match proto {
        L4::Tcp => Pkt::tcp(CLIENT, sport, VIP, 80),
        L4::Udp => Pkt::udp(CLIENT, sport, VIP, 80),
    }
}

/// The feature variants these fixtures run with; packet_baseline.rs runs them again
/// with the oldest kernel's (it includes this file as a module).
#[allow(dead_code)]
const FEATURES: Choice = Choice::Probe;

fn setup(hook: Hook, svc: &Service) -> Result<Harness> {
    let mut h = Harness::load_with(crate::FEATURES).with_context(|| format!("{hook:?}: load"))?;
    h.install(svc)?;
    Ok(h)
}

/// Runs `f` for the TC and the XDP program, naming the hook on failure.
fn each_hook(f: impl Fn(Hook) -> Result<()>) -> Result<()> {
    for hook in Hook::ALL {
        f(hook).with_context(|| format!("with the {hook:?} program"))?;
    }
    Ok(())
}

/// Pass verdict, valid checksums, and exactly the bytes of `want`.
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

/// Pass verdict and the input unchanged.
fn expect_untouched(out: &Output, input: &[u8]) -> Result<()> {
    ensure!(
        out.verdict == Verdict::Pass,
        "verdict {:?} (ret {}), want Pass",
        out.verdict,
        out.ret
    );
    same_bytes(&out.data, input)
}

/// The backend a DNATed frame was sent to.
fn dnat_target(out: &Output) -> Result<SocketAddrV4> {
    let h = headers(&out.data)?;
    let Some(etherparse::NetHeaders::Ipv4(ip, _)) = h.net else {
        anyhow::bail!("not IPv4")
    };
    let port = match h.transport {
        Some(etherparse::TransportHeader::Tcp(t)) => t.destination_port,
        Some(etherparse::TransportHeader::Udp(u)) => u.destination_port,
        _ => anyhow::bail!("no TCP/UDP header"),
    };
    Ok(SocketAddrV4::new(Ipv4Addr::from(ip.destination), port))
}

fn id_of(svc: &Service, a: SocketAddrV4) -> Result<u32> {
    svc.backends
        .iter()
        .find(|(_, b)| *b == a)
        .map(|(id, _)| *id)
        .with_context(|| format!("{a} is no backend"))
}

#[test]
fn tcp_syn_to_cluster_ip_is_dnated() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 1);
        let h = setup(hook, &svc)?;
        let syn = client_pkt(L4::Tcp, CPORT);
        let before = h.counters()?;
        let out = h.run(hook, &syn.bytes())?;
        expect_frame(&out, &syn.to(*backend(1).ip(), 8080).bytes())?;
        ensure!(
            h.counters()?.since(&before) == [("fwd_new", 1)],
            "{:?}",
            h.counters()?.since(&before)
        );

        // Both conntrack entries, with what reverse NAT and purging need.
        let client = SocketAddrV4::new(CLIENT, CPORT);
        let fwd = h.ct(&ct_key(client, SocketAddrV4::new(VIP, 80), PROTO_TCP))?;
        let fwd = fwd.context("no forward entry")?;
        ensure!(
            addr_of_be(fwd.nat_addr_be) == *backend(1).ip()
                && u16::from_be(fwd.nat_port_be) == 8080
        );
        ensure!(
            (fwd.backend_id, fwd.svc_id, fwd.flags, fwd.dir) == (1, 7, 0, CT_DIR_FORWARD),
            "{fwd:?}"
        );
        ensure!(fwd.last_seen_ns > 0 && fwd.last_seen_ns <= monotonic_ns());
        let rep = h
            .ct(&ct_key(backend(1), client, PROTO_TCP))?
            .context("no reply entry")?;
        ensure!(
            addr_of_be(rep.nat_addr_be) == VIP && u16::from_be(rep.nat_port_be) == 80,
            "{rep:?}"
        );
        ensure!((rep.backend_id, rep.svc_id, rep.dir) == (1, 7, CT_DIR_REPLY));
        ensure!(h.ct_entries()?.len() == 2);
        Ok(())
    })
}

#[test]
fn udp_to_cluster_ip_is_dnated() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Udp, 1);
        let h = setup(hook, &svc)?;
        let dgram = client_pkt(L4::Udp, CPORT).payload(&[0xab; 333]);
        let before = h.counters()?;
        let out = h.run(hook, &dgram.bytes())?;
        expect_frame(&out, &dgram.to(*backend(1).ip(), 8080).bytes())?;
        ensure!(h.counters()?.since(&before) == [("fwd_new", 1)]);
        let client = SocketAddrV4::new(CLIENT, CPORT);
        ensure!(h.ct(&ct_key(backend(1), client, PROTO_UDP))?.is_some());
        Ok(())
    })
}

#[test]
fn udp_without_checksum_keeps_zero() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Udp, 1);
        let h = setup(hook, &svc)?;
        let dgram = Pkt {
            udp_no_checksum: true,
            ..client_pkt(L4::Udp, CPORT)
        };
        let out = h.run(hook, &dgram.bytes())?;
        expect_frame(&out, &dgram.to(*backend(1).ip(), 8080).bytes())?;
        let reply = dgram.to(*backend(1).ip(), 8080).reply(0);
        let out = h.run(hook, &reply.bytes())?;
        expect_frame(&out, &reply.from(VIP, 80).bytes())
    })
}

#[test]
fn reply_is_reverse_translated() -> Result<()> {
    each_hook(|hook| {
        for proto in [L4::Tcp, L4::Udp] {
            let svc = service(proto, 1);
            let h = setup(hook, &svc)?;
            let first = client_pkt(proto, CPORT);
            h.run(hook, &first.bytes())?;
            // What the backend sends back: backend → client.
            let flags = if proto == L4::Tcp { SYN | ACK } else { 0 };
            let reply = first
                .to(*backend(1).ip(), 8080)
                .reply(flags)
                .payload(b"answer");
            let before = h.counters()?;
            let out = h.run(hook, &reply.bytes())?;
            expect_frame(&out, &reply.from(VIP, 80).bytes())
                .with_context(|| format!("{proto:?}"))?;
            ensure!(h.counters()?.since(&before) == [("reply", 1)]);
        }
        Ok(())
    })
}

#[test]
fn miss_passes_unchanged() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 1);
        let h = setup(hook, &svc)?;
        let before = h.counters()?;
        let cases = [
            Pkt::tcp(CLIENT, CPORT, OTHER_VIP, 80).bytes(),
            // Right address, wrong port; right port, wrong protocol.
            Pkt::tcp(CLIENT, CPORT, VIP, 81).bytes(),
            Pkt::udp(CLIENT, CPORT, VIP, 80).bytes(),
            // A packet from a backend that belongs to no tracked flow.
            Pkt::tcp(*backend(1).ip(), 8080, CLIENT, CPORT)
                .flags(SYN | ACK)
                .bytes(),
        ];
        for frame in &cases {
            expect_untouched(&h.run(hook, frame)?, frame)?;
        }
        ensure!(
            h.counters()?.since(&before) == [("pass_miss", 4)],
            "{:?}",
            h.counters()?.since(&before)
        );
        ensure!(h.ct_entries()?.is_empty());
        Ok(())
    })
}

#[test]
fn truncated_packets_pass_unwritten() -> Result<()> {
    each_hook(|hook| {
        let tcp_svc = service(L4::Tcp, 1);
        let mut h = setup(hook, &tcp_svc)?;
        h.install(&service(L4::Udp, 1))?;
        let syn = client_pkt(L4::Tcp, CPORT).bytes();
        let dgram = client_pkt(L4::Udp, CPORT).bytes();
        let with_opts = client_pkt(L4::Tcp, CPORT).ip_options(&[1; 40]).bytes();
        let mut ihl_too_small = syn.clone();
        ihl_too_small[14] = 0x44;
        let mut tot_len_too_small = syn.clone();
        tot_len_too_small[16..18].copy_from_slice(&30u16.to_be_bytes());
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            // Ports are there, the checksum is not.
            ("TCP header cut at 10 bytes", syn[..34 + 10].to_vec()),
            ("UDP header cut at 6 bytes", dgram[..34 + 6].to_vec()),
            ("IPv4 options cut", with_opts[..14 + 50].to_vec()),
            ("IHL below 5", ihl_too_small),
            ("total length shorter than the headers", tot_len_too_small),
        ];
        // BPF_PROG_TEST_RUN refuses skbs without a whole IPv4 header (EINVAL on 6.18),
        // so these only run through XDP.
        if hook == Hook::Xdp {
            cases.push(("ethernet only", syn[..14].to_vec()));
            cases.push(("half an IPv4 header", syn[..24].to_vec()));
        }
        for (what, frame) in &cases {
            let before = h.counters()?;
            let out = h.run(hook, frame).with_context(|| what.to_string())?;
            expect_untouched(&out, frame).with_context(|| what.to_string())?;
            ensure!(
                h.counters()?.since(&before) == [("pass_truncated", 1)],
                "{what}: {:?}",
                h.counters()?.since(&before)
            );
        }
        ensure!(h.ct_entries()?.is_empty());
        Ok(())
    })
}

#[test]
fn established_flow_keeps_backend_after_removal() -> Result<()> {
    each_hook(|hook| {
        for proto in [L4::Tcp, L4::Udp] {
            let svc = service(proto, 3);
            let mut h = setup(hook, &svc)?;
            let first = client_pkt(proto, CPORT);
            let target = dnat_target(&h.run(hook, &first.bytes())?)?;
            let gone = id_of(&svc, target)?;

            // The endpoint leaves the Service: out of the slots and the backends map.
            let rest: Vec<u32> = svc
                .backends
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| *id != gone)
                .collect();
            h.set_slots(&svc, &rest)?;
            h.remove_backend(gone)?;

            let next = match proto {
                L4::Tcp => first
                    .clone()
                    .flags(ACK | PSH)
                    .seq_ack(0x0102_0305, 99)
                    .payload(b"GET /"),
                L4::Udp => first.clone().payload(b"second"),
            };
            let before = h.counters()?;
            let out = h.run(hook, &next.bytes())?;
            expect_frame(&out, &next.to(*target.ip(), target.port()).bytes())
                .with_context(|| format!("{proto:?}"))?;
            ensure!(h.counters()?.since(&before) == [("fwd_established", 1)]);
        }
        Ok(())
    })
}

#[test]
fn established_flow_outlives_its_frontend() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 2);
        let mut h = setup(hook, &svc)?;
        let syn = client_pkt(L4::Tcp, CPORT);
        let target = dnat_target(&h.run(hook, &syn.bytes())?)?;

        // The Service goes (its frontend first, as the agent deletes).
        h.hash_mut::<ServiceKey, ServiceValue>(MAP_SERVICES)?
            .remove(&service_key(VIP, 80, PROTO_TCP))?;

        // Its tracked flow keeps going both ways, like a conntrack NAT entry would...
        let ack = syn.clone().flags(ACK).payload(b"GET /");
        let before = h.counters()?;
        let out = h.run(hook, &ack.bytes())?;
        expect_frame(&out, &ack.to(*target.ip(), target.port()).bytes())?;
        let reply = ack
            .to(*target.ip(), target.port())
            .reply(ACK)
            .payload(b"200");
        let out = h.run(hook, &reply.bytes())?;
        expect_frame(&out, &reply.from(VIP, 80).bytes())?;
        ensure!(h.counters()?.since(&before) == [("fwd_established", 1), ("reply", 1)]);

        // ...but nothing new starts: another client port passes untouched.
        let other = client_pkt(L4::Tcp, CPORT + 1);
        let before = h.counters()?;
        let out = h.run(hook, &other.bytes())?;
        ensure!(out.verdict == Verdict::Pass);
        expect_frame(&out, &other.bytes())?;
        ensure!(h.counters()?.since(&before) == [("pass_miss", 1)]);
        Ok(())
    })
}

#[test]
fn new_syn_on_closed_or_orphaned_tuple_picks_again() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 2);
        let mut h = setup(hook, &svc)?;
        let syn = client_pkt(L4::Tcp, CPORT);
        let client = SocketAddrV4::new(CLIENT, CPORT);
        let fwd_key = ct_key(client, SocketAddrV4::new(VIP, 80), PROTO_TCP);
        let target = dnat_target(&h.run(hook, &syn.bytes())?)?;

        // A retransmitted SYN keeps the backend.
        let before = h.counters()?;
        let out = h.run(hook, &syn.bytes())?;
        ensure!(dnat_target(&out)? == target);
        ensure!(h.counters()?.since(&before) == [("fwd_established", 1)]);

        // FIN from the client marks the flow closing; a SYN on the tuple then is new.
        let fin = syn.clone().flags(FIN | ACK).seq_ack(0x0102_0305, 5);
        h.run(hook, &fin.bytes())?;
        ensure!(
            h.ct(&fwd_key)?.context("forward entry")?.flags & CT_F_CLOSING != 0,
            "FIN did not mark closing"
        );
        let before = h.counters()?;
        h.run(hook, &syn.bytes())?;
        ensure!(h.counters()?.since(&before) == [("fwd_new", 1)]);
        ensure!(h.ct(&fwd_key)?.context("forward entry")?.flags & CT_F_CLOSING == 0);

        // RST from the backend marks the forward entry closing too.
        let target = dnat_target(&h.run(hook, &syn.bytes())?)?;
        let rst = syn.to(*target.ip(), target.port()).reply(RST | ACK);
        h.run(hook, &rst.bytes())?;
        ensure!(
            h.ct(&fwd_key)?.context("forward entry")?.flags & CT_F_CLOSING != 0,
            "reply RST did not mark closing"
        );
        h.run(hook, &syn.bytes())?;

        // The flow's backend vanished: a new SYN goes to the one that is left.
        let target = dnat_target(&h.run(hook, &syn.bytes())?)?;
        let gone = id_of(&svc, target)?;
        let left = if gone == 1 { 2 } else { 1 };
        h.set_slots(&svc, &[left])?;
        h.remove_backend(gone)?;
        let before = h.counters()?;
        let out = h.run(hook, &syn.bytes())?;
        expect_frame(&out, &syn.to(*svc.backend(left).ip(), 8080).bytes())?;
        ensure!(h.counters()?.since(&before) == [("fwd_new", 1)]);
        let fwd = h.ct(&fwd_key)?.context("forward entry")?;
        ensure!(fwd.backend_id == left, "{fwd:?}");
        Ok(())
    })
}

#[test]
fn no_endpoints_tcp_gets_rst() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 0);
        let h = setup(hook, &svc)?;
        let syn = client_pkt(L4::Tcp, CPORT).seq_ack(0xffff_fff0, 0);
        // (segment, expected seq, ack, flags): RFC 793 reset generation.
        let data = client_pkt(L4::Tcp, CPORT)
            .flags(ACK | PSH)
            .seq_ack(1000, 777)
            .payload(b"hello");
        let syn_with_data = client_pkt(L4::Tcp, CPORT)
            .seq_ack(5000, 0)
            .payload(b"fastopen");
        let fin = client_pkt(L4::Tcp, CPORT)
            .flags(FIN)
            .seq_ack(9000, 0)
            .ip_options(&[0x94, 4, 0, 0]);
        let cases = [
            (syn.clone(), 0, 0xffff_fff1, RST | ACK),
            (data, 777, 0, RST),
            (syn_with_data, 0, 5009, RST | ACK),
            (fin, 0, 9001, RST | ACK),
        ];
        for (seg, seq, ack, flags) in cases {
            let before = h.counters()?;
            let out = h.run(hook, &seg.bytes())?;
            if hook == Hook::Xdp {
                xdp_leaves_reject_to_tc(&h, &out, &seg.bytes(), &before)?;
                continue;
            }
            ensure!(
                out.verdict == Verdict::Reject,
                "verdict {:?} (ret {})",
                out.verdict,
                out.ret
            );
            verify_checksums(&out.data)?;
            same_bytes(&out.data, &tcp_reset(&seg, seq, ack, flags))?;
            ensure!(
                h.counters()?.since(&before) == [("reject", 1)],
                "{:?}",
                h.counters()?.since(&before)
            );
        }
        ensure!(
            h.ct_entries()?.is_empty(),
            "a reject must not create conntrack entries"
        );
        Ok(())
    })
}

/// XDP does not answer rejects itself (XDP_TX is lost on veth unless the peer runs
/// XDP): it passes the packet unchanged to TC on the same interface and counts that.
fn xdp_leaves_reject_to_tc(
    h: &Harness,
    out: &Output,
    input: &[u8],
    before: &Counters,
) -> Result<()> {
    ensure!(
        out.verdict == Verdict::Pass,
        "XDP verdict {:?} (ret {})",
        out.verdict,
        out.ret
    );
    same_bytes(&out.data, input)?;
    ensure!(
        h.counters()?.since(before) == [("reject_to_tc", 1)],
        "{:?}",
        h.counters()?.since(before)
    );
    Ok(())
}

#[test]
fn no_endpoints_udp_gets_icmp_port_unreachable() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Udp, 0);
        let h = setup(hook, &svc)?;
        let cases = [
            client_pkt(L4::Udp, CPORT).payload(&[7; 200]),
            client_pkt(L4::Udp, CPORT).payload(&[]),
            // Maximum IPv4 options: the whole 60-byte header is quoted.
            client_pkt(L4::Udp, CPORT)
                .ip_options(&[1; 40])
                .payload(b"x"),
        ];
        for dgram in cases {
            let frame = dgram.bytes();
            let before = h.counters()?;
            let out = h.run(hook, &frame)?;
            if hook == Hook::Xdp {
                xdp_leaves_reject_to_tc(&h, &out, &frame, &before)?;
                continue;
            }
            ensure!(
                out.verdict == Verdict::Reject,
                "verdict {:?} (ret {})",
                out.verdict,
                out.ret
            );
            verify_checksums(&out.data)?;
            same_bytes(&out.data, &icmp_port_unreachable(&frame))?;
            let hd = headers(&out.data)?;
            let Some(etherparse::TransportHeader::Icmpv4(icmp)) = hd.transport else {
                anyhow::bail!("not ICMP")
            };
            ensure!(
                matches!(
                    icmp.icmp_type,
                    etherparse::Icmpv4Type::DestinationUnreachable(
                        etherparse::icmpv4::DestUnreachableHeader::Port
                    )
                ),
                "{:?}",
                icmp.icmp_type
            );
            ensure!(h.counters()?.since(&before) == [("reject", 1)]);
        }
        Ok(())
    })
}

#[test]
fn fragments_pass_untouched() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Udp, 1);
        let h = setup(hook, &svc)?;
        let first = Pkt {
            more_fragments: true,
            dont_fragment: false,
            ..client_pkt(L4::Udp, CPORT)
        };
        let later = Pkt {
            frag_offset: 185,
            ..client_pkt(L4::Udp, CPORT)
        };
        let before = h.counters()?;
        for frame in [first.bytes(), later.bytes()] {
            expect_untouched(&h.run(hook, &frame)?, &frame)?;
        }
        ensure!(h.counters()?.since(&before) == [("pass_fragment", 2)]);
        ensure!(h.ct_entries()?.is_empty());
        Ok(())
    })
}

#[test]
fn ip_options_are_handled() -> Result<()> {
    each_hook(|hook| {
        for (proto, opts) in [
            (L4::Tcp, vec![0x94, 4, 0, 0]),
            (L4::Udp, vec![1; 40]),
            (L4::Tcp, vec![1; 40]),
        ] {
            let svc = service(proto, 1);
            let h = setup(hook, &svc)?;
            let pkt = client_pkt(proto, CPORT).ip_options(&opts).payload(b"data");
            let out = h.run(hook, &pkt.bytes())?;
            expect_frame(&out, &pkt.to(*backend(1).ip(), 8080).bytes())
                .with_context(|| format!("{proto:?} {opts:?}"))?;
            let reply = pkt.to(*backend(1).ip(), 8080).reply(ACK);
            let out = h.run(hook, &reply.bytes())?;
            expect_frame(&out, &reply.from(VIP, 80).bytes())?;
        }
        Ok(())
    })
}

#[test]
fn other_traffic_passes_untouched() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 1);
        let h = setup(hook, &svc)?;
        let before = h.counters()?;
        for frame in [ipv6_tcp_syn(80), arp_request(CLIENT, VIP)] {
            expect_untouched(&h.run(hook, &frame)?, &frame)?;
        }
        let echo = icmp_echo(CLIENT, VIP);
        expect_untouched(&h.run(hook, &echo)?, &echo)?;
        ensure!(h.counters()?.since(&before) == [("pass_not_ipv4", 2), ("pass_other_proto", 1)]);
        Ok(())
    })
}

#[test]
fn missing_slot_or_backend_drops() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 1);
        let mut h = setup(hook, &svc)?;
        // The count says 2 but slot 1 is not written yet; then slot 0's backend is gone.
        h.put_service(svc.key(), svc.value(2))?;
        let mut drops = 0;
        for sport in 0..64 {
            let out = h.run(hook, &client_pkt(L4::Tcp, 1000 + sport).bytes())?;
            match out.verdict {
                Verdict::Drop => drops += 1,
                Verdict::Pass => ensure!(dnat_target(&out)? == backend(1)),
                v => anyhow::bail!("verdict {v:?}"),
            }
        }
        ensure!(
            drops > 0 && drops < 64,
            "{drops} of 64 dropped, want some (random slot 1 of 2)"
        );
        h.put_service(svc.key(), svc.value(1))?;
        h.remove_backend(1)?;
        let before = h.counters()?;
        let out = h.run(hook, &client_pkt(L4::Tcp, 2000).bytes())?;
        ensure!(out.verdict == Verdict::Drop, "verdict {:?}", out.verdict);
        ensure!(h.counters()?.since(&before) == [("drop", 1)]);
        Ok(())
    })
}

#[test]
fn session_affinity_until_timeout() -> Result<()> {
    each_hook(|hook| {
        let svc = Service {
            flags: SVC_F_AFFINITY,
            affinity_timeout_s: 10,
            ..service(L4::Tcp, 3)
        };
        let mut h = setup(hook, &svc)?;
        let first = dnat_target(&h.run(hook, &client_pkt(L4::Tcp, 1000).bytes())?)?;
        let chosen = id_of(&svc, first)?;
        let aff = h
            .affinity(CLIENT, svc.svc_id)?
            .context("no affinity entry")?;
        ensure!(aff.backend_id == chosen);

        // New connections of the same client: same backend (random would differ with
        // probability 1 - 3^-20), each counted as an affinity hit.
        let before = h.counters()?;
        for sport in 1001..1021 {
            let out = h.run(hook, &client_pkt(L4::Tcp, sport).bytes())?;
            ensure!(dnat_target(&out)? == first, "sport {sport} went elsewhere");
        }
        ensure!(h.counters()?.since(&before) == [("fwd_new", 20), ("affinity_hit", 20)]);

        // Affinity wins over the slots while fresh: the backend leaves the slots (but
        // still exists, e.g. terminating) and the client still gets it...
        let others: Vec<u32> = (1..=3).filter(|id| *id != chosen).collect();
        h.set_slots(&svc, &others)?;
        ensure!(dnat_target(&h.run(hook, &client_pkt(L4::Tcp, 1100).bytes())?)? == first);
        // ...also when another CPU stamped the entry a little later than this CPU's
        // clock reads (each CPU caches its own read per tick): that is no expiry.
        h.put_affinity(
            CLIENT,
            svc.svc_id,
            AffinityValue {
                backend_id: chosen,
                _pad: 0,
                last_used_ns: monotonic_ns() + 500_000_000,
            },
        )?;
        ensure!(
            dnat_target(&h.run(hook, &client_pkt(L4::Tcp, 1099).bytes())?)? == first,
            "an entry stamped slightly ahead was taken for expired"
        );
        // ...until the entry is older than the timeout: then a slot decides.
        let stale = monotonic_ns() - 11_000_000_000;
        h.put_affinity(
            CLIENT,
            svc.svc_id,
            AffinityValue {
                backend_id: chosen,
                _pad: 0,
                last_used_ns: stale,
            },
        )?;
        let before = h.counters()?;
        let now = dnat_target(&h.run(hook, &client_pkt(L4::Tcp, 1101).bytes())?)?;
        ensure!(now != first, "stale affinity was used");
        ensure!(h.counters()?.since(&before) == [("fwd_new", 1)]);
        let aff = h
            .affinity(CLIENT, svc.svc_id)?
            .context("no affinity entry")?;
        ensure!(
            aff.backend_id == id_of(&svc, now)? && aff.last_used_ns > stale,
            "{aff:?}"
        );

        // A fresh entry whose backend no longer exists is not used either.
        h.remove_backend(aff.backend_id)?;
        let left: Vec<u32> = others
            .iter()
            .copied()
            .filter(|id| *id != aff.backend_id)
            .collect();
        h.set_slots(&svc, &left)?;
        let out = h.run(hook, &client_pkt(L4::Tcp, 1102).bytes())?;
        ensure!(dnat_target(&out)? == svc.backend(left[0]));

        // Another client is not affected by this client's entry.
        let other = Pkt::tcp(Ipv4Addr::new(198, 18, 100, 3), 1000, VIP, 80);
        let before = h.counters()?;
        h.run(hook, &other.bytes())?;
        ensure!(h.counters()?.since(&before) == [("fwd_new", 1)]);
        Ok(())
    })
}

#[test]
fn new_flows_spread_fairly() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 3);
        let h = setup(hook, &svc)?;
        let mut hits = [0u32; 3];
        const FLOWS: u32 = 3000;
        for i in 0..FLOWS {
            let src = Ipv4Addr::new(198, 18, 100, 2 + (i / 1000) as u8);
            let pkt = Pkt::tcp(src, 10_000 + (i % 1000) as u16, VIP, 80);
            let id = id_of(&svc, dnat_target(&h.run(hook, &pkt.bytes())?)?)?;
            hits[id as usize - 1] += 1;
        }
        // Expected 1000 each, σ ≈ 26: 600 is 15σ away.
        ensure!(
            hits.iter().all(|n| *n >= FLOWS / 5),
            "unfair spread {hits:?}"
        );
        Ok(())
    })
}

#[test]
fn maglev_hashes_the_tuple() -> Result<()> {
    each_hook(|hook| {
        let svc = Service {
            flags: SVC_F_MAGLEV,
            ..service(L4::Udp, 3)
        };
        let mut h = setup(hook, &svc)?;
        let flows: Vec<Pkt> = (0..300).map(|i| client_pkt(L4::Udp, 20_000 + i)).collect();
        let mut first = Vec::new();
        let mut hits = [0u32; 3];
        for f in &flows {
            let to = dnat_target(&h.run(hook, &f.bytes())?)?;
            hits[id_of(&svc, to)? as usize - 1] += 1;
            first.push(to);
        }
        // Without conntrack the same tuple lands on the same backend.
        for (k, _) in h.ct_entries()? {
            h.ct_remove(&k)?;
        }
        for (f, want) in flows.iter().zip(&first) {
            ensure!(
                dnat_target(&h.run(hook, &f.bytes())?)? == *want,
                "flow {} moved",
                f.sport
            );
        }
        ensure!(hits.iter().all(|n| *n >= 60), "hash spread {hits:?}");
        Ok(())
    })
}

#[test]
fn per_service_stats_count_forward_packets() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Tcp, 1);
        let h = setup(hook, &svc)?;
        let a = client_pkt(L4::Tcp, CPORT).bytes();
        let b = client_pkt(L4::Tcp, CPORT)
            .flags(ACK)
            .payload(&[1; 100])
            .bytes();
        h.run(hook, &a)?;
        h.run(hook, &b)?;
        // Replies and misses are not the service's forward traffic.
        h.run(
            hook,
            &client_pkt(L4::Tcp, CPORT)
                .to(*backend(1).ip(), 8080)
                .reply(SYN | ACK)
                .bytes(),
        )?;
        h.run(hook, &Pkt::tcp(CLIENT, CPORT, OTHER_VIP, 80).bytes())?;
        let s = h.svc_stats(svc.svc_id)?;
        ensure!(
            s.packets == 2 && s.bytes == (a.len() + b.len()) as u64,
            "{s:?}"
        );
        Ok(())
    })
}

#[test]
fn established_timestamp_is_refreshed_at_most_every_second() -> Result<()> {
    each_hook(|hook| {
        let svc = service(L4::Udp, 1);
        let mut h = setup(hook, &svc)?;
        let pkt = client_pkt(L4::Udp, CPORT);
        let key = ct_key(
            SocketAddrV4::new(CLIENT, CPORT),
            SocketAddrV4::new(VIP, 80),
            PROTO_UDP,
        );
        h.run(hook, &pkt.bytes())?;
        let created = h.ct(&key)?.context("forward entry")?;
        h.run(hook, &pkt.bytes())?;
        ensure!(
            h.ct(&key)?.context("forward entry")? == created,
            "rewritten within a second"
        );
        // Age the entry: the next packet refreshes it.
        let old = CtValue {
            last_seen_ns: created.last_seen_ns - 5_000_000_000,
            ..created
        };
        h.hash_mut::<_, CtValue>(MAP_CONNTRACK)?
            .insert(key, old, 0)?;
        h.run(hook, &pkt.bytes())?;
        let now = h.ct(&key)?.context("forward entry")?;
        ensure!(
            now.last_seen_ns >= created.last_seen_ns,
            "not refreshed: {now:?}"
        );
        Ok(())
    })
}

/// The object declares every ABI map with the ABI's capacity (the fixtures above load
/// it with smaller ones).
#[test]
fn object_declares_the_abi_maps() -> Result<()> {
    let h = Harness::load_full()?;
    let want = [
        (MAP_SERVICES, MAX_SERVICES),
        (MAP_SLOTS, MAX_SLOTS),
        (MAP_BACKENDS, MAX_BACKENDS),
        (MAP_CONNTRACK, MAX_CONNTRACK),
        (MAP_AFFINITY, MAX_AFFINITY),
        (MAP_COUNTERS, svclb_common::COUNTER_COUNT),
        (MAP_SVC_STATS, MAX_SERVICE_IDS),
        (MAP_CONFIG, 1),
        (MAP_SVC_NAMES, MAX_SERVICE_IDS),
        (svclb_common::MAP_SRC_RANGES, svclb_common::MAX_SRC_RANGES),
    ];
    for (name, max) in want {
        let map = h
            .ebpf()
            .map(name)
            .with_context(|| format!("{name} missing"))?;
        let info = match map {
            aya::maps::Map::HashMap(d)
            | aya::maps::Map::LruHashMap(d)
            | aya::maps::Map::PerCpuArray(d)
            | aya::maps::Map::Array(d)
            | aya::maps::Map::LpmTrie(d) => d.info()?,
            _ => anyhow::bail!("{name}: unexpected map type"),
        };
        ensure!(
            info.max_entries() == max,
            "{name}: {} entries, want {max}",
            info.max_entries()
        );
    }
    Ok(())
}
