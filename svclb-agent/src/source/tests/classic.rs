//! End to end from files to desired state: the selectorless Service with a
//! hand-written Endpoints object from the Kubernetes Service docs.
use super::TempDir;
use crate::{
    model::SetKey,
    plan::{NodeInfo, PlanOptions, plan},
    source::manifests::load_dir,
};

#[test]
fn selectorless_service_with_hand_written_endpoints() {
    let dir = TempDir::new();
    dir.write(
        "my-service.yaml",
        r#"
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  clusterIP: 198.18.0.20
  ports:
    - protocol: TCP
      port: 6666
      targetPort: 80
---
apiVersion: v1
kind: Endpoints
metadata:
  # the name must match the Service's
  name: my-service
subsets:
  - addresses:
      - ip: 198.19.1.2
      - ip: 198.19.2.2
    notReadyAddresses:
      - ip: 198.19.3.2
    ports:
      - port: 80
"#,
    );
    let (objects, errors) = load_dir(dir.path()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let node = NodeInfo {
        name: Some("node-a".into()),
        addresses: vec!["198.18.100.1".parse().unwrap()],
    };
    let p = plan(&objects, &node, &PlanOptions::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let keys: Vec<&str> = p.state.sets.keys().map(|k| k.0.as_str()).collect();
    assert_eq!(keys, ["default/my-service:6666/TCP"]);
    let set = &p.state.sets[&SetKey("default/my-service:6666/TCP".into())];
    let fronts: Vec<String> = set
        .frontends
        .iter()
        .map(|(f, k)| format!("{} {f}", k.as_str()))
        .collect();
    assert_eq!(fronts, ["ClusterIP 198.18.0.20:6666/TCP"]);
    let backends: Vec<String> = set
        .endpoints
        .iter()
        .map(|e| e.backend.socket().to_string())
        .collect();
    assert_eq!(
        backends,
        ["198.19.1.2:80", "198.19.2.2:80"],
        "the not-ready address takes no new flows"
    );
}

#[test]
fn endpoints_of_a_service_with_selector_are_not_used() {
    let dir = TempDir::new();
    dir.write(
        "web.yaml",
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 198.18.0.21, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web}
subsets: [{addresses: [{ip: 198.19.1.2}], ports: [{port: 8080}]}]
"#,
    );
    let (objects, errors) = load_dir(dir.path()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let p = plan(&objects, &NodeInfo::default(), &PlanOptions::default());
    assert!(
        p.state.sets[&SetKey("default/web:80/TCP".into())]
            .endpoints
            .is_empty()
    );
}

#[test]
fn mirrored_named_ports_serve_a_multi_port_service_and_errors_point_at_the_endpoints() {
    let dir = TempDir::new();
    dir.write(
        "svc.yaml",
        r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  clusterIP: 198.18.0.22
  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]
"#,
    );
    dir.write(
        "svc-endpoints.yaml",
        r#"
apiVersion: v1
kind: Endpoints
metadata: {name: ext, namespace: shop}
subsets:
- addresses: [{ip: 198.19.4.2, nodeName: node-a}, {ip: 198.19.4.256}]
  ports: [{name: http, port: 8080}, {name: dns, port: 5353, protocol: UDP}]
"#,
    );
    let (objects, errors) = load_dir(dir.path()).unwrap();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "Endpoints shop/ext: subsets[0].addresses[1].ip: \"198.19.4.256\" is not an IP address; address not mirrored"
        ]
    );
    let node = NodeInfo {
        name: Some("node-a".into()),
        addresses: vec![],
    };
    let p = plan(&objects, &node, &PlanOptions::default());
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let http = &p.state.sets[&SetKey("shop/ext:http/TCP".into())];
    assert_eq!(http.endpoints.len(), 1);
    assert_eq!(
        http.endpoints[0].backend.socket().to_string(),
        "198.19.4.2:8080"
    );
    assert!(http.endpoints[0].local);
    let dns = &p.state.sets[&SetKey("shop/ext:dns/UDP".into())];
    assert_eq!(
        dns.endpoints[0].backend.socket().to_string(),
        "198.19.4.2:5353"
    );
}
