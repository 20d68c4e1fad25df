//! Defaulting the real apiserver applies before validation, per kind, on canonical JSON.
//! Allocation (cluster IPs, node ports) is not here: it needs the store (see `alloc`).

use serde_json::{Value, json};

/// Fills the defaults of a newly created or replaced object of `kind`.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Service" => service(obj),
        "Endpoints" => {
            if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
                for s in subsets {
                    default_protocols(s.get_mut("ports"));
                }
            }
        }
        "EndpointSlice" => {
            default_protocols(obj.get_mut("ports"));
            // SetDefaults_EndpointPort: a nil name becomes "" (kubectl describe
            // dereferences it).
            if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    let name = p.entry("name").or_insert(Value::Null);
                    if name.is_null() {
                        *name = json!("");
                    }
                }
            }
        }
        "Namespace" => namespace(obj),
        _ => {}
    }
}

fn default_protocols(ports: Option<&mut Value>) {
    if let Some(ports) = ports.and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                p.entry("protocol").or_insert(json!("TCP"));
            }
        }
    }
}

fn set_default(obj: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    let slot = obj.entry(key).or_insert(Value::Null);
    if slot.is_null() || slot.as_str() == Some("") {
        *slot = value;
    }
}

/// The Service type after defaulting (`ClusterIP` when unset).
pub fn service_type(obj: &Value) -> &str {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Whether a Service of this type gets node ports.
pub fn needs_node_ports(service_type: &str) -> bool {
    matches!(service_type, "NodePort" | "LoadBalancer")
}

fn service(obj: &mut Value) {
    let root = obj
        .as_object_mut()
        .expect("decoded objects are JSON objects");
    let spec = root.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    let svc_type = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    set_default(spec, "sessionAffinity", json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            let Some(p) = p.as_object_mut() else { continue };
            set_default(p, "protocol", json!("TCP"));
            if p.get("targetPort")
                .is_none_or(|t| t.is_null() || t == &json!(0) || t == &json!(""))
                && let Some(port) = p.get("port").cloned()
            {
                p.insert("targetPort".into(), port);
            }
        }
    }
    if svc_type != "ExternalName" {
        // clusterIP and clusterIPs[0] describe the same address; fill either from the other.
        let ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let first = spec
            .get("clusterIPs")
            .and_then(|v| v.get(0))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if ip.is_empty() && !first.is_empty() {
            spec.insert("clusterIP".into(), json!(first));
        } else if !ip.is_empty() && first.is_empty() {
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if needs_node_ports(&svc_type) {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer"
        && spec
            .get("allocateLoadBalancerNodePorts")
            .is_none_or(Value::is_null)
    {
        spec.insert("allocateLoadBalancerNodePorts".into(), json!(true));
    }
    let status = root.entry("status").or_insert_with(|| json!({}));
    if let Some(status) = status.as_object_mut() {
        status.entry("loadBalancer").or_insert_with(|| json!({}));
    }
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let root = obj
        .as_object_mut()
        .expect("decoded objects are JSON objects");
    if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    let spec = root.entry("spec").or_insert_with(|| json!({}));
    if let Some(spec) = spec.as_object_mut() {
        spec.entry("finalizers")
            .or_insert_with(|| json!(["kubernetes"]));
    }
    let status = root.entry("status").or_insert_with(|| json!({}));
    if let Some(status) = status.as_object_mut() {
        set_default(status, "phase", json!("Active"));
    }
}

/// On update, a Service that leaves its allocated values unset keeps the old ones (the
/// real apiserver's `patchAllocatedValues`): cluster IPs always, node ports by port name
/// while both old and new types need node ports.
pub fn keep_allocated(old: &Value, new: &mut Value) {
    let old_type = service_type(old).to_string();
    let new_type = service_type(new).to_string();
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if new_type != "ExternalName" {
        let unset = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_str() == Some(""));
        if unset(spec.get("clusterIP"))
            && let Some(ip) = old
                .pointer("/spec/clusterIP")
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        {
            spec.insert("clusterIP".into(), ip.clone());
        }
        if spec
            .get("clusterIPs")
            .is_none_or(|v| v.as_array().is_none_or(Vec::is_empty))
            && let Some(ips) = old.pointer("/spec/clusterIPs")
        {
            spec.insert("clusterIPs".into(), ips.clone());
        }
    }
    if !(needs_node_ports(&old_type) && needs_node_ports(&new_type)) {
        return;
    }
    let node_ports = |v: &Value| -> Vec<(String, u64)> {
        v.pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| {
                        (
                            p.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            p.get("nodePort").and_then(Value::as_u64).unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let old_ports = node_ports(old);
    let new_ports: Vec<u64> = spec
        .get("ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            let Some(p) = p.as_object_mut() else { continue };
            if p.get("nodePort").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            if let Some((_, old)) = old_ports.iter().find(|(n, np)| n == name && *np != 0)
                && !new_ports.contains(old)
            {
                p.insert("nodePort".into(), json!(old));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_slice_ports_get_an_empty_name_and_tcp() {
        let mut slice = json!({
            "kind": "EndpointSlice",
            "ports": [{"port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]
        });
        apply("EndpointSlice", &mut slice);
        assert_eq!(
            slice["ports"],
            json!([
                {"name": "", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ])
        );
    }
}
