use std::collections::BTreeMap;

use svclb_common::{KIND_CLUSTER_IP, PROTO_TCP, SVC_F_AFFINITY, SVC_F_MAGLEV};

use super::*;

const S: u64 = 1_000_000_000;

/// In-memory maps: what the pins would hold.
#[derive(Default)]
struct Fixture {
    services: BTreeMap<ServiceKey, ServiceValue>,
    slots: BTreeMap<SlotKey, u32>,
    backends: BTreeMap<u32, Backend>,
    ct: BTreeMap<CtKey, CtValue>,
    affinity: BTreeMap<AffinityKey, AffinityValue>,
}

impl FlowMaps for Fixture {
    fn service(&self, k: &ServiceKey) -> Result<Option<ServiceValue>> {
        Ok(self.services.get(k).copied())
    }
    fn slot(&self, k: &SlotKey) -> Result<Option<u32>> {
        Ok(self.slots.get(k).copied())
    }
    fn backend(&self, id: u32) -> Result<Option<Backend>> {
        Ok(self.backends.get(&id).copied())
    }
    fn conntrack(&self, k: &CtKey) -> Result<Option<CtValue>> {
        Ok(self.ct.get(k).copied())
    }
    fn affinity(&self, k: &AffinityKey) -> Result<Option<AffinityValue>> {
        Ok(self.affinity.get(k).copied())
    }
    fn name(&self, svc_id: u32) -> Result<Option<String>> {
        Ok((svc_id == 7).then(|| "default/web:http/TCP".to_owned()))
    }
}

fn be_addr(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

fn pod(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, n, 2)
}

/// 198.18.0.10:80/TCP, set 7, backends 1..=3 at pod n:8080, one slot each.
fn web(flags: u16) -> Fixture {
    let mut f = Fixture::default();
    f.services.insert(
        ServiceKey {
            addr_be: be_addr(Ipv4Addr::new(198, 18, 0, 10)),
            port_be: 80u16.to_be(),
            proto: PROTO_TCP,
            scope: 0,
        },
        ServiceValue {
            svc_id: 7,
            backend_count: 3,
            flags,
            affinity_timeout_s: 3,
            kind: KIND_CLUSTER_IP,
            _pad: [0; 3],
        },
    );
    for i in 1..=3u8 {
        f.backends.insert(
            u32::from(i),
            Backend {
                addr_be: be_addr(pod(i)),
                port_be: 8080u16.to_be(),
                proto: PROTO_TCP,
                flags: 0,
            },
        );
        f.slots.insert(
            SlotKey {
                svc_id: 7,
                slot: u32::from(i) - 1,
            },
            u32::from(i),
        );
    }
    f
}

fn flow(s: &str) -> FlowSpec {
    s.parse().unwrap()
}

const F: &str = "198.19.4.2:40000-198.18.0.10:80/tcp";

