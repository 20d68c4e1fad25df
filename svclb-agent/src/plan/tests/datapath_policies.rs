//! Drop-instead-of-reject under Local policies, and loadBalancerSourceRanges.
use super::*;

/// A LoadBalancer Service whose only endpoint runs on `node`, with `spec_extra` lines.
fn svc(node: &str, spec_extra: &str) -> String {
    web_service(
        "LoadBalancer",
        spec_extra,
        "status: {loadBalancer: {ingress: [{ip: 198.18.200.10}]}}",
        &[&format!("{{addresses: [198.19.2.2], nodeName: {node}}}")],
    )
}

const KEY: &str = "default/web:http/TCP";
const EXT: &str = "default/web:http/TCP@ext";

#[test]
fn local_policy_without_local_endpoint_drops_only_when_others_exist() {
    let p = run_clean(&svc("node-b", "  externalTrafficPolicy: Local"));
    let ext = set(&p, EXT);
    assert!(ext.endpoints.is_empty() && ext.no_local_drop);
    assert!(!set(&p, KEY).no_local_drop);

    let p = run_clean(&svc("node-b", "  internalTrafficPolicy: Local"));
    assert!(set(&p, KEY).no_local_drop);
    assert!(!set(&p, EXT).no_local_drop);

    // A local endpoint: nothing to drop.
    let p = run_clean(&svc("node-a", "  externalTrafficPolicy: Local"));
    assert!(!set(&p, KEY).no_local_drop);

    // No endpoint anywhere: reject, as for any Service without endpoints.
    let no_eps = svc("node-b", "  externalTrafficPolicy: Local")
        .replace("- {addresses: [198.19.2.2], nodeName: node-b}", "");
    let p = run_clean(&no_eps);
    assert!(p.state.sets.values().all(|s| !s.no_local_drop));
}

#[test]
fn source_ranges_are_carried_and_bad_ones_reported() {
    let p = run_clean(&svc(
        "node-a",
        "  loadBalancerSourceRanges: [198.18.100.0/24]",
    ));
    assert_eq!(
        set(&p, KEY).source_ranges,
        Some(vec![(Ipv4Addr::new(198, 18, 100, 0), 24)])
    );
    let p = run(&svc(
        "node-a",
        "  loadBalancerSourceRanges: [198.18.100.0/24, 198.18.300.0/24]",
    ));
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    let e = &p.errors[0];
    assert_eq!(
        (e.object.as_str(), e.field.as_str(), e.kind),
        (
            "Service default/web",
            "spec.loadBalancerSourceRanges[1]",
            ErrorKind::InvalidAddress
        )
    );
    // The rest of the Service is programmed.
    let s = set(&p, KEY);
    assert_eq!(
        s.source_ranges,
        Some(vec![(Ipv4Addr::new(198, 18, 100, 0), 24)])
    );
    assert_eq!(s.frontends.len(), 3);
    // Only LoadBalancer Services have source ranges.
    let np = svc("node-a", "  loadBalancerSourceRanges: [198.18.100.0/24]")
        .replace("type: LoadBalancer", "type: NodePort");
    assert_eq!(set(&run_clean(&np), KEY).source_ranges, None);
}
