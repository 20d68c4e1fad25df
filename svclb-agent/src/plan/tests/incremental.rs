//! The incremental [`Planner`] against a from-scratch [`plan`] after every step of
//! pseudo-random change sequences: creates, updates, deletes, relabelled slices,
//! conflicting frontends, objects without resourceVersion and node changes.
use std::net::Ipv4Addr;

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::json;

use super::{NodeInfo, PlanOptions, plan};
use crate::{
    plan::{Lookup, Planner, Touched},
    source::{Objects, objects::key},
};

/// A source's view by key, as the kube source's mirrors provide it.
struct ByKey<'a>(&'a Objects);

impl Lookup for ByKey<'_> {
    fn service(&self, k: &str) -> Option<&Service> {
        self.0.services.iter().find(|s| key(&s.metadata) == k)
    }
    fn slice(&self, k: &str) -> Option<&EndpointSlice> {
        self.0.slices.iter().find(|s| key(&s.metadata) == k)
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn pick(from: &[&'static str], i: u64) -> &'static str {
    from[(i % from.len() as u64) as usize]
}

/// Few names, addresses and ports, so that conflicts and shared backends are common.
fn service(r: &mut Rng, name: u64, version: u64) -> Service {
    let ty = ["ClusterIP", "NodePort", "LoadBalancer"][r.below(3) as usize];
    let ports: Vec<_> = (0..1 + r.below(2))
        .map(|i| {
            let mut p = json!({"name": pick(&["http", "dns"], i), "port": 80 + r.below(2),
                "protocol": pick(&["TCP", "UDP"], r.below(2))});
            if ty != "ClusterIP" {
                p["nodePort"] = json!(30000 + r.below(3));
            }
            p
        })
        .collect();
    let mut spec = json!({"type": ty, "clusterIP": format!("198.18.0.{}", r.below(6)), "ports": ports,
        "externalTrafficPolicy": if r.chance(30) { "Local" } else { "Cluster" },
        "internalTrafficPolicy": if r.chance(20) { "Local" } else { "Cluster" }});
    if r.chance(30) {
        spec["externalIPs"] = json!([format!("198.18.1.{}", r.below(3))]);
    }
    if r.chance(20) {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    if r.chance(5) {
        spec["clusterIP"] = json!("None");
    }
    let mut meta = json!({"name": format!("svc-{name}"), "namespace": pick(&["a", "b"], name),
        "uid": format!("uid-{name}"),
        "creationTimestamp": format!("2026-01-01T00:00:{:02}Z", r.below(4))});
    if !r.chance(10) {
        meta["resourceVersion"] = json!(version.to_string());
    }
    serde_json::from_value(json!({"metadata": meta, "spec": spec})).unwrap()
}

fn slice(r: &mut Rng, name: u64, version: u64) -> EndpointSlice {
    let endpoints: Vec<_> = (0..r.below(4))
        .map(|_| {
            json!({"addresses": [format!("198.19.0.{}", 1 + r.below(8))],
                "nodeName": pick(&["node-a", "node-b"], r.below(2)),
                "conditions": {"ready": r.chance(70), "serving": r.chance(80), "terminating": r.chance(30)}})
        })
        .collect();
    let mut meta = json!({"name": format!("slice-{name}"), "namespace": pick(&["a", "b"], r.below(2)),
        "uid": format!("uid-slice-{name}")});
    if !r.chance(10) {
        meta["labels"] = json!({"kubernetes.io/service-name": format!("svc-{}", r.below(8))});
    }
    if !r.chance(10) {
        meta["resourceVersion"] = json!(version.to_string());
    }
    let address_type = if r.chance(5) { "IPv6" } else { "IPv4" };
    serde_json::from_value(json!({"metadata": meta, "addressType": address_type,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}],
        "endpoints": endpoints}))
    .unwrap()
}

fn node(n: u64) -> NodeInfo {
    NodeInfo {
        name: Some(["node-a", "node-b"][(n % 2) as usize].into()),
        addresses: vec![Ipv4Addr::new(198, 18, 100, 1 + (n % 3) as u8)],
    }
}

#[test]
fn incremental_plan_equals_a_full_plan_after_every_change() {
    let opts = PlanOptions::default();
    for seed in 1..=40u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut planner = Planner::new(opts.clone());
        // Fed only the keys each step touched, as the kube source does.
        let mut by_events = Planner::new(opts.clone());
        let mut objects = Objects::default();
        let mut version = 0;
        let mut node_n = 0;
        let mut before = crate::model::DesiredState::default();
        for step in 0..60 {
            let mut touched = Touched::default();
            let node_before = node_n;
            // One to three changes per step, as one batched reconcile would see them.
            for _ in 0..1 + r.below(3) {
                version += 1;
                match r.below(10) {
                    0..=2 => {
                        let name = r.below(8);
                        let svc = service(&mut r, name, version);
                        touched.services.push(key(&svc.metadata));
                        let key = (svc.metadata.namespace.clone(), svc.metadata.name.clone());
                        objects.services.retain(|s| {
                            (s.metadata.namespace.clone(), s.metadata.name.clone()) != key
                        });
                        objects.services.push(svc);
                    }
                    3..=5 => {
                        let name = r.below(12);
                        let s = slice(&mut r, name, version);
                        touched.slices.push(key(&s.metadata));
                        let key = (s.metadata.namespace.clone(), s.metadata.name.clone());
                        objects.slices.retain(|o| {
                            (o.metadata.namespace.clone(), o.metadata.name.clone()) != key
                        });
                        objects.slices.push(s);
                    }
                    6 if !objects.services.is_empty() => {
                        let i = r.below(objects.services.len() as u64) as usize;
                        touched
                            .services
                            .push(key(&objects.services.remove(i).metadata));
                    }
                    7 if !objects.slices.is_empty() => {
                        let i = r.below(objects.slices.len() as u64) as usize;
                        touched.slices.push(key(&objects.slices.remove(i).metadata));
                    }
                    8 if r.chance(20) => node_n += 1,
                    _ => {}
                }
            }
            // The source's order is not meaningful.
            if r.chance(30) {
                objects.services.reverse();
                objects.slices.reverse();
            }
            planner.update(&objects, &node(node_n));
            // The first update and node changes need the full path.
            let events = (step > 0 && node_n == node_before)
                .then(|| by_events.update_touched(&ByKey(&objects), &node(node_n), &touched))
                .flatten();
            if events.is_none() {
                by_events.update(&objects, &node(node_n));
            }
            let full = plan(&objects, &node(node_n), &opts);
            let ctx = format!("seed {seed} step {step}");
            assert_eq!(planner.state(), &full.state, "{ctx}: state");
            assert_eq!(planner.errors(), full.errors, "{ctx}: errors");
            assert_eq!(planner.ignored(), full.ignored, "{ctx}: ignored");
            assert_eq!(by_events.state(), &full.state, "{ctx}: state from events");
            assert_eq!(by_events.errors(), full.errors, "{ctx}: errors from events");
            assert_eq!(
                by_events.ignored(),
                full.ignored,
                "{ctx}: ignored from events"
            );
            // The changed-set report covers every set that differs from the last one.
            for p in [&mut planner, &mut by_events] {
                if let Some(changed) = p.take_changed() {
                    let keys = before.sets.keys().chain(full.state.sets.keys());
                    for k in keys.filter(|k| before.sets.get(*k) != full.state.sets.get(*k)) {
                        assert!(changed.contains(k), "{ctx}: {k} changed but not reported");
                    }
                }
            }
            let services: std::collections::BTreeSet<&str> = full
                .state
                .sets
                .keys()
                .map(|k| k.0.split_once(':').unwrap().0)
                .collect();
            let counts = (
                services.len(),
                full.state.frontend_count(),
                full.state.endpoint_count(),
            );
            assert_eq!(planner.counts(), counts, "{ctx}: counts");
            assert_eq!(by_events.counts(), counts, "{ctx}: counts from events");
            before = full.state;
        }
    }
}

#[test]
fn unchanged_objects_are_not_planned_again() {
    let mut r = Rng(7);
    let objects = Objects {
        services: (0..8).map(|i| service(&mut r, i, 1)).collect(),
        slices: (0..8).map(|i| slice(&mut r, i, 1)).collect(),
    };
    let mut planner = Planner::new(PlanOptions::default());
    let first = planner.update(&objects, &node(0));
    assert!(first.replanned > 0);
    let cacheable = |o: &Objects| {
        o.services
            .iter()
            .all(|s| s.metadata.resource_version.is_some())
            && o.slices
                .iter()
                .all(|s| s.metadata.resource_version.is_some())
    };
    let again = planner.update(&objects, &node(0));
    if cacheable(&objects) {
        assert_eq!(again.replanned, 0);
    }
    // One Service changes: only its group is planned again.
    let mut changed = objects.clone();
    changed.services[0].metadata.resource_version = Some("2".into());
    let mut all_versioned = changed.clone();
    for s in &mut all_versioned.services {
        s.metadata
            .resource_version
            .get_or_insert_with(|| "1".into());
    }
    for s in &mut all_versioned.slices {
        s.metadata
            .resource_version
            .get_or_insert_with(|| "1".into());
    }
    planner.update(&all_versioned, &node(0));
    all_versioned.services[1].metadata.resource_version = Some("3".into());
    let one = planner.update(&all_versioned, &node(0));
    assert_eq!(
        one,
        crate::plan::Update {
            replanned: 1,
            removed: 0
        }
    );
    all_versioned.services.remove(2);
    let gone = planner.update(&all_versioned, &node(0));
    assert_eq!(
        gone.removed,
        usize::from(!all_versioned.slices.iter().any(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .is_some_and(|n| n == "svc-2")
                && s.metadata.namespace.as_deref() == Some("a")
        }))
    );
    // A different node plans everything again.
    let moved = planner.update(&all_versioned, &node(1));
    assert!(moved.replanned >= all_versioned.services.len());
}
