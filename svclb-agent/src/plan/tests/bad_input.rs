//! Each kind of bad field gives exactly one error naming the object and the field,
//! costs only the smallest unit it affects, and leaves other Services alone.
use super::*;

/// `default/bad` with the given spec body, its slice, and [`OK_SERVICE`].
fn with_bad(spec: &str) -> Plan {
    run(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: bad}}
spec:
{spec}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: bad-1, labels: {{kubernetes.io/service-name: bad}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}, {{name: admin, port: 9090}}]
endpoints: [{{addresses: [198.19.1.2]}}]
{OK_SERVICE}"#
    ))
}

const SVC: &str = "Service default/bad";

#[test]
fn unparseable_cluster_ip_drops_only_the_cluster_ip_frontends() {
    let p = with_bad(
        "  clusterIP: 198.18.0.300\n  externalIPs: [198.18.0.50]\n  ports: [{name: http, port: 80}]",
    );
    let e = only_error(&p, SVC, "spec.clusterIP", ErrorKind::InvalidAddress);
    assert!(e.message.contains("198.18.0.300"), "{e}");
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        ["ExternalIP 198.18.0.50:80/TCP"]
    );
    assert_ok_service_planned(&p);
}

#[test]
fn bad_entry_in_cluster_ips_names_its_index() {
    let p = with_bad("  clusterIPs: [198.18.0.20, bogus]\n  ports: [{name: http, port: 80}]");
    only_error(&p, SVC, "spec.clusterIPs[1]", ErrorKind::InvalidAddress);
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        ["ClusterIP 198.18.0.20:80/TCP"]
    );
}

#[test]
fn bad_external_ip_drops_only_that_frontend() {
    let p = with_bad(
        "  clusterIP: 198.18.0.20\n  externalIPs: [198.18.0.50, 198.18.0.x, 127.0.0.1]\n  ports: [{name: http, port: 80}]",
    );
    assert_eq!(p.errors.len(), 2, "{:#?}", p.errors);
    assert_eq!(
        (p.errors[0].field.as_str(), p.errors[1].field.as_str()),
        ("spec.externalIPs[1]", "spec.externalIPs[2]")
    );
    assert!(p.errors[1].message.contains("loopback"), "{}", p.errors[1]);
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        [
            "ClusterIP 198.18.0.20:80/TCP",
            "ExternalIP 198.18.0.50:80/TCP"
        ]
    );
    assert_ok_service_planned(&p);
}

#[test]
fn bad_load_balancer_ingress_ip() {
    let p = run(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: bad}}
spec: {{type: LoadBalancer, clusterIP: 198.18.0.20, ports: [{{name: http, port: 80}}]}}
status: {{loadBalancer: {{ingress: [{{ip: 198.18.0.60}}, {{ip: "300.1.1.1"}}]}}}}
{OK_SERVICE}"#
    ));
    only_error(
        &p,
        SVC,
        "status.loadBalancer.ingress[1].ip",
        ErrorKind::InvalidAddress,
    );
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        [
            "ClusterIP 198.18.0.20:80/TCP",
            "LoadBalancer 198.18.0.60:80/TCP"
        ]
    );
    assert_ok_service_planned(&p);
}

#[test]
fn port_out_of_range_skips_that_port_only() {
    for bad in [0, 65536, -1] {
        let p = with_bad(&format!(
            "  clusterIP: 198.18.0.20\n  ports: [{{name: http, port: {bad}}}, {{name: admin, port: 81}}]"
        ));
        let e = only_error(&p, SVC, "spec.ports[0].port", ErrorKind::InvalidPort);
        assert_eq!(
            e.to_string(),
            format!(
                "Service default/bad: spec.ports[0].port: port {bad} is out of range 1-65535; port skipped"
            )
        );
        assert_eq!(keys(&p), ["default/bad:admin/TCP", "default/ok:http/TCP"]);
        assert_eq!(
            backends(set(&p, "default/bad:admin/TCP")),
            ["198.19.1.2:9090"]
        );
    }
}

