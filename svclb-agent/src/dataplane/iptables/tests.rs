//! Rule generation, per-chain diffs and the dump parser, byte for byte on small states.
use std::{collections::BTreeMap, net::Ipv4Addr};

use super::{
    dump::{Saved, build, parse_save},
    names::SetName,
    restore::{Applied, delete_all, payload},
    rules::{Chains, Table, generate},
};
use crate::model::{
    BackendAddr, BackendSet, DesiredState, Endpoint, Frontend, FrontendKind, Proto, SetKey,
};

fn ep(last: u8, port: u16, proto: Proto) -> Endpoint {
    Endpoint {
        backend: BackendAddr {
            addr: Ipv4Addr::new(198, 19, last, 2),
            port,
            proto,
        },
        terminating: false,
        local: false,
    }
}

fn fe(a: [u8; 4], port: u16, proto: Proto) -> Frontend {
    Frontend {
        addr: Ipv4Addr::from(a),
        port,
        proto,
        scope: Default::default(),
    }
}

/// web: ClusterIP 198.18.0.10:80 and NodePort 198.18.100.1:30080 → pod1, pod2 :8080.
fn web() -> (SetKey, BackendSet) {
    let set = BackendSet {
        endpoints: vec![ep(1, 8080, Proto::Tcp), ep(2, 8080, Proto::Tcp)],
        frontends: BTreeMap::from([
            (
                fe([198, 18, 0, 10], 80, Proto::Tcp),
                FrontendKind::ClusterIp,
            ),
            (
                fe([198, 18, 100, 1], 30080, Proto::Tcp),
                FrontendKind::NodePort,
            ),
        ]),
        ..Default::default()
    };
    (SetKey("default/web:http/TCP".into()), set)
}

fn state(sets: impl IntoIterator<Item = (SetKey, BackendSet)>) -> DesiredState {
    DesiredState {
        sets: sets.into_iter().collect(),
    }
}

fn fresh() -> Applied {
    Applied::new()
}

