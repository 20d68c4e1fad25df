//! Planner tests. Objects are written as manifest YAML, as a user would write them.
mod bad_input;
mod conflicts;
mod datapath_policies;
mod determinism;
mod endpoints;
mod frontends;
mod health_checks;
mod host_scope;
mod incremental;
mod policies;

use std::net::Ipv4Addr;

use super::{ErrorKind, NodeInfo, Plan, PlanError, PlanOptions, plan};
use crate::{
    model::{BackendSet, SetKey},
    source::{Objects, manifests::parse_file},
};

/// Node `node-a` with one NodePort address.
pub(super) fn node() -> NodeInfo {
    NodeInfo {
        name: Some("node-a".into()),
        addresses: vec![Ipv4Addr::new(198, 18, 100, 1)],
    }
}

pub(super) fn objects(yaml: &str) -> Objects {
    let (objects, errors) = parse_file("test.yaml", yaml);
    assert!(errors.is_empty(), "manifest errors: {errors:?}");
    objects
}

pub(super) fn run_on(yaml: &str, node: &NodeInfo) -> Plan {
    plan(&objects(yaml), node, &PlanOptions::default())
}

pub(super) fn run(yaml: &str) -> Plan {
    run_on(yaml, &node())
}

/// Like [`run`], also asserting that nothing was reported.
pub(super) fn run_clean(yaml: &str) -> Plan {
    let p = run(yaml);
    assert!(p.errors.is_empty(), "unexpected errors: {:#?}", p.errors);
    p
}

#[track_caller]
pub(super) fn set<'a>(p: &'a Plan, key: &str) -> &'a BackendSet {
    p.state
        .sets
        .get(&SetKey(key.into()))
        .unwrap_or_else(|| panic!("no set {key}; sets: {:?}", keys(p)))
}

pub(super) fn keys(p: &Plan) -> Vec<String> {
    p.state.sets.keys().map(|k| k.0.clone()).collect()
}

/// `Kind addr:port/PROTO` for each frontend, sorted.
pub(super) fn frontends(s: &BackendSet) -> Vec<String> {
    s.frontends
        .iter()
        .map(|(f, k)| format!("{} {f}", k.as_str()))
        .collect()
}

/// `addr:port` plus ` terminating` / ` local` markers, in set order.
pub(super) fn backends(s: &BackendSet) -> Vec<String> {
    s.endpoints
        .iter()
        .map(|e| {
            let mut t = format!("{}:{}", e.backend.addr, e.backend.port);
            if e.terminating {
                t += " terminating";
            }
            if e.local {
                t += " local";
            }
            t
        })
        .collect()
}

/// The only error, asserting there is exactly one, with the object, field and kind.
#[track_caller]
pub(super) fn only_error<'a>(
    p: &'a Plan,
    object: &str,
    field: &str,
    kind: ErrorKind,
) -> &'a PlanError {
    assert_eq!(
        p.errors.len(),
        1,
        "expected exactly one error: {:#?}",
        p.errors
    );
    let e = &p.errors[0];
    assert_eq!(
        (e.object.as_str(), e.field.as_str(), e.kind),
        (object, field, kind),
        "{e}"
    );
    e
}

/// Service `default/web` of type `svc_type` (port 80, NodePort 30080 → 8080) with
/// `spec_extra` lines and a `status` line (or none), and one EndpointSlice whose
/// endpoints are `endpoints` (YAML flow mappings).
pub(super) fn web_service(
    svc_type: &str,
    spec_extra: &str,
    status: &str,
    endpoints: &[&str],
) -> String {
    let endpoints: String = endpoints.iter().map(|e| format!("- {e}\n")).collect();
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: {svc_type}
  clusterIP: 198.18.0.10
  ports: [{{name: http, port: 80, nodePort: 30080}}]
{spec_extra}
{status}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
{endpoints}"#
    )
}

/// NodePort `default/web` with `spec_extra` lines and three endpoints: .1 on node-a
/// (ours), .2 on node-b, .3 on node-a but not ready.
pub(super) fn nodeport_web(spec_extra: &str) -> String {
    web_service(
        "NodePort",
        spec_extra,
        "",
        &[
            "{addresses: [198.19.1.2], nodeName: node-a}",
            "{addresses: [198.19.2.2], nodeName: node-b}",
            "{addresses: [198.19.3.2], nodeName: node-a, conditions: {ready: false}}",
        ],
    )
}

/// A plain healthy Service `default/ok` with one endpoint, to show that other
/// Services are still planned next to a bad one.
pub(super) const OK_SERVICE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: ok}
spec:
  clusterIP: 198.18.0.99
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ok-1, labels: {kubernetes.io/service-name: ok}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [198.19.9.2]}]
"#;

#[track_caller]
pub(super) fn assert_ok_service_planned(p: &Plan) {
    let s = set(p, "default/ok:http/TCP");
    assert_eq!(frontends(s), ["ClusterIP 198.18.0.99:80/TCP"]);
    assert_eq!(backends(s), ["198.19.9.2:8080"]);
}