#[test]
fn node_port_outside_range_keeps_the_cluster_ip() {
    let p = with_bad(
        "  type: NodePort\n  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80, nodePort: 8080}]",
    );
    let e = only_error(&p, SVC, "spec.ports[0].nodePort", ErrorKind::NodePortRange);
    assert!(e.message.contains("30000-32767"), "{e}");
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        ["ClusterIP 198.18.0.20:80/TCP"]
    );
    assert_ok_service_planned(&p);
}

#[test]
fn node_port_range_is_configurable() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: NodePort, clusterIP: 198.18.0.20, ports: [{name: http, port: 80, nodePort: 8080}]}\n";
    let opts = PlanOptions {
        node_port_range: 8000..=9000,
        ..PlanOptions::default()
    };
    let p = plan(&objects(yaml), &node(), &opts);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(
        frontends(set(&p, "default/web:http/TCP")),
        [
            "ClusterIP 198.18.0.20:80/TCP",
            "NodePort 198.18.100.1:8080/TCP"
        ]
    );
}

#[test]
fn node_port_above_65535_is_a_port_error() {
    let p = with_bad(
        "  type: NodePort\n  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80, nodePort: 70000}]",
    );
    only_error(&p, SVC, "spec.ports[0].nodePort", ErrorKind::InvalidPort);
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        ["ClusterIP 198.18.0.20:80/TCP"]
    );
}

#[test]
fn node_port_on_a_cluster_ip_service_is_reported_and_unused() {
    let p =
        with_bad("  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80, nodePort: 30080}]");
    only_error(&p, SVC, "spec.ports[0].nodePort", ErrorKind::InvalidValue);
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        ["ClusterIP 198.18.0.20:80/TCP"]
    );
}

#[test]
fn unknown_protocol_skips_that_port() {
    let p = with_bad(
        "  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80, protocol: HTTP}, {name: admin, port: 81}]",
    );
    only_error(
        &p,
        SVC,
        "spec.ports[0].protocol",
        ErrorKind::UnknownProtocol,
    );
    assert_eq!(keys(&p), ["default/bad:admin/TCP", "default/ok:http/TCP"]);
}

#[test]
fn sctp_is_unsupported_for_that_port_only() {
    let p = with_bad(
        "  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80}, {name: admin, port: 81, protocol: SCTP}]",
    );
    let e = only_error(
        &p,
        SVC,
        "spec.ports[1].protocol",
        ErrorKind::UnsupportedProtocol,
    );
    assert!(e.message.contains("SCTP"), "{e}");
    assert_eq!(keys(&p), ["default/bad:http/TCP", "default/ok:http/TCP"]);
}

#[test]
fn duplicated_port_definition_keeps_the_first() {
    let p = with_bad(
        "  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80}, {name: admin, port: 80}]",
    );
    only_error(&p, SVC, "spec.ports[1]", ErrorKind::Duplicate);
    assert_eq!(keys(&p), ["default/bad:http/TCP", "default/ok:http/TCP"]);
    // Same number, other protocol: two distinct ports, no error.
    let p = with_bad(
        "  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80}, {name: admin, port: 80, protocol: UDP}]",
    );
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(
        keys(&p),
        [
            "default/bad:admin/UDP",
            "default/bad:http/TCP",
            "default/ok:http/TCP"
        ]
    );
}

#[test]
fn duplicated_port_name_keeps_the_first() {
    let p = with_bad(
        "  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80}, {name: http, port: 81}]",
    );
    only_error(&p, SVC, "spec.ports[1].name", ErrorKind::Duplicate);
    assert_eq!(
        frontends(set(&p, "default/bad:http/TCP")),
        ["ClusterIP 198.18.0.20:80/TCP"]
    );
}

