//! Validation after defaulting: the checks of the real apiserver that matter for these
//! kinds, with its field paths and messages, answered as 422 Invalid.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::defaults::{needs_node_ports, service_type};
use crate::error::Cause;

/// Node port range of the real apiserver's default `--service-node-port-range`.
pub const NODE_PORT_MIN: u16 = 30000;
pub const NODE_PORT_MAX: u16 = 32767;

const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Validates an object of `kind` (already defaulted); empty when valid.
pub fn object(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    metadata(kind, obj, &mut causes);
    match kind {
        "Service" => service(obj, &mut causes),
        "EndpointSlice" => endpoint_slice(obj, &mut causes),
        "Endpoints" => endpoints(obj, &mut causes),
        "DaemonSet" => crate::validate_deploy::daemon_set(obj, &mut causes),
        "ClusterRole" => crate::validate_deploy::cluster_role(obj, &mut causes),
        "ClusterRoleBinding" => crate::validate_deploy::cluster_role_binding(obj, &mut causes),
        _ => {}
    }
    causes
}

/// Validates a Service's status (for `/status` writes).
pub fn service_status(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(ingress) = obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
    {
        for (i, ing) in ingress.iter().enumerate() {
            if let Some(ip) = ing.get("ip").and_then(Value::as_str)
                && ip.parse::<IpAddr>().is_err()
            {
                causes.push(Cause::invalid(
                    format!("status.loadBalancer.ingress[{i}].ip"),
                    format!("\"{ip}\""),
                    "must be a valid IP address",
                ));
            }
        }
    }
    causes
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn metadata(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
    } else {
        let (ok, rule) = match kind {
            "Service" => (is_dns1035_label(name), DNS1035_LABEL),
            "Namespace" => (is_dns1123_label(name), DNS1123_LABEL),
            // RBAC names are path segments (`system:node-proxier`).
            "ClusterRole" | "ClusterRoleBinding" => (
                !name.contains(['/', '%']) && name != "." && name != "..",
                "may not contain '/' or '%', or be '.' or '..'",
            ),
            _ => (is_dns1123_subdomain(name), DNS1123_SUBDOMAIN),
        };
        if !ok {
            causes.push(Cause::invalid("metadata.name", format!("\"{name}\""), rule));
        }
    }
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let key_name = k.rsplit('/').next().unwrap_or("");
            let key_ok = !key_name.is_empty()
                && key_name.len() <= 63
                && key_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && key_name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && key_name.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !key_ok {
                causes.push(Cause::invalid("metadata.labels", format!("\"{k}\""), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            let v = v.as_str().unwrap_or("");
            let value_ok = v.is_empty()
                || (v.len() <= 63
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                    && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
            if !value_ok {
                causes.push(Cause::invalid("metadata.labels", format!("\"{v}\""), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
        }
    }
}

fn check_protocol(field: String, p: &Value, causes: &mut Vec<Cause>) {
    if let Some(proto) = p.get("protocol").and_then(Value::as_str)
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        causes.push(Cause::not_supported(field, proto, &["SCTP", "TCP", "UDP"]));
    }
}

fn check_port_number(field: String, port: Option<i64>, causes: &mut Vec<Cause>) {
    match port {
        Some(p) if (1..=65535).contains(&p) => {}
        Some(p) => causes.push(Cause::invalid(
            field,
            p,
            "must be between 1 and 65535, inclusive",
        )),
        None => causes.push(Cause::required(field)),
    }
}

fn service(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let svc_type = service_type(obj);
    if !matches!(
        svc_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(Cause::not_supported(
            "spec.type",
            svc_type,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
    let headless = cluster_ip == "None";
    if svc_type == "ExternalName" {
        if spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            causes.push(Cause::required("spec.externalName"));
        }
        if !cluster_ip.is_empty() {
            causes.push(Cause::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    } else if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<Ipv4Addr>().is_err() {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            format!("\"{cluster_ip}\""),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if headless && needs_node_ports(svc_type) {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            "\"None\"",
            &format!("may not be set to 'None' for {svc_type} services"),
        ));
    }
    for (field, allowed) in [
        ("sessionAffinity", &["ClientIP", "None"][..]),
        ("externalTrafficPolicy", &["Cluster", "Local"][..]),
        ("internalTrafficPolicy", &["Cluster", "Local"][..]),
    ] {
        if let Some(v) = spec.get(field).and_then(Value::as_str)
            && !allowed.contains(&v)
        {
            causes.push(Cause::not_supported(format!("spec.{field}"), v, allowed));
        }
    }
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && svc_type != "ExternalName" && !headless {
        causes.push(Cause::required("spec.ports"));
    }
    let (mut names, mut keys) = (HashSet::new(), HashSet::new());
    for (i, p) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("{field}.name")));
        } else if !name.is_empty() && !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(
                format!("{field}.name"),
                format!("\"{name}\""),
            ));
        } else if !name.is_empty() && !is_dns1123_label(name) {
            causes.push(Cause::invalid(
                format!("{field}.name"),
                format!("\"{name}\""),
                DNS1123_LABEL,
            ));
        }
        let port = p.get("port").and_then(Value::as_i64);
        check_port_number(format!("{field}.port"), port, causes);
        check_protocol(format!("{field}.protocol"), p, causes);
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if let Some(port) = port
            && !keys.insert((port, proto.to_string()))
        {
            causes.push(Cause::duplicate(
                field.clone(),
                format!("core.ServicePort{{Port:{port}, Protocol:\"{proto}\"}}"),
            ));
        }
        match p.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    causes.push(Cause::invalid(
                        format!("{field}.targetPort"),
                        n,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            Some(Value::String(s)) => {
                let ok = s.len() <= 15
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && s.bytes().any(|b| b.is_ascii_lowercase())
                    && !s.starts_with('-')
                    && !s.ends_with('-')
                    && !s.contains("--");
                if !ok {
                    causes.push(Cause::invalid(
                        format!("{field}.targetPort"),
                        format!("\"{s}\""),
                        "must be a valid port name (IANA_SVC_NAME)",
                    ));
                }
            }
            _ => {}
        }
        if let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|&n| n != 0)
        {
            if !needs_node_ports(svc_type) {
                causes.push(Cause::forbidden(
                    format!("{field}.nodePort"),
                    &format!("may not be used when `type` is '{svc_type}'"),
                ));
            } else if !(i64::from(NODE_PORT_MIN)..=i64::from(NODE_PORT_MAX)).contains(&np) {
                causes.push(Cause::invalid(
                    format!("{field}.nodePort"),
                    np,
                    &format!("provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}"),
                ));
            }
        }
    }
}

fn endpoint_slice(obj: &Value, causes: &mut Vec<Cause>) {
    let address_type = obj.get("addressType").and_then(Value::as_str).unwrap_or("");
    match address_type {
        "" => causes.push(Cause::required("addressType")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => causes.push(Cause::not_supported(
            "addressType",
            other,
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    let endpoints = obj
        .get("endpoints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if endpoints.len() > 1000 {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            field: "endpoints".into(),
            message: format!(
                "Too many: {}: must have at most 1000 items",
                endpoints.len()
            ),
        });
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let addrs = ep
            .get("addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if addrs.is_empty() || addrs.len() > 100 {
            causes.push(Cause::required(format!("endpoints[{i}].addresses")));
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let ok = match address_type {
                "IPv4" => a.parse::<Ipv4Addr>().is_ok(),
                "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => is_dns1123_subdomain(a),
            };
            if !ok {
                causes.push(Cause::invalid(
                    format!("endpoints[{i}].addresses[{j}]"),
                    format!("\"{a}\""),
                    &format!("must be a valid {address_type} address"),
                ));
            }
        }
    }
    let ports = obj
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(
                format!("ports[{i}].name"),
                format!("\"{name}\""),
            ));
        }
        if let Some(port) = p.get("port").and_then(Value::as_i64) {
            check_port_number(format!("ports[{i}].port"), Some(port), causes);
        }
        check_protocol(format!("ports[{i}].protocol"), p, causes);
    }
}

fn endpoints(obj: &Value, causes: &mut Vec<Cause>) {
    let subsets = obj
        .get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, s) in subsets.iter().enumerate() {
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in s
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                if ip.parse::<IpAddr>().is_err() {
                    causes.push(Cause::invalid(
                        format!("subsets[{i}].{list}[{j}].ip"),
                        format!("\"{ip}\""),
                        "must be a valid IP address",
                    ));
                }
            }
        }
        for (j, p) in s
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_port_number(
                format!("subsets[{i}].ports[{j}].port"),
                p.get("port").and_then(Value::as_i64),
                causes,
            );
            check_protocol(format!("subsets[{i}].ports[{j}].protocol"), p, causes);
        }
    }
}
