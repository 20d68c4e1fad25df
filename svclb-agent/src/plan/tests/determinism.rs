//! The same objects in any order give the same plan.
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::*;

/// Enough variety to exercise every ordering rule: conflicts decided by name, an
/// endpoint duplicated across slices with different conditions, split scopes,
/// mirrored Endpoints, errors.
const MIXED: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 198.18.0.10
  externalIPs: [198.18.0.50]
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, nodePort: 30080}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: zclash}
spec: {clusterIP: 198.18.0.10, externalIPs: [198.18.0.51], ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: zed, namespace: other}
spec: {type: NodePort, clusterIP: 198.18.0.12, ports: [{name: http, port: 80, nodePort: 30080}, {name: bad, port: 0}]}
---
apiVersion: v1
kind: Service
metadata: {name: classic}
spec: {clusterIP: 198.18.0.20, ports: [{port: 6666, targetPort: 80}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: classic}
subsets: [{addresses: [{ip: 198.19.5.2}, {ip: 198.19.6.2}], ports: [{port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec: {clusterIP: None, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-b, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: dns, port: 5353, protocol: UDP}]
endpoints:
- {addresses: [198.19.1.2], nodeName: node-a, conditions: {ready: true}}
- {addresses: [198.19.3.2], nodeName: node-b}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [198.19.1.2], nodeName: node-a, conditions: {ready: false}}
- {addresses: [198.19.2.2], nodeName: node-a}
- {addresses: [198.19.9.300]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: zed-1, namespace: other, labels: {kubernetes.io/service-name: zed}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [198.19.7.2]}, {addresses: [198.19.8.2]}]
"#;

#[test]
fn shuffled_input_gives_an_equal_plan() {
    let objs = objects(MIXED);
    let reference = plan(&objs, &node(), &PlanOptions::default());
    // The fixture must really contain what it claims to exercise.
    assert_eq!(reference.errors.len(), 4, "{:#?}", reference.errors);
    assert!(
        reference
            .state
            .sets
            .contains_key(&SetKey("default/web:http/TCP@ext".into()))
    );
    // web-a is first by name: its not-ready copy of .1 wins over web-b's ready one.
    assert_eq!(
        backends(set(&reference, "default/web:http/TCP")),
        ["198.19.2.2:8080 local", "198.19.3.2:8080"]
    );
    assert_eq!(
        backends(set(&reference, "default/classic:6666/TCP")),
        ["198.19.5.2:80", "198.19.6.2:80"]
    );

    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..20 {
        let mut shuffled = objs.clone();
        shuffled.services.shuffle(&mut rng);
        shuffled.slices.shuffle(&mut rng);
        let again = plan(&shuffled, &node(), &PlanOptions::default());
        assert_eq!(again, reference, "round {round}");
    }
    let mut reversed = objs.clone();
    reversed.services.reverse();
    reversed.slices.reverse();
    assert_eq!(plan(&reversed, &node(), &PlanOptions::default()), reference);
}

#[test]
fn node_address_order_does_not_matter() {
    let objs = objects(MIXED);
    let a = NodeInfo {
        addresses: vec![
            "198.18.100.1".parse().unwrap(),
            "198.18.101.1".parse().unwrap(),
        ],
        ..node()
    };
    let b = NodeInfo {
        addresses: vec![
            "198.18.101.1".parse().unwrap(),
            "198.18.100.1".parse().unwrap(),
        ],
        ..node()
    };
    assert_eq!(
        plan(&objs, &a, &PlanOptions::default()),
        plan(&objs, &b, &PlanOptions::default())
    );
}