#[test]
fn unknown_service_type_skips_the_service() {
    let p = with_bad("  type: Magic\n  clusterIP: 198.18.0.20\n  ports: [{name: http, port: 80}]");
    only_error(&p, SVC, "spec.type", ErrorKind::InvalidValue);
    assert_eq!(keys(&p), ["default/ok:http/TCP"]);
    assert!(p.ignored.is_empty());
}

#[test]
fn bad_endpoint_address_skips_that_endpoint() {
    let p = run(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{clusterIP: 198.18.0.20, ports: [{{name: http, port: 80}}, {{name: admin, port: 81}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}, {{name: admin, port: 9090}}]
endpoints: [{{addresses: [198.19.1.2]}}, {{addresses: [198.19.2.256]}}, {{addresses: [198.19.3.2]}}]
{OK_SERVICE}"#
    ));
    // Reported once for the slice, not once per Service port.
    let e = only_error(
        &p,
        "EndpointSlice default/web-1",
        "endpoints[1].addresses[0]",
        ErrorKind::InvalidAddress,
    );
    assert!(e.message.contains("198.19.2.256"), "{e}");
    assert_eq!(
        backends(set(&p, "default/web:http/TCP")),
        ["198.19.1.2:8080", "198.19.3.2:8080"]
    );
    assert_eq!(
        backends(set(&p, "default/web:admin/TCP")),
        ["198.19.1.2:9090", "198.19.3.2:9090"]
    );
    assert_ok_service_planned(&p);
}

/// `default/web` (ports http, admin) with one slice whose body is given.
fn web_slice(slice_body: &str) -> Plan {
    run(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{clusterIP: 198.18.0.20, ports: [{{name: http, port: 80}}, {{name: admin, port: 81}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}
{slice_body}
{OK_SERVICE}"#
    ))
}

#[test]
fn bad_endpoint_addresses_of_other_kinds() {
    for (endpoint, what) in [
        ("{addresses: []}", "no address"),
        ("{addresses: [\"fd00::2\"]}", "IPv6"),
        ("{addresses: [0.0.0.0]}", "unspecified"),
        ("{addresses: [224.1.1.1]}", "multicast"),
    ] {
        let p = web_slice(&format!(
            "addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [198.19.1.2]}}, {endpoint}]"
        ));
        let field = if what == "no address" {
            "endpoints[1].addresses"
        } else {
            "endpoints[1].addresses[0]"
        };
        let e = only_error(
            &p,
            "EndpointSlice default/web-1",
            field,
            ErrorKind::InvalidAddress,
        );
        assert!(e.message.contains(what), "{e}");
        assert_eq!(
            backends(set(&p, "default/web:http/TCP")),
            ["198.19.1.2:8080"]
        );
        assert_ok_service_planned(&p);
    }
}

#[test]
fn bad_slice_port_skips_that_port_for_that_slice() {
    let p = web_slice(
        "addressType: IPv4\nports: [{name: http, port: 0}, {name: admin, port: 9090}]\nendpoints: [{addresses: [198.19.1.2]}]",
    );
    only_error(
        &p,
        "EndpointSlice default/web-1",
        "ports[0].port",
        ErrorKind::InvalidPort,
    );
    assert!(set(&p, "default/web:http/TCP").endpoints.is_empty());
    assert_eq!(
        backends(set(&p, "default/web:admin/TCP")),
        ["198.19.1.2:9090"]
    );

    let p = web_slice(
        "addressType: IPv4\nports: [{name: http, port: 8080, protocol: QUIC}]\nendpoints: [{addresses: [198.19.1.2]}]",
    );
    only_error(
        &p,
        "EndpointSlice default/web-1",
        "ports[0].protocol",
        ErrorKind::UnknownProtocol,
    );

    let p = web_slice(
        "addressType: IPv4\nports: [{name: http, port: 8080}, {name: http, port: 8081}]\nendpoints: [{addresses: [198.19.1.2]}]",
    );
    only_error(
        &p,
        "EndpointSlice default/web-1",
        "ports[1]",
        ErrorKind::Duplicate,
    );
    assert_eq!(
        backends(set(&p, "default/web:http/TCP")),
        ["198.19.1.2:8080"]
    );
}

#[test]
fn unknown_address_type_skips_the_slice() {
    let p = web_slice(
        "addressType: IPv5\nports: [{name: http, port: 8080}]\nendpoints: [{addresses: [198.19.1.2]}]",
    );
    only_error(
        &p,
        "EndpointSlice default/web-1",
        "addressType",
        ErrorKind::InvalidValue,
    );
    assert!(set(&p, "default/web:http/TCP").endpoints.is_empty());
    assert_ok_service_planned(&p);
}

#[test]
fn too_many_endpoints_rejects_the_port_not_the_service() {
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
    use std::net::Ipv4Addr;

    let mut objs = objects(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: big}}\nspec: {{clusterIP: 198.18.0.20, ports: [{{name: http, port: 80}}, {{name: admin, port: 81}}]}}\n---\n{OK_SERVICE}"
    ));
    let limit = crate::plan::desired::MAX_ENDPOINTS_PER_SET;
    let port = |name: &str, port| EndpointPort {
        name: Some(name.into()),
        port: Some(port),
        ..Default::default()
    };
    let slice = |name: &str, ports: Vec<EndpointPort>, range: std::ops::Range<u32>| EndpointSlice {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("kubernetes.io/service-name".to_string(), "big".to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        // 198.18.128.0 onwards: unicast addresses, clear of the test's frontends.
        endpoints: range
            .map(|i| Endpoint {
                addresses: vec![
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + i).to_string(),
                ],
                ..Default::default()
            })
            .collect(),
        ports: Some(ports),
    };
    // http: one over the limit (split over two slices); admin: exactly at the limit.
    objs.slices.push(slice(
        "big-a",
        vec![port("http", 8080), port("admin", 9090)],
        0..limit as u32,
    ));
    objs.slices.push(slice(
        "big-b",
        vec![port("http", 8080)],
        limit as u32..limit as u32 + 1,
    ));
    let p = plan(&objs, &node(), &PlanOptions::default());
    let e = only_error(
        &p,
        "Service default/big",
        "spec.ports[0]",
        ErrorKind::TooManyEndpoints,
    );
    assert!(
        e.message.contains(&format!("{} endpoints", limit + 1)),
        "{e}"
    );
    assert_eq!(keys(&p), ["default/big:admin/TCP", "default/ok:http/TCP"]);
    assert_eq!(set(&p, "default/big:admin/TCP").endpoints.len(), limit);
}

