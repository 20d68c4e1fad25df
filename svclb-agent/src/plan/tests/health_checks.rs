//! `spec.healthCheckNodePort`: which Services get a health check and what it counts.
use super::*;
use crate::plan::{
    Planner,
    health_check::{HealthCheck, by_port},
};

/// LoadBalancer `default/web` (two ports) with the given policy and health check
/// port, and endpoints: .1 on node-a (ours, ready), .2 on node-b, .3 on node-a not
/// ready, .4 on node-a terminating.
fn web(policy: &str, hcnp: Option<i32>) -> String {
    let hc = hcnp.map_or(String::new(), |p| format!("  healthCheckNodePort: {p}\n"));
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: LoadBalancer
  clusterIP: 198.18.0.10
  externalTrafficPolicy: {policy}
{hc}  ports: [{{name: http, port: 80, nodePort: 30080}}, {{name: https, port: 443, nodePort: 30443}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}, {{name: https, port: 8443}}]
endpoints:
- {{addresses: [198.19.1.2], nodeName: node-a}}
- {{addresses: [198.19.2.2], nodeName: node-b}}
- {{addresses: [198.19.3.2], nodeName: node-a, conditions: {{ready: false}}}}
- {{addresses: [198.19.4.2], nodeName: node-a, conditions: {{ready: false, serving: true, terminating: true}}}}
"#
    )
}

fn checks(yaml: &str) -> Vec<HealthCheck> {
    let mut p = Planner::new(PlanOptions::default());
    p.update(&objects(yaml), &node());
    p.health_checks().cloned().collect()
}

#[test]
fn lb_with_local_policy_counts_ready_local_endpoints_over_its_ports() {
    let got = checks(&web("Local", Some(32000)));
    // One ready local endpoint, on two ports: kube-proxy sums over ports.
    assert_eq!(
        got,
        [HealthCheck {
            namespace: "default".into(),
            name: "web".into(),
            port: 32000,
            local_endpoints: 2,
        }]
    );
    assert!(run(&web("Local", Some(32000))).errors.is_empty());

    // On node-b: its one ready endpoint; on a node with none: zero (served, 503).
    let mut p = Planner::new(PlanOptions::default());
    for (name, want) in [("node-b", 2), ("node-c", 0)] {
        let on = NodeInfo {
            name: Some(name.into()),
            ..node()
        };
        p.update(&objects(&web("Local", Some(32000))), &on);
        let counts: Vec<usize> = p.health_checks().map(|c| c.local_endpoints).collect();
        assert_eq!(counts, [want], "{name}");
    }
}

#[test]
fn a_stray_health_check_port_is_reported_and_not_served() {
    let yaml = web("Cluster", Some(32000));
    assert!(checks(&yaml).is_empty());
    only_error(
        &run(&yaml),
        "Service default/web",
        "spec.healthCheckNodePort",
        ErrorKind::InvalidValue,
    );
    let yaml = web("Local", Some(70000));
    assert!(checks(&yaml).is_empty());
    only_error(
        &run(&yaml),
        "Service default/web",
        "spec.healthCheckNodePort",
        ErrorKind::InvalidValue,
    );
    assert!(checks(&web("Local", None)).is_empty());
}

#[test]
fn changes_are_flagged_and_ports_conflict_by_name() {
    let mut p = Planner::new(PlanOptions::default());
    p.update(&objects(&web("Local", Some(32000))), &node());
    assert!(p.take_health_changed());
    assert!(!p.take_health_changed(), "taken");
    // The same objects again: nothing replanned, nothing to tell.
    p.update(&objects(&web("Local", Some(32000))), &node());
    assert!(!p.take_health_changed());
    // The Service goes: the check goes.
    p.update(&objects(OK_SERVICE), &node());
    assert!(p.take_health_changed());
    assert_eq!(p.health_checks().count(), 0);

    let check = |ns: &str, port| HealthCheck {
        namespace: ns.into(),
        name: "web".into(),
        port,
        local_endpoints: 1,
    };
    let all = [check("b", 32000), check("a", 32000), check("c", 32001)];
    let (served, losers) = by_port(&all);
    assert_eq!(served.keys().copied().collect::<Vec<_>>(), [32000, 32001]);
    assert_eq!(served[&32000].namespace, "a");
    assert_eq!(losers, [&all[0]]);
}
