//! Endpoints → EndpointSlice, as the mirroring controller does it.
use k8s_openapi::api::core::v1::{Endpoints, Service};

use crate::{
    plan::ErrorKind,
    source::objects::{
        LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MIRRORING_CONTROLLER, Objects, mirror_endpoints,
        should_mirror,
    },
};

fn endpoints(yaml: &str) -> Endpoints {
    serde_yaml_ng::from_str(yaml).expect("test Endpoints parse")
}

fn service(yaml: &str) -> Service {
    serde_yaml_ng::from_str(yaml).expect("test Service parse")
}

#[test]
fn one_slice_per_subset_with_conditions_ports_node_name_and_labels() {
    let ep = endpoints(
        r#"
metadata: {name: db, namespace: data, labels: {team: storage}}
subsets:
- addresses: [{ip: 198.19.1.2, nodeName: node-a, hostname: db-0}, {ip: "fd00::2"}]
  notReadyAddresses: [{ip: 198.19.1.3}]
  ports: [{name: pg, port: 5432}, {name: dns, port: 53, protocol: UDP}]
- addresses: [{ip: 198.19.2.2}]
  ports: [{name: pg, port: 6432, protocol: TCP}]
- ports: [{name: pg, port: 7432}]
"#,
    );
    let (slices, errors) = mirror_endpoints(&ep);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        slices.len(),
        2,
        "the subset without addresses gives no slice"
    );

    let s = &slices[0];
    assert_eq!(s.metadata.name.as_deref(), Some("db-mirror-0"));
    assert_eq!(s.metadata.namespace.as_deref(), Some("data"));
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels.get(LABEL_SERVICE_NAME).map(String::as_str),
        Some("db")
    );
    assert_eq!(
        labels.get(LABEL_MANAGED_BY).map(String::as_str),
        Some(MIRRORING_CONTROLLER)
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("storage"));
    assert_eq!(s.address_type, "IPv4");
    let ports: Vec<(Option<&str>, Option<i32>, Option<&str>)> = s
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port, p.protocol.as_deref()))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("pg"), Some(5432), Some("TCP")),
            (Some("dns"), Some(53), Some("UDP"))
        ]
    );
    // IPv6 skipped; ready then not ready.
    let eps: Vec<(&str, Option<bool>, Option<&str>)> = s
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].as_str(),
                e.conditions.as_ref().and_then(|c| c.ready),
                e.node_name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        eps,
        [
            ("198.19.1.2", Some(true), Some("node-a")),
            ("198.19.1.3", Some(false), None)
        ]
    );
    assert_eq!(s.endpoints[0].hostname.as_deref(), Some("db-0"));
    // Only `ready` is set, like the real controller: serving/terminating keep defaults.
    let c = s.endpoints[1].conditions.as_ref().unwrap();
    assert_eq!((c.serving, c.terminating), (None, None));

    assert_eq!(slices[1].metadata.name.as_deref(), Some("db-mirror-1"));
    assert_eq!(slices[1].ports.as_ref().unwrap()[0].port, Some(6432));
}

#[test]
fn unusable_addresses_and_ports_are_reported_with_endpoints_paths() {
    let ep = endpoints(
        r#"
metadata: {name: db}
subsets:
- addresses: [{ip: 198.19.1.2}, {ip: nope}]
  notReadyAddresses: [{ip: 127.0.0.1}]
  ports: [{name: a, port: 0}, {name: b, port: 80, protocol: ICMP}, {name: c, port: 81}, {name: d, port: 82, protocol: SCTP}]
"#,
    );
    let (slices, errors) = mirror_endpoints(&ep);
    let got: Vec<(&str, &str, ErrorKind)> = errors
        .iter()
        .map(|e| (e.object.as_str(), e.field.as_str(), e.kind))
        .collect();
    assert_eq!(
        got,
        [
            (
                "Endpoints default/db",
                "subsets[0].ports[0].port",
                ErrorKind::InvalidPort
            ),
            (
                "Endpoints default/db",
                "subsets[0].ports[1].protocol",
                ErrorKind::UnknownProtocol
            ),
            (
                "Endpoints default/db",
                "subsets[0].addresses[1].ip",
                ErrorKind::InvalidAddress
            ),
            (
                "Endpoints default/db",
                "subsets[0].notReadyAddresses[0].ip",
                ErrorKind::InvalidAddress
            ),
        ]
    );
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].endpoints.len(), 1);
    let names: Vec<&str> = slices[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.as_deref())
        .collect();
    assert_eq!(names, ["c", "d"]);
}

#[test]
fn mirroring_only_for_services_without_selector() {
    let ep = endpoints(
        "metadata: {name: web}\nsubsets: [{addresses: [{ip: 198.19.1.2}], ports: [{port: 80}]}]",
    );
    let with_selector = service("metadata: {name: web}\nspec: {selector: {app: web}}");
    let empty_selector = service("metadata: {name: web}\nspec: {selector: {}}");
    let no_selector = service("metadata: {name: web}\nspec: {ports: [{port: 80}]}");
    assert!(!should_mirror(&ep, Some(&with_selector)));
    assert!(should_mirror(&ep, Some(&empty_selector)));
    assert!(should_mirror(&ep, Some(&no_selector)));
    assert!(
        should_mirror(&ep, None),
        "no apiserver: mirror even before the Service exists"
    );

    let skip = endpoints(
        "metadata: {name: web, labels: {endpointslice.kubernetes.io/skip-mirror: \"true\"}}",
    );
    assert!(!should_mirror(&skip, Some(&no_selector)));
    let leader = endpoints(
        "metadata: {name: web, annotations: {control-plane.alpha.kubernetes.io/leader: x}}",
    );
    assert!(!should_mirror(&leader, None));
}

#[test]
fn add_endpoints_matches_services_by_namespace_and_name() {
    let mut objs = Objects {
        services: vec![
            service("metadata: {name: web, namespace: a}\nspec: {selector: {app: web}}"),
            service("metadata: {name: web, namespace: b}"),
        ],
        slices: Vec::new(),
    };
    let eps = [
        endpoints(
            "metadata: {name: web, namespace: a}\nsubsets: [{addresses: [{ip: 198.19.1.2}], ports: [{port: 80}]}]",
        ),
        endpoints(
            "metadata: {name: web, namespace: b}\nsubsets: [{addresses: [{ip: 198.19.2.2}], ports: [{port: 80}]}]",
        ),
    ];
    assert!(objs.add_endpoints(&eps).is_empty());
    let keys: Vec<String> = objs
        .slices
        .iter()
        .map(|s| crate::source::objects::key(&s.metadata))
        .collect();
    assert_eq!(keys, ["b/web-mirror-0"]);
}
