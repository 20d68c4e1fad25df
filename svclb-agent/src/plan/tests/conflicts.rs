//! Two claims on one frontend: a deterministic winner and one error for the loser.
use super::*;

fn svc(name: &str, created: Option<&str>, spec: &str) -> String {
    let ts = created
        .map(|t| format!(", creationTimestamp: \"{t}\""))
        .unwrap_or_default();
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}{ts}}}\nspec:\n{spec}\n")
}

#[test]
fn older_service_wins_a_cluster_ip_and_the_loser_keeps_its_other_frontends() {
    let yaml = svc(
        "a",
        Some("2024-05-01T00:00:00Z"),
        "  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80}]",
    ) + &svc(
        "b",
        Some("2024-01-01T00:00:00Z"),
        "  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80}, {name: alt, port: 8080}]",
    );
    let p = run(&yaml);
    // b is older: a loses, even though "a" sorts first by name.
    let e = only_error(
        &p,
        "Service default/a",
        "spec.clusterIP",
        ErrorKind::Conflict,
    );
    assert_eq!(
        e.to_string(),
        "Service default/a: spec.clusterIP: frontend 198.18.0.10:80/TCP is already used by Service default/b spec.clusterIP; dropped here"
    );
    assert_eq!(keys(&p), ["default/b:alt/TCP", "default/b:http/TCP"]);
    assert_eq!(
        frontends(set(&p, "default/b:http/TCP")),
        ["ClusterIP 198.18.0.10:80/TCP"]
    );
}

#[test]
fn without_timestamps_namespace_name_order_decides_and_a_timestamp_beats_none() {
    let spec = "  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80}]";
    let p = run(&(svc("b", None, spec) + &svc("a", None, spec)));
    only_error(
        &p,
        "Service default/b",
        "spec.clusterIP",
        ErrorKind::Conflict,
    );
    assert_eq!(keys(&p), ["default/a:http/TCP"]);

    let p = run(&(svc("b", Some("2030-01-01T00:00:00Z"), spec) + &svc("a", None, spec)));
    only_error(
        &p,
        "Service default/a",
        "spec.clusterIP",
        ErrorKind::Conflict,
    );
    assert_eq!(keys(&p), ["default/b:http/TCP"]);
}

#[test]
fn node_port_conflict_is_one_error_for_all_node_addresses() {
    let node = NodeInfo {
        addresses: vec![
            "198.18.100.1".parse().unwrap(),
            "198.18.101.1".parse().unwrap(),
        ],
        ..node()
    };
    let yaml = svc(
        "a",
        None,
        "  type: NodePort\n  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80, nodePort: 30080}]",
    ) + &svc(
        "b",
        None,
        "  type: NodePort\n  clusterIP: 198.18.0.11\n  ports: [{name: http, port: 80, nodePort: 30080}]",
    );
    let p = run_on(&yaml, &node);
    let e = only_error(
        &p,
        "Service default/b",
        "spec.ports[0].nodePort",
        ErrorKind::Conflict,
    );
    assert!(
        e.message
            .contains("198.18.100.1:30080/TCP, 198.18.101.1:30080/TCP"),
        "{e}"
    );
    assert!(
        e.message
            .contains("Service default/a spec.ports[0].nodePort"),
        "{e}"
    );
    assert_eq!(
        frontends(set(&p, "default/b:http/TCP")),
        ["ClusterIP 198.18.0.11:80/TCP"]
    );
    assert_eq!(set(&p, "default/a:http/TCP").frontends.len(), 3);
}

#[test]
fn same_node_port_with_other_protocol_is_no_conflict() {
    let yaml = svc(
        "a",
        None,
        "  type: NodePort\n  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80, nodePort: 30080}]",
    ) + &svc(
        "b",
        None,
        "  type: NodePort\n  clusterIP: 198.18.0.11\n  ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30080}]",
    );
    let p = run_clean(&yaml);
    assert_eq!(set(&p, "default/b:dns/UDP").frontends.len(), 2);
}

