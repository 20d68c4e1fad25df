//! Service types, frontends and port resolution.
use std::net::Ipv4Addr;

use super::*;
use crate::model::FrontendKind;

const WEB_SLICE: &str = r#"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [198.19.2.2]
- addresses: [198.19.1.2]
"#;

#[test]
fn clusterip_and_nodeport_on_two_node_addresses() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 198.18.0.10
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
"#
    .to_string()
        + WEB_SLICE;
    let node = NodeInfo {
        name: Some("node-a".into()),
        // Duplicated on purpose: one frontend per distinct address.
        addresses: vec![
            Ipv4Addr::new(198, 18, 101, 1),
            Ipv4Addr::new(198, 18, 100, 1),
            Ipv4Addr::new(198, 18, 101, 1),
        ],
    };
    let p = run_on(&yaml, &node);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(keys(&p), ["default/web:http/TCP"]);
    let s = set(&p, "default/web:http/TCP");
    assert_eq!(
        frontends(s),
        [
            "ClusterIP 198.18.0.10:80/TCP",
            "NodePort 198.18.100.1:30080/TCP",
            "NodePort 198.18.101.1:30080/TCP"
        ]
    );
    // Sorted whatever the slice order.
    assert_eq!(backends(s), ["198.19.1.2:8080", "198.19.2.2:8080"]);
    assert_eq!(
        (s.affinity_timeout_s, s.local_policy, s.maglev),
        (None, false, false)
    );
}

#[test]
fn load_balancer_with_external_ips_and_ingress() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  clusterIP: 198.18.0.10
  externalIPs: [198.18.0.50]
  ports: [{name: http, port: 80, nodePort: 30080}]
status:
  loadBalancer:
    ingress:
    - ip: 198.18.0.60
    - hostname: lb.example.com
    - {ip: 198.18.0.61, ipMode: Proxy}
    - {ip: 198.18.0.62, ipMode: VIP}
"#
    .to_string()
        + WEB_SLICE;
    let p = run_clean(&yaml);
    let s = set(&p, "default/web:http/TCP");
    assert_eq!(
        frontends(s),
        [
            "ClusterIP 198.18.0.10:80/TCP",
            "ExternalIP 198.18.0.50:80/TCP",
            "LoadBalancer 198.18.0.60:80/TCP",
            "LoadBalancer 198.18.0.62:80/TCP",
            "NodePort 198.18.100.1:30080/TCP",
        ]
    );
    assert_eq!(backends(s).len(), 2);
}

#[test]
fn external_ips_work_on_a_cluster_ip_service_and_ingress_needs_type_load_balancer() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 198.18.0.10
  externalIPs: [198.18.0.50]
  ports: [{name: http, port: 80}]
status: {loadBalancer: {ingress: [{ip: 198.18.0.60}]}}
"#
    .to_string()
        + WEB_SLICE;
    let p = run_clean(&yaml);
    assert_eq!(
        frontends(set(&p, "default/web:http/TCP")),
        [
            "ClusterIP 198.18.0.10:80/TCP",
            "ExternalIP 198.18.0.50:80/TCP"
        ]
    );
}

#[test]
fn node_port_type_without_allocated_node_port_has_cluster_ip_only() {
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: NodePort, clusterIP: 198.18.0.10, ports: [{name: http, port: 80, nodePort: 0}]}
"#,
    );
    assert_eq!(
        frontends(set(&p, "default/web:http/TCP")),
        ["ClusterIP 198.18.0.10:80/TCP"]
    );
}

#[test]
fn dual_stack_cluster_ips_use_the_ipv4_ones_and_cluster_ips_supersedes_cluster_ip() {
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: fd00::10
  clusterIPs: [fd00::10, 198.18.0.10]
  externalIPs: [fd00::50]
  ports: [{name: http, port: 80}]
"#,
    );
    assert_eq!(
        frontends(set(&p, "default/web:http/TCP")),
        ["ClusterIP 198.18.0.10:80/TCP"]
    );
}

#[test]
fn multi_port_named_target_port_resolves_per_slice() {
    // Two pods whose container ports differ: the EndpointSlice controller writes one
    // slice per distinct port set, and the Service port name picks the number.
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: app, namespace: shop}
spec:
  clusterIP: 198.18.0.30
  ports:
  - {name: http, port: 80, targetPort: web}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-a, namespace: shop, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: dns, port: 5353, protocol: UDP}]
