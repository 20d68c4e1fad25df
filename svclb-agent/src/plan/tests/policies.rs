//! Locality and traffic policies, session affinity, load-balancing algorithm.
use super::*;

use super::nodeport_web as web;

const KEY: &str = "default/web:http/TCP";
const EXT: &str = "default/web:http/TCP@ext";

#[test]
fn locality_follows_node_name() {
    let p = run_clean(&web(""));
    assert_eq!(keys(&p), [KEY]);
    assert_eq!(
        backends(set(&p, KEY)),
        ["198.19.1.2:8080 local", "198.19.2.2:8080"]
    );

    // Without a node name nothing is local.
    let p = run_on(
        &web(""),
        &NodeInfo {
            name: None,
            ..node()
        },
    );
    assert_eq!(
        backends(set(&p, KEY)),
        ["198.19.1.2:8080", "198.19.2.2:8080"]
    );
}

#[test]
fn external_traffic_policy_local_splits_external_frontends_onto_local_endpoints() {
    let p = run_clean(&web("  externalTrafficPolicy: Local"));
    assert_eq!(keys(&p), [KEY, EXT]);
    let internal = set(&p, KEY);
    assert_eq!(frontends(internal), ["ClusterIP 198.18.0.10:80/TCP"]);
    assert_eq!(
        backends(internal),
        ["198.19.1.2:8080 local", "198.19.2.2:8080"]
    );
    assert!(!internal.local_policy);
    let external = set(&p, EXT);
    assert_eq!(frontends(external), ["NodePort 198.18.100.1:30080/TCP"]);
    assert_eq!(backends(external), ["198.19.1.2:8080 local"]);
    assert!(external.local_policy);
}

#[test]
fn internal_traffic_policy_local_restricts_cluster_ip_only() {
    let p = run_clean(&web("  internalTrafficPolicy: Local"));
    assert_eq!(keys(&p), [KEY, EXT]);
    let internal = set(&p, KEY);
    assert_eq!(frontends(internal), ["ClusterIP 198.18.0.10:80/TCP"]);
    assert_eq!(backends(internal), ["198.19.1.2:8080 local"]);
    assert!(internal.local_policy);
    let external = set(&p, EXT);
    assert_eq!(
        backends(external),
        ["198.19.1.2:8080 local", "198.19.2.2:8080"]
    );
    assert!(!external.local_policy);
}

#[test]
fn both_policies_local_share_one_set() {
    let p = run_clean(&web(
        "  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local",
    ));
    assert_eq!(keys(&p), [KEY]);
    let s = set(&p, KEY);
    assert_eq!(
        frontends(s),
        [
            "ClusterIP 198.18.0.10:80/TCP",
            "NodePort 198.18.100.1:30080/TCP"
        ]
    );
    assert_eq!(backends(s), ["198.19.1.2:8080 local"]);
    assert!(s.local_policy);
}

#[test]
fn external_local_without_a_local_endpoint_rejects_on_the_external_set() {
    let node_c = NodeInfo {
        name: Some("node-c".into()),
        ..node()
    };
    let p = run_on(&web("  externalTrafficPolicy: Local"), &node_c);
    assert!(p.errors.is_empty());
    // Rejects rather than sending the client elsewhere (its address is preserved).
    assert!(set(&p, EXT).endpoints.is_empty());
    assert_eq!(backends(set(&p, KEY)).len(), 2);
}

#[test]
fn same_endpoints_but_different_policy_still_split() {
    // As node-a with only node-a endpoints, both scopes hold the same list, but
    // the external one must keep the client address: two sets.
    let yaml =
        web("  externalTrafficPolicy: Local").replace("nodeName: node-b", "nodeName: node-a");
    let p = run_clean(&yaml);
    assert_eq!(keys(&p), [KEY, EXT]);
    assert_eq!(set(&p, KEY).endpoints, set(&p, EXT).endpoints);
    assert!(!set(&p, KEY).local_policy && set(&p, EXT).local_policy);
}