#[test]
fn parse_and_reject_bad_input() {
    let f = flow("198.19.4.2:40000-198.18.0.10:80/UDP");
    assert_eq!(f.proto, Proto::Udp);
    assert_eq!(f.src, "198.19.4.2:40000".parse().unwrap());
    assert_eq!(f.to_string(), "198.19.4.2:40000-198.18.0.10:80/UDP");
    for bad in [
        "198.19.4.2:1-198.18.0.10:80",
        "1.2.3.4:1/tcp",
        "1.2.3.4:1-1.2.3.5:2/sctp",
        "x:1-1.2.3.5:2/tcp",
    ] {
        let e = bad.parse::<FlowSpec>().unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn no_service_and_reply() {
    let f = web(0);
    let v = explain(&f, &flow("198.19.4.2:40000-198.18.0.99:80/tcp"), 0).unwrap();
    assert_eq!(v.decision, Decision::NoService);
    assert!(v.frontend.is_none() && v.backend.is_none());

    // The backend's answer to a tracked flow.
    let mut f = web(0);
    let reply = flow("198.19.1.2:8080-198.19.4.2:40000/tcp");
    f.ct.insert(
        reply.ct_key(),
        CtValue {
            dir: CT_DIR_REPLY,
            nat_addr_be: be_addr(Ipv4Addr::new(198, 18, 0, 10)),
            nat_port_be: 80u16.to_be(),
            backend_id: 1,
            svc_id: 7,
            ..Default::default()
        },
    );
    let v = explain(&f, &reply, 0).unwrap();
    assert_eq!(v.decision, Decision::Reply);
    let ct = v.conntrack.unwrap();
    assert_eq!(
        (ct.nat_address, ct.nat_port),
        (Ipv4Addr::new(198, 18, 0, 10), 80)
    );
}

#[test]
fn random_lists_every_backend_with_equal_odds() {
    let f = web(0);
    let v = explain(&f, &flow(F), 0).unwrap();
    assert_eq!(v.decision, Decision::Random);
    assert_eq!(v.backend, None);
    assert_eq!(v.frontend.as_ref().unwrap().service, "default/web:http/TCP");
    let got: Vec<(Ipv4Addr, f64)> = v
        .candidates
        .iter()
        .map(|c| (c.backend.address, c.odds))
        .collect();
    assert_eq!(
        got,
        vec![
            (pod(1), 1.0 / 3.0),
            (pod(2), 1.0 / 3.0),
            (pod(3), 1.0 / 3.0)
        ]
    );
}

#[test]
fn conntrack_wins_then_closing_tcp_chooses_again() {
    let mut f = web(0);
    let fl = flow(F);
    let ct = CtValue {
        nat_addr_be: be_addr(pod(2)),
        nat_port_be: 8080u16.to_be(),
        backend_id: 2,
        svc_id: 7,
        last_seen_ns: 5 * S,
        ..Default::default()
    };
    f.ct.insert(fl.ct_key(), ct);
    let v = explain(&f, &fl, 7 * S).unwrap();
    assert_eq!(v.decision, Decision::Conntrack);
    assert_eq!(v.backend.as_ref().unwrap().address, pod(2));
    assert_eq!(v.conntrack.as_ref().unwrap().idle_ms, 2000);

    // Backend removed from the Service: a tracked TCP flow keeps it...
    f.backends.remove(&2);
    let v = explain(&f, &fl, 7 * S).unwrap();
    // ...but a new SYN on the tuple picks again (the entry is orphaned).
    assert_eq!(v.decision, Decision::Random, "{v:?}");
    assert!(!v.conntrack.as_ref().unwrap().backend_present);
    assert!(v.reason.contains("orphaned"), "{}", v.reason);

    // UDP has no SYN: the entry is used as long as it exists (the agent purges it).
    let mut f = web(0);
    let key = ServiceKey {
        addr_be: be_addr(Ipv4Addr::new(198, 18, 0, 10)),
        port_be: 80u16.to_be(),
        proto: svclb_common::PROTO_UDP,
        scope: 0,
    };
    f.services
        .insert(key, f.services.values().next().copied().unwrap());
    let udp = flow("198.19.4.2:40000-198.18.0.10:80/udp");
    f.ct.insert(
        udp.ct_key(),
        CtValue {
            flags: CT_F_CLOSING,
            ..ct
        },
    );
    assert_eq!(
        explain(&f, &udp, 7 * S).unwrap().decision,
        Decision::Conntrack
    );
}

#[test]
fn reject_without_endpoints() {
    let mut f = web(0);
    for v in f.services.values_mut() {
        v.backend_count = 0;
    }
    let v = explain(&f, &flow(F), 0).unwrap();
    assert_eq!(v.decision, Decision::Reject);
    assert!(v.reason.contains("reject (no endpoints)"));
}

#[test]
fn affinity_until_timeout_and_only_with_a_live_backend() {
    let mut f = web(SVC_F_AFFINITY);
    let fl = flow(F);
    let akey = AffinityKey {
        client_addr_be: be_addr(pod(4)),
        svc_id: 7,
    };
    f.affinity.insert(
        akey,
        AffinityValue {
            backend_id: 3,
            _pad: 0,
            last_used_ns: 10 * S,
        },
    );
    let v = explain(&f, &fl, 12 * S).unwrap();
    assert_eq!(v.decision, Decision::Affinity);
    assert_eq!(v.backend.as_ref().unwrap().address, pod(3));
    let a = v.affinity.as_ref().unwrap();
    assert_eq!((a.age_ms, a.timeout_s, a.fresh), (2000, 3, true));

    // Idle for the timeout (3 s): a new choice.
    let v = explain(&f, &fl, 13 * S).unwrap();
    assert_eq!(v.decision, Decision::Random);
    assert!(!v.affinity.as_ref().unwrap().fresh);
    assert!(v.reason.contains("expired"), "{}", v.reason);

    // Another client has no entry.
    let other = flow("198.19.5.2:40000-198.18.0.10:80/tcp");
    assert_eq!(
        explain(&f, &other, 12 * S).unwrap().decision,
        Decision::Random
    );

    // The backend is gone: a new choice.
    f.backends.remove(&3);
    let v = explain(&f, &fl, 12 * S).unwrap();
    assert_eq!(v.decision, Decision::Random);
    assert!(v.reason.contains("gone"), "{}", v.reason);
}

#[test]
fn maglev_slot_is_the_flow_hash_modulo_the_table() {
    let mut f = web(SVC_F_MAGLEV);
    // A 251-entry table: slot i → backend 1 + i % 3.
    for v in f.services.values_mut() {
        v.backend_count = 251;
    }
    for slot in 0..251u32 {
        f.slots.insert(SlotKey { svc_id: 7, slot }, 1 + slot % 3);
    }
    let fl = flow(F);
    let v = explain(&f, &fl, 0).unwrap();
    assert_eq!(v.decision, Decision::Maglev);
    let m = v.maglev.as_ref().unwrap();
    let (s, d, sp, dp, p) = (
        u32::from_ne_bytes([198, 19, 4, 2]),
        u32::from_ne_bytes([198, 18, 0, 10]),
        u16::from_ne_bytes(40000u16.to_be_bytes()),
        u16::from_ne_bytes(80u16.to_be_bytes()),
        PROTO_TCP,
    );
    assert_eq!(m.hash, flow_hash(s, d, sp, dp, p));
    assert_eq!(m.slot, m.hash % 251);
    assert_eq!(v.backend.as_ref().unwrap().id, 1 + m.slot % 3);
    assert!(render_text(&v).contains(&format!("slot {}", m.slot)));
}

#[test]
fn source_nat_is_shown_both_ways() {
    // NodePort flow 198.19.4.2:40000 → 198.18.100.1:30080 to pod 2 on another node,
    // source-NATed to the node address 198.18.100.1:40000.
    let mut f = web(0);
    let node = Ipv4Addr::new(198, 18, 100, 1);
    let fwd = flow("198.19.4.2:40000-198.18.100.1:30080/tcp");
    let snat = |dir, nat: (Ipv4Addr, u16), rev: (Ipv4Addr, u16)| CtValue {
        dir,
        flags: CT_F_SNAT,
        nat_addr_be: be_addr(nat.0),
        nat_port_be: nat.1.to_be(),
        rev_addr_be: be_addr(rev.0),
        rev_port_be: rev.1.to_be(),
        backend_id: 2,
        svc_id: 7,
        ..Default::default()
    };
    f.ct.insert(
        fwd.ct_key(),
        snat(CT_DIR_FORWARD, (pod(2), 8080), (node, 40000)),
    );
    let reply = flow("198.19.1.3:8080-198.18.100.1:40000/tcp");
    f.ct.insert(
        reply.ct_key(),
        snat(
            CT_DIR_REPLY,
            (node, 30080),
            (Ipv4Addr::new(198, 19, 4, 2), 40000),
        ),
    );

    let v = explain(&f, &fwd, 0).unwrap();
    assert_eq!(v.decision, Decision::Conntrack, "{v:?}");
    assert!(
        v.reason.contains("source-NATed to 198.18.100.1:40000"),
        "{}",
        v.reason
    );
    // No frontend in this fixture (it went): the flow still names its backend.
    assert!(v.frontend.is_none());
    assert_eq!(
        v.backend.as_ref().map(|b| (b.address, b.port)),
        Some((pod(2), 8080))
    );
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["conntrack"]["snat"], "198.18.100.1:40000", "{json:#}");
    assert!(render_text(&v).contains("leave with source 198.18.100.1:40000"));

    let v = explain(&f, &reply, 0).unwrap();
    assert_eq!(v.decision, Decision::Reply);
    assert!(
        v.reason.contains("the client 198.19.4.2:40000"),
        "{}",
        v.reason
    );
    assert!(render_text(&v).contains("back to the client 198.19.4.2:40000"));

    // A flow without source NAT says nothing about it.
    let plain = explain(&web(0), &fwd, 0).unwrap();
    assert!(
        serde_json::to_value(&plain).unwrap()["conntrack"]
            .get("snat")
            .is_none()
    );
}
