//! The EndpointSlice mirroring controller of kube-controller-manager, run beside the
//! store as a control plane runs it: the Endpoints of a Service without a selector
//! (written by hand) become EndpointSlices labelled as the controller's, updated and
//! deleted with them, so clients that read slices only (kube-proxy, svclb) see them.
//!
//! Its skip rules: no Service of that name, a Service with a selector (the EndpointSlice
//! controller owns those), or Endpoints labelled `endpointslice.kubernetes.io/skip-mirror:
//! "true"` — then no mirrored slice exists. One slice per subset and address family, at
//! most 1000 endpoints each (the controller's `--mirroring-max-endpoints-per-subset`).

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use serde_json::{Map, Value, json};

use crate::{
    resource::{ENDPOINT_SLICES, ENDPOINTS, SERVICES},
    selector::{FieldSelector, LabelSelector},
    store::{ListOptions, Preconditions, Since, Store, WriteOptions},
};

pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
const MAX_PER_SUBSET: usize = 1000;

/// The slices mirroring `endpoints` in `ns` (pure): empty when a skip rule applies.
pub fn desired(ns: &str, service: Option<&Value>, endpoints: Option<&Value>) -> Vec<Value> {
    let (Some(service), Some(endpoints)) = (service, endpoints) else {
        return Vec::new();
    };
    let has_selector = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty());
    let labels = endpoints
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if has_selector || labels.get(SKIP_MIRROR).and_then(Value::as_str) == Some("true") {
        return Vec::new();
    }
    let name = endpoints
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut labels: Map<String, Value> = labels;
    labels.insert(MANAGED_BY.into(), json!(CONTROLLER));
    labels.insert(SERVICE_NAME.into(), json!(name));
    let subsets = endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, subset) in subsets.iter().enumerate() {
        let ports: Vec<Value> = subset
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let mut port = json!({
                    "name": p.get("name").cloned().unwrap_or(json!("")),
                    "port": p.get("port").cloned().unwrap_or(Value::Null),
                    "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP")),
                });
                if let Some(app) = p.get("appProtocol") {
                    port["appProtocol"] = app.clone();
                }
                port
            })
            .collect();
        // (family, endpoints) in address order: ready first, as the subset lists them.
        let mut by_family: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for (field, ready) in [("addresses", true), ("notReadyAddresses", false)] {
            for a in subset
                .get(field)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let Some(ip) = a.get("ip").and_then(Value::as_str) else {
                    continue;
                };
                let family = match ip.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => "IPv4",
                    Ok(IpAddr::V6(_)) => "IPv6",
                    Err(_) => continue,
                };
                let list = by_family.entry(family).or_default();
                if list.len() >= MAX_PER_SUBSET {
                    continue;
                }
                let mut ep = json!({"addresses": [ip], "conditions": {"ready": ready}});
                for (from, to) in [("hostname", "hostname"), ("nodeName", "nodeName")] {
                    if let Some(v) = a.get(from) {
                        ep[to] = v.clone();
                    }
                }
                if let Some(t) = a.get("targetRef") {
                    ep["targetRef"] = t.clone();
                }
                list.push(ep);
            }
        }
        for (family, endpoints) in by_family {
            let suffix = if family == "IPv6" { "-v6" } else { "" };
            out.push(json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{name}-mirror-{i}{suffix}"),
                    "namespace": ns,
                    "labels": labels,
                },
                "addressType": family,
                "endpoints": endpoints,
                "ports": ports,
            }));
        }
    }
    out
}

/// The fields the controller owns: what must match for a slice to be left alone.
fn owned(slice: &Value) -> [Value; 4] {
    [
        slice
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(Value::Null),
        slice.get("addressType").cloned().unwrap_or(Value::Null),
        slice.get("endpoints").cloned().unwrap_or(json!([])),
        slice.get("ports").cloned().unwrap_or(json!([])),
    ]
}

/// Makes the mirrored slices of `ns/name` what [`desired`] says. Errors are logged:
/// the next change of the Service or Endpoints retries, as the controller's queue does.
pub fn reconcile(store: &Store, ns: &str, name: &str) {
    let get = |res| {
        store
            .get(res, Some(ns), name)
            .ok()
            .map(|s| (*s.value).clone())
    };
    let want = desired(ns, get(&SERVICES).as_ref(), get(&ENDPOINTS).as_ref());
    let selector =
        LabelSelector::parse(&format!("{MANAGED_BY}={CONTROLLER},{SERVICE_NAME}={name}"))
            .expect("a valid selector");
    let fields = FieldSelector::parse("", &ENDPOINT_SLICES).expect("an empty selector");
    let have = match store.list(
        &ENDPOINT_SLICES,
        Some(ns),
        &selector,
        &fields,
        &ListOptions::default(),
    ) {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!(ns, name, "mirroring: listing slices: {e}");
            return;
        }
    };
    let slice_name = |v: &Value| {
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let have: BTreeMap<String, Arc<Value>> = have
        .into_iter()
        .map(|s| (slice_name(&s.value), s.value))
        .collect();
    for slice in &want {
        let n = slice_name(slice);
        let result = match have.get(&n) {
            Some(old) if owned(old) == owned(slice) => continue,
            Some(_) => store
                .replace(
                    &ENDPOINT_SLICES,
                    Some(ns),
                    &n,
                    slice,
                    false,
                    WriteOptions::default(),
                )
                .map(drop),
            None => store
                .create(&ENDPOINT_SLICES, Some(ns), slice, WriteOptions::default())
                .map(drop),
        };
        if let Err(e) = result {
            tracing::warn!(ns, slice = n, "mirroring: writing the slice: {e}");
        }
    }
    for n in have.keys() {
        if !want.iter().any(|s| slice_name(s) == *n)
            && let Err(e) = store.delete(
                &ENDPOINT_SLICES,
                Some(ns),
                n,
                &Preconditions::default(),
                false,
            )
        {
            tracing::warn!(ns, slice = n, "mirroring: deleting the slice: {e}");
        }
    }
}