fn applied(chains: &Chains) -> Applied {
    chains
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

const FIXED_NAT: &str = "\
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully
";
const NODEPORTS_LAST: &str = "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n";

#[test]
fn a_cluster_ip_and_node_port_service_is_kube_proxys_rule_set() {
    let (key, set) = web();
    let n = SetName::parse(&key).unwrap();
    let (svc, ext) = (n.svc_chain(), n.ext_chain());
    let sep1 = n.sep_chain(&set.endpoints[0].backend);
    let sep2 = n.sep_chain(&set.endpoints[1].backend);
    // Declarations in name order (the BTreeMap's), then each chain's rules in that order.
    let mut decl = vec![
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-SERVICES",
        &ext,
        &sep1,
        &sep2,
        &svc,
    ];
    decl.sort();
    let mut want = String::from(
        "*filter\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-SERVICES - [0:0]\n\
         -A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
         COMMIT\n*nat\n",
    );
    for c in &decl {
        want += &format!(":{c} - [0:0]\n");
    }
    let mut body: BTreeMap<&str, String> = BTreeMap::new();
    body.insert(&ext, format!(
        "-A {ext} -m comment --comment \"masquerade traffic for default/web:http/TCP external destinations\" -j KUBE-MARK-MASQ\n-A {ext} -j {svc}\n"
    ));
    body.insert(
        "KUBE-MARK-MASQ",
        FIXED_NAT
            .lines()
            .take(1)
            .map(|l| format!("{l}\n"))
            .collect(),
    );
    body.insert("KUBE-NODEPORTS", format!(
        "-A KUBE-NODEPORTS -d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP nodePort\" -m tcp --dport 30080 -j {ext}\n"
    ));
    body.insert(
        "KUBE-POSTROUTING",
        FIXED_NAT
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect(),
    );
    body.insert("KUBE-SERVICES", format!(
        "-A KUBE-SERVICES -d 198.18.0.10/32 -p tcp -m comment --comment \"default/web:http/TCP cluster IP\" -m tcp --dport 80 -j {svc}\n{NODEPORTS_LAST}"
    ));
    for (sep, last) in [(&sep1, 1), (&sep2, 2)] {
        body.insert(sep, format!(
            "-A {sep} -s 198.19.{last}.2/32 -m comment --comment \"default/web:http/TCP\" -j KUBE-MARK-MASQ\n\
             -A {sep} -p tcp -m comment --comment \"default/web:http/TCP\" -m tcp -j DNAT --to-destination 198.19.{last}.2:8080\n"
        ));
    }
    body.insert(&svc, format!(
        "-A {svc} -m comment --comment \"default/web:http/TCP -> 198.19.1.2:8080\" -m statistic --mode random --probability 0.5000000000 -j {sep1}\n\
         -A {svc} -m comment --comment \"default/web:http/TCP -> 198.19.2.2:8080\" -j {sep2}\n"
    ));
    for c in &decl {
        want += &body[c];
    }
    want += "COMMIT\n";
    let chains = generate(&state([web()])).unwrap();
    let (text, count) = payload(&chains, &fresh()).unwrap();
    assert_eq!(text, want);
    assert_eq!(count, 3 + decl.len());
}

/// web with `127.0.0.1:30080` and, as under `externalTrafficPolicy: Local`, the node's
/// own view of its NodePort: host-scope frontends.
fn web_with_host_scope() -> (SetKey, BackendSet) {
    let (key, mut set) = web();
    for addr in [[127, 0, 0, 1], [198, 18, 100, 1]] {
        let mut f = fe(addr, 30080, Proto::Tcp);
        f.scope = crate::model::Scope::Host;
        set.frontends.insert(f, FrontendKind::NodePort);
    }
    (key, set)
}

#[test]
fn host_scope_frontends_match_local_sources_first_and_are_masqueraded() {
    let (key, set) = web_with_host_scope();
    let n = SetName::parse(&key).unwrap();
    let ext = n.ext_chain();
    let chains = generate(&state([(key, set)])).unwrap();
    let nodeports = &chains[&(Table::Nat, "KUBE-NODEPORTS".to_owned())];
    let local = " -m addrtype --src-type LOCAL";
    assert_eq!(
        nodeports,
        &[
            format!(
                "-d 127.0.0.1/32 -p tcp -m comment --comment \"default/web:http/TCP nodePort\" -m tcp --dport 30080{local} -j {ext}"
            ),
            format!(
                "-d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP nodePort\" -m tcp --dport 30080{local} -j {ext}"
            ),
            format!(
                "-d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP nodePort\" -m tcp --dport 30080 -j {ext}"
            ),
        ]
    );
    // The external chain masquerades all it gets (a 127.0.0.1 source cannot leave).
    assert!(chains[&(Table::Nat, ext.clone())][0].ends_with("-j KUBE-MARK-MASQ"));
    // And dump says which rules only the node's own clients reach.
    let (text, _) = payload(&chains, &fresh()).unwrap();
    let mut saved = Saved::new();
    parse_save(&text, &mut saved);
    let view = build(&saved).unwrap();
    let scopes: Vec<(String, &str)> = view
        .frontends
        .iter()
        .map(|f| (format!("{}:{}", f.address, f.port), f.scope))
        .collect();
    assert_eq!(
        scopes,
        [
            ("198.18.0.10:80".to_owned(), "all"),
            ("127.0.0.1:30080".to_owned(), "node-local"),
            ("198.18.100.1:30080".to_owned(), "node-local"),
            ("198.18.100.1:30080".to_owned(), "all"),
        ]
    );
}

#[test]
fn without_localhost_node_ports_loopback_never_reaches_them() {
    let opts = super::rules::RuleOptions {
        localhost_node_ports: false,
    };
    let chains = super::rules::generate_with(&state([web()]), opts).unwrap();
    let services = &chains[&(Table::Nat, "KUBE-SERVICES".to_owned())];
    assert!(
        services
            .last()
            .unwrap()
            .ends_with("-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"),
        "{services:?}"
    );
    // No route_localnet, so no guard for it either.
    assert_eq!(
        chains[&(Table::Filter, "KUBE-FIREWALL".to_owned())],
        Vec::<String>::new()
    );
}

#[test]
fn probabilities_are_one_over_n_down_to_one() {
    let (key, mut set) = web();
    set.endpoints = (1..=4).map(|i| ep(i, 8080, Proto::Tcp)).collect();
    let n = SetName::parse(&key).unwrap();
    let chains = generate(&state([(key, set)])).unwrap();
    let rules = &chains[&(Table::Nat, n.svc_chain())];
    let probs: Vec<&str> = rules
        .iter()
        .map(|r| {
            r.split("--probability ")
                .nth(1)
                .map_or("-", |p| p.split(' ').next().unwrap())
        })
        .collect();
    assert_eq!(probs, ["0.2500000000", "0.3333333333", "0.5000000000", "-"]);
}

#[test]
fn affinity_checks_recent_then_sets_it_in_the_endpoint_chain() {
    let (key, mut set) = web();
    set.affinity_timeout_s = Some(10800);
    let n = SetName::parse(&key).unwrap();
    let sep1 = n.sep_chain(&set.endpoints[0].backend);
    let chains = generate(&state([(key, set)])).unwrap();
    let svc = &chains[&(Table::Nat, n.svc_chain())];
    assert_eq!(svc.len(), 4);
    assert_eq!(
        svc[0],
        format!(
            "-m comment --comment \"default/web:http/TCP -> 198.19.1.2:8080\" -m recent --name {sep1} --mask 255.255.255.255 --rsource --rcheck --seconds 10800 --reap -j {sep1}"
        )
    );
    assert_eq!(
        chains[&(Table::Nat, sep1)][1],
        "-p tcp -m comment --comment \"default/web:http/TCP\" -m recent --name KUBE-SEP-"
            .to_owned()
            + &n.sep_chain(&ep(1, 8080, Proto::Tcp).backend)[9..]
            + " --mask 255.255.255.255 --rsource --set -m tcp -j DNAT --to-destination 198.19.1.2:8080"
    );
}

#[test]
fn local_policy_keeps_the_client_address_and_uses_local_endpoints_only() {
    let (key, mut set) = web();
    set.local_policy = true;
    set.frontends.retain(|_, k| *k == FrontendKind::NodePort);
    let key = SetKey(format!("{}@ext", key.0));
    let n = SetName::parse(&key).unwrap();
    let chains = generate(&state([(key, set)])).unwrap();
    assert!(chains.contains_key(&(Table::Nat, n.svl_chain())));
    assert!(!chains.contains_key(&(Table::Nat, n.svc_chain())));
    assert_eq!(
        chains[&(Table::Nat, n.ext_chain())],
        [
            "-m comment --comment \"masquerade LOCAL traffic for default/web:http/TCP external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ".to_owned(),
            format!("-j {}", n.svl_chain()),
        ]
    );
    assert!(
        chains[&(Table::Nat, "KUBE-NODEPORTS".into())][0]
            .contains("\"default/web:http/TCP@ext nodePort\"")
    );
}

#[test]
fn a_service_without_endpoints_is_rejected_in_the_filter_table() {
    let key = SetKey("default/empty:dns/UDP".into());
    let set = BackendSet {
        frontends: BTreeMap::from([
            (
                fe([198, 18, 0, 14], 53, Proto::Udp),
                FrontendKind::ClusterIp,
            ),
            (
                fe([198, 18, 100, 1], 30081, Proto::Udp),
                FrontendKind::NodePort,
            ),
        ]),
        ..Default::default()
    };
    let chains = generate(&state([(key, set)])).unwrap();
    assert_eq!(
        chains[&(Table::Filter, "KUBE-SERVICES".into())],
        [
            "-d 198.18.0.14/32 -p udp -m comment --comment \"default/empty:dns/UDP cluster IP has no endpoints\" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable"
        ]
    );
    assert_eq!(
        chains[&(Table::Filter, "KUBE-EXTERNAL-SERVICES".into())],
        [
            "-d 198.18.100.1/32 -p udp -m comment --comment \"default/empty:dns/UDP nodePort has no endpoints\" -m udp --dport 30081 -j REJECT --reject-with icmp-port-unreachable"
        ]
    );
    // Nothing in nat but the fixed chains.
    assert_eq!(chains.keys().filter(|(t, _)| *t == Table::Nat).count(), 4);
}

#[test]
fn a_sync_rewrites_only_the_changed_chains_and_deletes_removed_ones() {
    let (key, set) = web();
    let n = SetName::parse(&key).unwrap();
    let first = generate(&state([(key.clone(), set.clone())])).unwrap();
    assert_eq!(
        payload(&first, &applied(&first)),
        None,
        "unchanged: nothing to write"
    );

    // pod2 leaves: the service chain changes, pod2's endpoint chain goes; nothing else.
    let mut fewer = set.clone();
    let gone = n.sep_chain(&fewer.endpoints.pop().unwrap().backend);
    let sep1 = n.sep_chain(&fewer.endpoints[0].backend);
    let second = generate(&state([(key, fewer)])).unwrap();
    let (text, count) = payload(&second, &applied(&first)).unwrap();
    let svc = n.svc_chain();
    assert_eq!(
        text,
        format!(
            "*nat\n:{svc} - [0:0]\n:{gone} - [0:0]\n\
             -A {svc} -m comment --comment \"default/web:http/TCP -> 198.19.1.2:8080\" -j {sep1}\n\
             -X {gone}\nCOMMIT\n"
        )
    );
    assert_eq!(count, 2);
}

#[test]
fn chains_of_unknown_content_found_at_start_are_rewritten_or_deleted() {
    let chains = generate(&state([web()])).unwrap();
    let mut adopted: Applied = chains.keys().map(|k| (k.clone(), None)).collect();
    adopted.insert((Table::Nat, "KUBE-SVC-OLDOLDOLDOLDOLDO".into()), None);
    let (text, count) = payload(&chains, &adopted).unwrap();
    assert_eq!(count, chains.len() + 1);
    assert!(
        text.ends_with("-X KUBE-SVC-OLDOLDOLDOLDOLDO\nCOMMIT\n"),
        "{text}"
    );
}

#[test]
fn cleanup_flushes_then_deletes() {
    let text = delete_all(&[
        (Table::Nat, "KUBE-SERVICES".into()),
        (Table::Filter, "KUBE-SERVICES".into()),
    ]);
    assert_eq!(
        text,
        "*filter\n:KUBE-SERVICES - [0:0]\n-X KUBE-SERVICES\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\n-X KUBE-SERVICES\nCOMMIT\n"
    );
}

/// iptables-save prints rules in its own canonical form (reordered options, its own
/// probability digits, quotes only where needed, counters): the dump reads that form.
#[test]
fn dump_reads_iptables_save_output_back_into_the_view() {
    let save = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-SERVICES - [0:0]
[0:0] -A KUBE-EXTERNAL-SERVICES -d 198.18.100.1/32 -p tcp -m comment --comment \"default/empty:http/TCP nodePort has no endpoints\" -m tcp --dport 30081 -j REJECT --reject-with tcp-reset
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-EXT-AAAA - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SEP-ONE - [0:0]
:KUBE-SEP-TWO - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAA - [0:0]
[3:180] -A KUBE-SERVICES -d 198.18.0.10/32 -p tcp -m comment --comment \"default/web:http/TCP cluster IP\" -m tcp --dport 80 -j KUBE-SVC-AAAA
[0:0] -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
[5:300] -A KUBE-NODEPORTS -d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP nodePort\" -m tcp --dport 30080 -j KUBE-EXT-AAAA
[0:0] -A KUBE-EXT-AAAA -m comment --comment \"masquerade traffic for default/web:http/TCP external destinations\" -j KUBE-MARK-MASQ
[0:0] -A KUBE-EXT-AAAA -j KUBE-SVC-AAAA
[0:0] -A KUBE-SVC-AAAA -m comment --comment \"default/web:http/TCP -> 198.19.1.2:8080\" -m recent --rcheck --seconds 30 --reap --name KUBE-SEP-ONE --mask 255.255.255.255 --rsource -j KUBE-SEP-ONE
[0:0] -A KUBE-SVC-AAAA -m comment --comment \"default/web:http/TCP -> 198.19.2.2:8080 (terminating,local)\" -m recent --rcheck --seconds 30 --reap --name KUBE-SEP-TWO --mask 255.255.255.255 --rsource -j KUBE-SEP-TWO
[0:0] -A KUBE-SVC-AAAA -m comment --comment \"default/web:http/TCP -> 198.19.1.2:8080\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-ONE
[0:0] -A KUBE-SVC-AAAA -m comment --comment \"default/web:http/TCP -> 198.19.2.2:8080 (terminating,local)\" -j KUBE-SEP-TWO
[0:0] -A KUBE-SEP-ONE -s 198.19.1.2/32 -m comment --comment default/web:http/TCP -j KUBE-MARK-MASQ
[0:0] -A KUBE-SEP-ONE -p tcp -m comment --comment default/web:http/TCP -m recent --set --name KUBE-SEP-ONE --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 198.19.1.2:8080
[0:0] -A KUBE-SEP-TWO -p tcp -m comment --comment default/web:http/TCP -m recent --set --name KUBE-SEP-TWO --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 198.19.2.2:8080
COMMIT
";
    let mut saved = Saved::new();
    parse_save(save, &mut saved);
    let view = build(&saved).unwrap();
    let summary: Vec<String> = view
        .frontends
        .iter()
        .map(|f| {
            let bes: Vec<String> = f
                .backends
                .iter()
                .map(|b| {
                    let t = if b.terminating { "T" } else { "" };
                    let l = if b.local { "L" } else { "" };
                    format!("{}:{}#{}{t}{l}", b.address, b.port, b.id)
                })
                .collect();
            format!(
                "{} {} {}:{}/{} id={} flags={:?} t={} n={} [{}] {}/{}",
                f.service,
                f.kind,
                f.address,
                f.port,
                f.protocol,
                f.svc_id,
                f.flags,
                f.affinity_timeout_s,
                f.backend_count,
                bes.join(","),
                f.packets,
                f.bytes
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "default/empty:http/TCP NodePort 198.18.100.1:30081/TCP id=1 flags=[] t=0 n=0 [] 0/0",
            "default/web:http/TCP ClusterIP 198.18.0.10:80/TCP id=2 flags=[\"affinity\"] t=30 n=2 [198.19.1.2:8080#1,198.19.2.2:8080#2TL] 3/180",
            "default/web:http/TCP NodePort 198.18.100.1:30080/TCP id=2 flags=[\"affinity\"] t=30 n=2 [198.19.1.2:8080#1,198.19.2.2:8080#2TL] 5/300",
        ]
    );
    assert!(
        build(&Saved::new()).is_none(),
        "no KUBE-SERVICES: not iptables mode"
    );
}

#[test]
fn endpoint_state_is_in_the_service_chain_comment() {
    let (key, mut set) = web();
    set.endpoints[0].terminating = true;
    set.endpoints[1].local = true;
    let n = SetName::parse(&key).unwrap();
    let chains = generate(&state([(key, set)])).unwrap();
    let svc = &chains[&(Table::Nat, n.svc_chain())];
    assert!(
        svc[0].starts_with(
            "-m comment --comment \"default/web:http/TCP -> 198.19.1.2:8080 (terminating)\" "
        ),
        "{svc:?}"
    );
    assert!(
        svc[1].starts_with(
            "-m comment --comment \"default/web:http/TCP -> 198.19.2.2:8080 (local)\" "
        ),
        "{svc:?}"
    );
}

#[test]
fn source_ranges_let_listed_clients_reach_the_load_balancer_and_drop_the_rest() {
    let (key, mut set) = web();
    let lb = fe([198, 18, 60, 1], 80, Proto::Tcp);
    set.frontends.insert(lb, FrontendKind::LoadBalancer);
    set.source_ranges = Some(vec![(Ipv4Addr::new(198, 18, 100, 0), 24)]);
    let chains = generate(&state([(key, set)])).unwrap();
    let name = SetName::parse(&SetKey("default/web:http/TCP".into())).unwrap();
    let (fw, ext) = (name.fw_chain(), name.ext_chain());
    assert!(fw.starts_with("KUBE-FW-"), "{fw}");
    let nat_services = &chains[&(Table::Nat, "KUBE-SERVICES".into())];
    assert!(
        nat_services.contains(&format!(
            "-d 198.18.60.1/32 -p tcp -m comment --comment \"default/web:http/TCP loadbalancer IP\" -m tcp --dport 80 -j {fw}"
        )),
        "{nat_services:#?}"
    );
    assert_eq!(
        chains[&(Table::Nat, fw.clone())],
        [format!(
            "-s 198.18.100.0/24 -m comment --comment \"default/web:http/TCP loadBalancerSourceRanges\" -j {ext}"
        )]
    );
    assert_eq!(
        chains[&(Table::Filter, "KUBE-EXTERNAL-SERVICES".into())],
        [format!(
            "-d 198.18.60.1/32 -p tcp -m comment --comment \"default/web:http/TCP traffic not accepted by {fw}\" -m tcp --dport 80 -j DROP"
        )]
    );
    // The NodePort and the cluster IP are not filtered.
    assert!(
        nat_services
            .iter()
            .any(|r| r.contains("198.18.0.10/32") && r.ends_with(&name.svc_chain()))
    );
}

#[test]
fn a_local_policy_without_local_endpoints_drops_instead_of_rejecting() {
    let key = SetKey("default/web:http/TCP@ext".into());
    let set = BackendSet {
        no_local_drop: true,
        local_policy: true,
        frontends: BTreeMap::from([(
            fe([198, 18, 100, 1], 30080, Proto::Tcp),
            FrontendKind::NodePort,
        )]),
        ..Default::default()
    };
    let chains = generate(&state([(key, set)])).unwrap();
    assert_eq!(
        chains[&(Table::Filter, "KUBE-EXTERNAL-SERVICES".into())],
        [
            "-d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP@ext nodePort has no local endpoints\" -m tcp --dport 30080 -j DROP"
        ]
    );
    // dump shows it as a frontend without endpoints.
    let save = "\
*filter
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-SERVICES - [0:0]
[0:0] -A KUBE-EXTERNAL-SERVICES -d 198.18.100.1/32 -p tcp -m comment --comment \"default/web:http/TCP@ext nodePort has no local endpoints\" -m tcp --dport 30080 -j DROP
[0:0] -A KUBE-EXTERNAL-SERVICES -d 198.18.60.1/32 -p tcp -m comment --comment \"default/web:http/TCP traffic not accepted by KUBE-FW-AAAA\" -m tcp --dport 80 -j DROP
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-FW-AAAA - [0:0]
:KUBE-EXT-AAAA - [0:0]
:KUBE-SVC-AAAA - [0:0]
:KUBE-SEP-ONE - [0:0]
[2:120] -A KUBE-SERVICES -d 198.18.60.1/32 -p tcp -m comment --comment \"default/web:http/TCP loadbalancer IP\" -m tcp --dport 80 -j KUBE-FW-AAAA
[0:0] -A KUBE-FW-AAAA -s 198.18.100.0/24 -m comment --comment \"default/web:http/TCP loadBalancerSourceRanges\" -j KUBE-EXT-AAAA
[0:0] -A KUBE-EXT-AAAA -m comment --comment \"masquerade traffic for default/web:http/TCP external destinations\" -j KUBE-MARK-MASQ
[0:0] -A KUBE-EXT-AAAA -j KUBE-SVC-AAAA
[0:0] -A KUBE-SVC-AAAA -m comment --comment \"default/web:http/TCP -> 198.19.1.2:8080\" -j KUBE-SEP-ONE
[0:0] -A KUBE-SEP-ONE -p tcp -m comment --comment default/web:http/TCP -m tcp -j DNAT --to-destination 198.19.1.2:8080
COMMIT
";
    let mut saved = Saved::new();
    parse_save(save, &mut saved);
    let view = build(&saved).expect("ours");
    let summary: Vec<String> = view
        .frontends
        .iter()
        .map(|f| {
            let bes: Vec<String> = f
                .backends
                .iter()
                .map(|b| format!("{}:{}", b.address, b.port))
                .collect();
            format!(
                "{} {} {}:{} [{}]",
                f.service,
                f.kind,
                f.address,
                f.port,
                bes.join(",")
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "default/web:http/TCP LoadBalancer 198.18.60.1:80 [198.19.1.2:8080]",
            "default/web:http/TCP@ext NodePort 198.18.100.1:30080 []",
        ]
    );
}