#[test]
fn local_policy_falls_back_to_local_terminating_endpoints() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 198.18.0.10
  externalTrafficPolicy: Local
  ports: [{name: http, port: 80, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [198.19.1.2], nodeName: node-a, conditions: {ready: false, serving: true, terminating: true}}
- {addresses: [198.19.2.2], nodeName: node-b}
"#;
    let p = run_clean(yaml);
    // Cluster scope still has a ready endpoint elsewhere; the local scope falls back.
    assert_eq!(backends(set(&p, KEY)), ["198.19.2.2:8080"]);
    assert_eq!(
        backends(set(&p, EXT)),
        ["198.19.1.2:8080 terminating local"]
    );
}

#[test]
fn external_policy_without_external_frontends_adds_no_set() {
    let yaml = web("  externalTrafficPolicy: Local")
        .replace("type: NodePort", "type: ClusterIP")
        .replace(", nodePort: 30080", "");
    let p = run_clean(&yaml);
    assert_eq!(keys(&p), [KEY]);
    assert!(!set(&p, KEY).local_policy);
}

#[test]
fn session_affinity_default_custom_and_none() {
    let p = run_clean(&web("  sessionAffinity: ClientIP"));
    assert_eq!(set(&p, KEY).affinity_timeout_s, Some(10_800));
    let p = run_clean(&web(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}",
    ));
    assert_eq!(set(&p, KEY).affinity_timeout_s, Some(60));
    let p = run_clean(&web(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86400}}",
    ));
    assert_eq!(set(&p, KEY).affinity_timeout_s, Some(86_400));
    // A config without ClientIP affinity means nothing.
    let p = run_clean(&web(
        "  sessionAffinity: None\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}",
    ));
    assert_eq!(set(&p, KEY).affinity_timeout_s, None);
}

#[test]
fn session_affinity_applies_to_both_scopes() {
    let p = run_clean(&web(
        "  sessionAffinity: ClientIP\n  externalTrafficPolicy: Local",
    ));
    assert_eq!(set(&p, KEY).affinity_timeout_s, Some(10_800));
    assert_eq!(set(&p, EXT).affinity_timeout_s, Some(10_800));
}

#[test]
fn invalid_affinity_timeout_is_an_error_and_disables_affinity() {
    for t in [0, 86_401, -5] {
        let p = run(&web(&format!(
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: {t}}}}}"
        )));
        only_error(
            &p,
            "Service default/web",
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            ErrorKind::InvalidValue,
        );
        let s = set(&p, KEY);
        assert_eq!(s.affinity_timeout_s, None, "timeout {t}");
        assert_eq!(backends(s).len(), 2, "the Service is still planned");
    }
    let p = run(&web("  sessionAffinity: Cookie"));
    only_error(
        &p,
        "Service default/web",
        "spec.sessionAffinity",
        ErrorKind::InvalidValue,
    );
    assert_eq!(set(&p, KEY).affinity_timeout_s, None);
}

#[test]
fn maglev_annotation_and_default() {
    let annotated = |v: &str| {
        web("").replace(
            "metadata: {name: web}",
            &format!("metadata: {{name: web, annotations: {{svclb.io/lb-algorithm: {v}}}}}"),
        )
    };
    let maglev_default = PlanOptions {
        maglev_default: true,
        ..PlanOptions::default()
    };
    let plan_with = |yaml: &str, opts: &PlanOptions| plan(&objects(yaml), &node(), opts);

    assert!(!set(&run_clean(&web("")), KEY).maglev);
    assert!(set(&plan_with(&web(""), &maglev_default), KEY).maglev);
    assert!(set(&run_clean(&annotated("maglev")), KEY).maglev);
    assert!(!set(&plan_with(&annotated("random"), &maglev_default), KEY).maglev);

    for (opts, expect) in [(PlanOptions::default(), false), (maglev_default, true)] {
        let p = plan_with(&annotated("round-robin"), &opts);
        only_error(
            &p,
            "Service default/web",
            "metadata.annotations[svclb.io/lb-algorithm]",
            ErrorKind::InvalidValue,
        );
        assert_eq!(set(&p, KEY).maglev, expect);
    }
}

#[test]
fn unknown_traffic_policy_is_an_error_and_means_cluster() {
    let p = run(&web("  externalTrafficPolicy: Nearby"));
    only_error(
        &p,
        "Service default/web",
        "spec.externalTrafficPolicy",
        ErrorKind::InvalidValue,
    );
    assert_eq!(keys(&p), [KEY]);
    assert!(!set(&p, KEY).local_policy);
}