#[test]
fn errors_render_as_one_line_naming_object_and_field() {
    let p = with_bad(
        "  clusterIP: 198.18.0.20\n  externalIPs: [not-an-ip]\n  ports: [{name: http, port: 80}]",
    );
    let line = p.errors[0].to_string();
    assert_eq!(
        line,
        "Service default/bad: spec.externalIPs[0]: \"not-an-ip\" is not an IP address; frontend skipped"
    );
    assert!(!line.contains('\n'));
}

#[test]
fn duplicate_slice_objects_keep_one_and_report() {
    // Only reachable through a source that does not deduplicate itself.
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{clusterIP: 198.18.0.20, ports: [{{name: http, port: 80}}]}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [198.19.1.2]}}]\n{OK_SERVICE}"
    );
    let mut objs = objects(&yaml);
    let mut copy = objs
        .slices
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("web-1"))
        .unwrap()
        .clone();
    copy.endpoints[0].addresses = vec!["198.19.2.2".into()];
    objs.slices.push(copy);
    let p = plan(&objs, &node(), &PlanOptions::default());
    only_error(
        &p,
        "EndpointSlice default/web-1",
        "metadata.name",
        ErrorKind::Duplicate,
    );
    assert_eq!(
        backends(set(&p, "default/web:http/TCP")),
        ["198.19.1.2:8080"]
    );
    assert_ok_service_planned(&p);
}