#[test]
fn two_ports_of_one_service_on_one_node_port() {
    let p = run(&svc(
        "a",
        None,
        "  type: NodePort\n  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80, nodePort: 30080}, {name: alt, port: 81, nodePort: 30080}]",
    ));
    let e = only_error(
        &p,
        "Service default/a",
        "spec.ports[1].nodePort",
        ErrorKind::Conflict,
    );
    assert!(
        e.message
            .contains("spec.ports[0].nodePort of the same Service"),
        "{e}"
    );
    assert_eq!(
        frontends(set(&p, "default/a:alt/TCP")),
        ["ClusterIP 198.18.0.10:81/TCP"]
    );
    assert_eq!(
        frontends(set(&p, "default/a:http/TCP")),
        [
            "ClusterIP 198.18.0.10:80/TCP",
            "NodePort 198.18.100.1:30080/TCP"
        ]
    );
}

#[test]
fn external_ip_claiming_another_services_cluster_ip() {
    let yaml = svc(
        "a",
        None,
        "  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80}]",
    ) + &svc(
        "b",
        None,
        "  clusterIP: 198.18.0.11\n  externalIPs: [198.18.0.50, 198.18.0.10]\n  ports: [{name: http, port: 80}]",
    );
    let p = run(&yaml);
    only_error(
        &p,
        "Service default/b",
        "spec.externalIPs[1]",
        ErrorKind::Conflict,
    );
    assert_eq!(
        frontends(set(&p, "default/b:http/TCP")),
        [
            "ClusterIP 198.18.0.11:80/TCP",
            "ExternalIP 198.18.0.50:80/TCP"
        ]
    );
    assert_eq!(
        frontends(set(&p, "default/a:http/TCP")),
        ["ClusterIP 198.18.0.10:80/TCP"]
    );
}

#[test]
fn an_address_listed_twice_for_one_port_is_served_once_without_error() {
    let p = run_clean(&svc(
        "a",
        None,
        "  clusterIP: 198.18.0.10\n  externalIPs: [198.18.0.10, 198.18.0.50, 198.18.0.50]\n  ports: [{name: http, port: 80}]",
    ));
    assert_eq!(
        frontends(set(&p, "default/a:http/TCP")),
        [
            "ClusterIP 198.18.0.10:80/TCP",
            "ExternalIP 198.18.0.50:80/TCP"
        ]
    );
}

#[test]
fn a_loser_with_no_frontend_left_has_no_set() {
    let yaml = svc(
        "a",
        None,
        "  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80}]",
    ) + &svc(
        "b",
        None,
        "  clusterIP: 198.18.0.10\n  ports: [{name: web, port: 80}]",
    );
    let p = run(&yaml);
    only_error(
        &p,
        "Service default/b",
        "spec.clusterIP",
        ErrorKind::Conflict,
    );
    assert_eq!(keys(&p), ["default/a:http/TCP"]);
    assert!(p.ignored.is_empty());
}

#[test]
fn conflicts_across_namespaces_use_namespace_then_name() {
    let spec = "  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80}]";
    let yaml = svc("a", None, spec).replace("{name: a}", "{name: a, namespace: zeta}")
        + &svc("z", None, spec).replace("{name: z}", "{name: z, namespace: alpha}");
    let p = run(&yaml);
    only_error(&p, "Service zeta/a", "spec.clusterIP", ErrorKind::Conflict);
    assert_eq!(keys(&p), ["alpha/z:http/TCP"]);
}

#[test]
fn duplicate_service_objects_keep_one_and_report() {
    // Only reachable through a source that does not deduplicate itself.
    let mut objs = objects(&svc(
        "a",
        None,
        "  clusterIP: 198.18.0.10\n  ports: [{name: http, port: 80}]",
    ));
    let mut second = objs.services[0].clone();
    second.metadata.creation_timestamp = None;
    second.spec.as_mut().unwrap().cluster_ip = Some("198.18.0.11".into());
    objs.services[0].metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2024-01-01T00:00:00Z".parse().unwrap(),
        ));
    objs.services.insert(0, second);
    let p = plan(&objs, &node(), &PlanOptions::default());
    only_error(
        &p,
        "Service default/a",
        "metadata.name",
        ErrorKind::Duplicate,
    );
    // The one with a creation timestamp is the older definition.
    assert_eq!(
        frontends(set(&p, "default/a:http/TCP")),
        ["ClusterIP 198.18.0.10:80/TCP"]
    );
}
