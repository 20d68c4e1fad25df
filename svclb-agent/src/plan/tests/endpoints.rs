//! Endpoint conditions, deduplication and readiness fallback.
use super::*;

/// Service `default/web` (port http 80 → slices' http port) plus the given slices.
fn web_with(slices: &str) -> Plan {
    run_clean(
        &(r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 198.18.0.10, ports: [{name: http, port: 80}]}
"#
        .to_string()
            + slices),
    )
}

fn web_backends(slices: &str) -> Vec<String> {
    backends(set(&web_with(slices), "default/web:http/TCP"))
}

fn slice(name: &str, port: u16, endpoints: &str) -> String {
    format!(
        r#"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints:
{endpoints}
"#
    )
}

#[test]
fn endpoint_in_several_slices_counts_once() {
    let b = web_backends(
        &(slice(
            "web-a",
            8080,
            "- addresses: [198.19.1.2]\n- addresses: [198.19.2.2]",
        ) + &slice(
            "web-b",
            8080,
            "- addresses: [198.19.2.2]\n- addresses: [198.19.3.2]",
        )),
    );
    assert_eq!(b, ["198.19.1.2:8080", "198.19.2.2:8080", "198.19.3.2:8080"]);
}

#[test]
fn same_address_with_different_ports_is_two_backends() {
    let b = web_backends(
        &(slice("web-a", 8080, "- addresses: [198.19.1.2]")
            + &slice("web-b", 9090, "- addresses: [198.19.1.2]")),
    );
    assert_eq!(b, ["198.19.1.2:8080", "198.19.1.2:9090"]);
}

#[test]
fn duplicate_keeps_first_slice_conditions_but_prefers_a_local_copy() {
    // web-a (first by name) says not ready; web-b's ready copy does not override it.
    let b = web_backends(
        &(slice(
            "web-a",
            8080,
            "- {addresses: [198.19.1.2], conditions: {ready: false}}\n- addresses: [198.19.9.2]",
        ) + &slice(
            "web-b",
            8080,
            "- {addresses: [198.19.1.2], conditions: {ready: true}}",
        )),
    );
    assert_eq!(b, ["198.19.9.2:8080"]);
    // A later local copy wins over a non-local first one.
    let b = web_backends(
        &(slice(
            "web-a",
            8080,
            "- {addresses: [198.19.1.2], nodeName: node-b}",
        ) + &slice(
            "web-b",
            8080,
            "- {addresses: [198.19.1.2], nodeName: node-a}",
        )),
    );
    assert_eq!(b, ["198.19.1.2:8080 local"]);
}

#[test]
fn ready_unset_means_ready() {
    let b = web_backends(&slice(
        "web-a",
        8080,
        "- addresses: [198.19.1.2]\n- {addresses: [198.19.2.2], conditions: {}}\n- {addresses: [198.19.3.2], conditions: {serving: true}}",
    ));
    assert_eq!(b, ["198.19.1.2:8080", "198.19.2.2:8080", "198.19.3.2:8080"]);
}

#[test]
fn not_ready_endpoints_get_no_new_flows_while_a_ready_one_exists() {
    let b = web_backends(&slice(
        "web-a",
        8080,
        "- {addresses: [198.19.1.2], conditions: {ready: false}}\n\
         - {addresses: [198.19.2.2], conditions: {ready: false, serving: true, terminating: true}}\n\
         - {addresses: [198.19.3.2], conditions: {ready: true}}",
    ));
    assert_eq!(b, ["198.19.3.2:8080"]);
}

#[test]
fn when_none_is_ready_serving_terminating_ones_are_used_and_marked() {
    let b = web_backends(&slice(
        "web-a",
        8080,
        "- {addresses: [198.19.1.2], conditions: {ready: false}}\n\
         - {addresses: [198.19.2.2], conditions: {ready: false, serving: true, terminating: true}}\n\
         - {addresses: [198.19.3.2], conditions: {ready: false, serving: false, terminating: true}}\n\
         - {addresses: [198.19.4.2], conditions: {ready: false, terminating: true}}",
    ));
    // serving unset is true (API default), so .4 is serving and terminating too.
    assert_eq!(
        b,
        ["198.19.2.2:8080 terminating", "198.19.4.2:8080 terminating"]
    );
}

#[test]
fn nothing_usable_gives_an_empty_set() {
    let b = web_backends(&slice(
        "web-a",
        8080,
        "- {addresses: [198.19.1.2], conditions: {ready: false}}\n\
         - {addresses: [198.19.3.2], conditions: {ready: false, serving: false, terminating: true}}",
    ));
    assert!(b.is_empty(), "{b:?}");
}

#[test]
fn ipv6_and_fqdn_slices_are_skipped_quietly() {
    let p = web_with(
        r#"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["fd00::2"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-fqdn, labels: {kubernetes.io/service-name: web}}
addressType: FQDN
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [db.example.com]}]
"#,
    );
    assert!(backends(set(&p, "default/web:http/TCP")).is_empty());
}

#[test]
fn only_the_first_address_of_an_endpoint_is_used() {
    let b = web_backends(&slice(
        "web-a",
        8080,
        "- addresses: [198.19.1.2, 198.19.1.3]",
    ));
    assert_eq!(b, ["198.19.1.2:8080"]);
}

#[test]
fn slice_port_without_number_contributes_nothing() {
    let p = web_with(
        r#"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http}]
endpoints: [{addresses: [198.19.1.2]}]
"#,
    );
    assert!(backends(set(&p, "default/web:http/TCP")).is_empty());
}