/// Every Service and Endpoints name now stored (the controller's initial sync).
fn all_names(store: &Store) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let fields = |r| FieldSelector::parse("", r).expect("an empty selector");
    for res in [&ENDPOINTS, &SERVICES] {
        if let Ok(l) = store.list(
            res,
            None,
            &LabelSelector::default(),
            &fields(res),
            &ListOptions::default(),
        ) {
            for s in l.items {
                let meta = |k: &str| {
                    s.value
                        .pointer(&format!("/metadata/{k}"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                out.push((meta("namespace"), meta("name")));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Runs the controller until the store's version channel closes: every change of a
/// Service or an Endpoints reconciles that name; a gap in the history resyncs all.
pub async fn run(store: Arc<Store>) {
    let mut versions = store.subscribe_versions();
    let mut cursor = store.resource_version();
    for (ns, name) in all_names(&store) {
        reconcile(&store, &ns, &name);
    }
    loop {
        match store.since(cursor, 1000, false) {
            Since::Changes {
                changes,
                cursor: next,
            } => {
                let mut touched: Vec<(String, String)> = changes
                    .iter()
                    .filter(|c| matches!(c.key.resource().kind, "Service" | "Endpoints"))
                    .map(|c| (c.key.ns.clone(), c.key.name.clone()))
                    .collect();
                touched.sort();
                touched.dedup();
                for (ns, name) in touched {
                    reconcile(&store, &ns, &name);
                }
                let idle = changes.is_empty();
                cursor = next;
                if idle && versions.changed().await.is_err() {
                    return;
                }
            }
            Since::TooOld { .. } => {
                cursor = store.resource_version();
                for (ns, name) in all_names(&store) {
                    reconcile(&store, &ns, &name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(selector: Option<Value>) -> Value {
        let mut s = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {}});
        if let Some(sel) = selector {
            s["spec"]["selector"] = sel;
        }
        s
    }

    fn eps(labels: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "labels": labels},
            "subsets": [{
                "addresses": [{"ip": "198.19.1.2", "nodeName": "node"}],
                "notReadyAddresses": [{"ip": "198.19.2.2"}],
                "ports": [{"port": 8080}]
            }]
        })
    }

    #[test]
    fn a_selectorless_service_gets_its_endpoints_as_a_labelled_slice() {
        let slices = desired(
            "default",
            Some(&svc(None)),
            Some(&eps(json!({"app": "web"}))),
        );
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(s["metadata"]["name"], "web-mirror-0");
        assert_eq!(s["metadata"]["labels"][MANAGED_BY], CONTROLLER);
        assert_eq!(s["metadata"]["labels"][SERVICE_NAME], "web");
        assert_eq!(s["metadata"]["labels"]["app"], "web", "labels are copied");
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(
            s["endpoints"],
            json!([
                {"addresses": ["198.19.1.2"], "conditions": {"ready": true}, "nodeName": "node"},
                {"addresses": ["198.19.2.2"], "conditions": {"ready": false}}
            ])
        );
        assert_eq!(
            s["ports"],
            json!([{"name": "", "port": 8080, "protocol": "TCP"}])
        );
    }

    #[test]
    fn skip_rules_leave_no_slice() {
        let e = eps(json!({}));
        assert!(desired("default", None, Some(&e)).is_empty(), "no Service");
        assert!(
            desired("default", Some(&svc(None)), None).is_empty(),
            "no Endpoints"
        );
        let with_selector = svc(Some(json!({"app": "web"})));
        assert!(desired("default", Some(&with_selector), Some(&e)).is_empty());
        let skip = eps(json!({SKIP_MIRROR: "true"}));
        assert!(desired("default", Some(&svc(None)), Some(&skip)).is_empty());
        // An empty selector is no selector.
        let empty = svc(Some(json!({})));
        assert_eq!(desired("default", Some(&empty), Some(&e)).len(), 1);
    }

    #[test]
    fn subsets_and_families_get_their_own_slices_capped_at_1000() {
        let mut e = eps(json!({}));
        let many: Vec<Value> = (0..1200u32)
            .map(|i| json!({"ip": format!("198.19.{}.{}", i / 250, i % 250 + 1)}))
            .collect();
        e["subsets"] = json!([
            {"addresses": many, "ports": [{"name": "http", "port": 80}]},
            {"addresses": [{"ip": "2001:2::1"}, {"ip": "not-an-ip"}], "ports": [{"port": 53, "protocol": "UDP"}]}
        ]);
        let slices = desired("default", Some(&svc(None)), Some(&e));
        let names: Vec<&str> = slices
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web-mirror-0", "web-mirror-1-v6"]);
        assert_eq!(slices[0]["endpoints"].as_array().unwrap().len(), 1000);
        assert_eq!(slices[1]["addressType"], "IPv6");
        assert_eq!(slices[1]["ports"][0]["protocol"], "UDP");
    }
}
