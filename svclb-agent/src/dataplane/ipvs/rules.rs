//! The iptables rules IPVS mode needs besides the virtual servers (pure). kube-proxy
//! keeps these matches in ipsets (KUBE-NODE-PORT-*, KUBE-LOOP-BACK, …); plain rules
//! carry the same matches here, in the same chains:
//! - nat `KUBE-SERVICES`: external frontends (NodePort, externalIPs, load balancer) of
//!   a Cluster-policy set are marked for masquerade, so replies return through this node;
//! - nat `KUBE-POSTROUTING`: masquerade of marked traffic, and of hairpin traffic (a pod
//!   reaching itself through a VIP);
//! - filter `KUBE-EXTERNAL-SERVICES` (INPUT and FORWARD): REJECT for frontends without
//!   endpoints (there is no virtual server for them; the VIP is local, so INPUT sees them);
//! - nat `KUBE-SERVICES`: every other frontend with endpoints ACCEPTs (IPVS translates
//!   it), as kube-proxy's KUBE-CLUSTER-IP match does; each rule's comment names its
//!   Service, which is how `dump` names the virtual servers;
//! - `127.0.0.1:<NodePort>` (virtual servers on the loopback address): always marked for
//!   masquerade, and filter `KUBE-FIREWALL` gets kube-proxy's `route_localnet` guard.
use crate::{
    dataplane::iptables::rules::{
        Chains, EXTERNAL_SERVICES, FIREWALL, FIXED, LOCALNET_GUARD, MARK_MASQ, MASQ_MARK,
        POSTROUTING, RulesError, SERVICES, Table, kind_words,
    },
    model::{DesiredState, Proto, Scope},
};

fn p(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

pub fn generate(state: &DesiredState) -> Result<Chains, RulesError> {
    let mut chains = Chains::new();
    for (table, chain) in FIXED {
        chains.insert((*table, (*chain).to_owned()), Vec::new());
    }
    let mut post = vec![
        format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        format!("-j MARK --xor-mark {MASQ_MARK}"),
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully".to_owned(),
    ];
    chains.insert(
        (Table::Nat, MARK_MASQ.to_owned()),
        vec![format!("-j MARK --or-mark {MASQ_MARK}")],
    );
    let mut hairpin = std::collections::BTreeSet::new();
    let mut localhost = false;
    for (key, set) in &state.sets {
        for (fe, kind) in &set.frontends {
            // Of the host-scope frontends IPVS serves 127.0.0.1 only (see mod.rs).
            if fe.scope == Scope::Host && !fe.addr.is_loopback() {
                continue;
            }
            localhost |= fe.addr.is_loopback();
            let m = format!(
                "-d {}/32 -p {pr} -m comment --comment \"{key} {}{}\" -m {pr} --dport {}",
                fe.addr,
                kind_words(*kind),
                if set.endpoints.is_empty() {
                    " has no endpoints"
                } else {
                    ""
                },
                fe.port,
                pr = p(fe.proto)
            );
            if set.endpoints.is_empty() {
                chains
                    .get_mut(&(Table::Filter, EXTERNAL_SERVICES.to_owned()))
                    .expect("fixed")
                    .push(format!(
                        "{m} -j REJECT --reject-with {}",
                        if fe.proto == Proto::Tcp {
                            "tcp-reset"
                        } else {
                            "icmp-port-unreachable"
                        }
                    ));
            } else if fe.addr.is_loopback() || (kind.is_external() && !set.local_policy) {
                // 127.0.0.1 as a source cannot leave the node: always masqueraded.
                chains
                    .get_mut(&(Table::Nat, SERVICES.to_owned()))
                    .expect("fixed")
                    .push(format!("{m} -j {MARK_MASQ}"));
            } else {
                // Nothing for iptables to do (IPVS translates it), as kube-proxy's
                // KUBE-CLUSTER-IP set match: the rule names the frontend for `dump`.
                chains
                    .get_mut(&(Table::Nat, SERVICES.to_owned()))
                    .expect("fixed")
                    .push(format!("{m} -j ACCEPT"));
            }
        }
        for ep in &set.endpoints {
            hairpin.insert(ep.backend);
        }
    }
    for be in hairpin {
        post.insert(
            0,
            format!(
                "-s {a}/32 -d {a}/32 -p {pr} -m comment --comment \"hairpin\" -m {pr} --dport {} -j MASQUERADE",
                be.port,
                a = be.addr,
                pr = p(be.proto)
            ),
        );
    }
    chains.insert((Table::Nat, POSTROUTING.to_owned()), post);
    if localhost {
        chains
            .get_mut(&(Table::Filter, FIREWALL.to_owned()))
            .expect("fixed")
            .push(LOCALNET_GUARD.to_owned());
    }
    Ok(chains)
}