endpoints: [{addresses: [198.19.1.2]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-b, namespace: shop, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{name: http, port: 9090}]
endpoints: [{addresses: [198.19.2.2]}]
"#,
    );
    assert_eq!(keys(&p), ["shop/app:dns/UDP", "shop/app:http/TCP"]);
    let http = set(&p, "shop/app:http/TCP");
    assert_eq!(frontends(http), ["ClusterIP 198.18.0.30:80/TCP"]);
    assert_eq!(backends(http), ["198.19.1.2:8080", "198.19.2.2:9090"]);
    let dns = set(&p, "shop/app:dns/UDP");
    assert_eq!(frontends(dns), ["ClusterIP 198.18.0.30:53/UDP"]);
    // app-b has no dns port: its endpoint is not a dns backend.
    assert_eq!(backends(dns), ["198.19.1.2:5353"]);
    assert!(
        dns.endpoints
            .iter()
            .all(|e| e.backend.proto == crate::model::Proto::Udp)
    );
}

#[test]
fn unnamed_port_is_keyed_by_number_and_matches_the_unnamed_slice_port() {
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: 198.18.0.40, ports: [{port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{port: 15432}]
endpoints: [{addresses: [198.19.3.2]}]
"#,
    );
    assert_eq!(
        backends(set(&p, "default/db:5432/TCP")),
        ["198.19.3.2:15432"]
    );
}

#[test]
fn slice_port_must_match_name_and_protocol() {
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 198.18.0.10, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-udp, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: UDP}]
endpoints: [{addresses: [198.19.1.2]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-other, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: metrics, port: 9100}]
endpoints: [{addresses: [198.19.2.2]}]
"#,
    );
    assert!(backends(set(&p, "default/web:http/TCP")).is_empty());
}

#[test]
fn service_without_endpoints_still_gets_its_set_so_it_rejects() {
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: empty}
spec: {clusterIP: 198.18.0.11, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}
"#,
    );
    assert_eq!(
        keys(&p),
        ["default/empty:dns/UDP", "default/empty:http/TCP"]
    );
    assert!(
        p.state
            .sets
            .values()
            .all(|s| s.endpoints.is_empty() && s.frontends.len() == 1)
    );
}

#[test]
fn slices_of_other_services_namespaces_or_without_label_do_not_count() {
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 198.18.0.10, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: other, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [198.19.1.2]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-2}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [198.19.2.2]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-3, labels: {kubernetes.io/service-name: web2}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [198.19.3.2]}]
"#,
    );
    assert!(backends(set(&p, "default/web:http/TCP")).is_empty());
}

#[test]
fn headless_external_name_and_portless_services_are_ignored_without_errors() {
    let p = run(&(r#"
apiVersion: v1
kind: Service
metadata: {name: headless}
spec: {clusterIP: None, externalIPs: [198.18.0.70], ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless2}
spec: {clusterIPs: [None], ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db-alias}
spec: {type: ExternalName, externalName: db.example.com, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: noports}
spec: {clusterIP: 198.18.0.12}
---
apiVersion: v1
kind: Service
metadata: {name: noaddr}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: headless-1, labels: {kubernetes.io/service-name: headless}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [198.19.1.2]}]
"#
    .to_string()
        + OK_SERVICE));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(
        p.ignored,
        [
            ("default/db-alias".to_string(), "ExternalName"),
            ("default/headless".to_string(), "headless"),
            ("default/headless2".to_string(), "headless"),
            ("default/noaddr".to_string(), "no frontend address"),
            ("default/noports".to_string(), "no ports"),
        ]
    );
    assert_eq!(keys(&p), ["default/ok:http/TCP"]);
    assert_ok_service_planned(&p);
}

#[test]
fn frontend_kinds_are_recorded_per_frontend() {
    let p = run_clean(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: NodePort, clusterIP: 198.18.0.10, externalIPs: [198.18.0.50], ports: [{name: http, port: 80, nodePort: 30080}]}
"#,
    );
    let kinds: Vec<FrontendKind> = set(&p, "default/web:http/TCP")
        .frontends
        .values()
        .copied()
        .collect();
    assert_eq!(
        kinds,
        [
            FrontendKind::ClusterIp,
            FrontendKind::ExternalIp,
            FrontendKind::NodePort
        ]
    );
}
