//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which
//! `kubectl get` without `-o` asks for: the columns the real apiserver prints per kind.

use serde_json::{Value, json};

use crate::resource::ResourceType;
use crate::store::Stored;

/// Whether an Accept header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// What each row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

fn column(name: &str, ty: &str, priority: u8, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

fn columns(kind: &str) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = column(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match kind {
        "Service" => vec![
            name,
            column(
                "Type",
                "string",
                0,
                "type determines how the Service is exposed.",
            ),
            column(
                "Cluster-IP",
                "string",
                0,
                "clusterIP is the IP address of the service.",
            ),
            column(
                "External-IP",
                "string",
                0,
                "externalIPs or load balancer ingress addresses.",
            ),
            column(
                "Port(s)",
                "string",
                0,
                "The list of ports that are exposed by this service.",
            ),
            age,
            column(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        "EndpointSlice" => vec![
            name,
            column(
                "AddressType",
                "string",
                0,
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            column(
                "Ports",
                "string",
                0,
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            column(
                "Endpoints",
                "string",
                0,
                "endpoints is a list of unique endpoints in this slice.",
            ),
            age,
        ],
        "Endpoints" => vec![
            name,
            column(
                "Endpoints",
                "string",
                0,
                "Endpoints is the list of endpoints.",
            ),
            age,
        ],
        "Node" => vec![
            name,
            column("Status", "string", 0, "The status of the node"),
            column("Roles", "string", 0, "The roles of the node"),
            age,
            column(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            column(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            column(
                "External-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
        ],
        "Namespace" => vec![
            name,
            column("Status", "string", 0, "The status of the namespace"),
            age,
        ],
        _ => vec![name, age],
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(list: Vec<String>) -> String {
    if list.is_empty() {
        "<none>".into()
    } else {
        list.join(",")
    }
}

/// Up to three entries, then "+ N more...", as the real printers shorten long lists.
fn first_three(list: Vec<String>, empty: &str) -> String {
    match list.len() {
        0 => empty.to_string(),
        n if n <= 3 => list.join(","),
        n => format!("{} + {} more...", list[..3].join(","), n - 3),
    }
}

fn cells(kind: &str, obj: &Value, age: String) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    match kind {
        "Service" => {
            let ty = s(obj, "/spec/type");
            let external = match ty {
                "ExternalName" => s(obj, "/spec/externalName").to_string(),
                _ => {
                    let mut ips: Vec<String> = arr(obj, "/spec/externalIPs")
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect();
                    for ing in arr(obj, "/status/loadBalancer/ingress") {
                        let a = if s(ing, "/ip").is_empty() {
                            s(ing, "/hostname")
                        } else {
                            s(ing, "/ip")
                        };
                        ips.push(a.to_string());
                    }
                    if ips.is_empty() && ty == "LoadBalancer" {
                        "<pending>".into()
                    } else {
                        or_none(ips)
                    }
                }
            };
            let ports = or_none(
                arr(obj, "/spec/ports")
                    .iter()
                    .map(|p| {
                        let proto = s(p, "/protocol");
                        let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
                        match p.get("nodePort").and_then(Value::as_u64) {
                            Some(np) if np != 0 => format!("{port}:{np}/{proto}"),
                            _ => format!("{port}/{proto}"),
                        }
                    })
                    .collect(),
            );
            let selector = or_none(
                obj.pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect()
                    })
                    .unwrap_or_default(),
            );
            let cluster_ip = if s(obj, "/spec/clusterIP").is_empty() {
                "<none>"
            } else {
                s(obj, "/spec/clusterIP")
            };
            vec![
                name,
                json!(ty),
                json!(cluster_ip),
                json!(external),
                json!(ports),
                json!(age),
                json!(selector),
            ]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = arr(obj, "/ports")
                .iter()
                .filter_map(|p| p.get("port").and_then(Value::as_u64))
                .map(|p| p.to_string())
                .collect();
            let ports = if ports.is_empty() {
                "<unset>".into()
            } else {
                ports.join(",")
            };
            let addrs: Vec<String> = arr(obj, "/endpoints")
                .iter()
                .flat_map(|e| {
                    arr(e, "/addresses")
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                })
                .collect();
            vec![
                name,
                json!(s(obj, "/addressType")),
                json!(ports),
                json!(first_three(addrs, "<unset>")),
                json!(age),
            ]
        }
        "Endpoints" => {
            let mut list = Vec::new();
            for subset in arr(obj, "/subsets") {
                for a in arr(subset, "/addresses") {
                    let ports = arr(subset, "/ports");
                    if ports.is_empty() {
                        list.push(s(a, "/ip").to_string());
                    }
                    for p in ports {
                        list.push(format!(
                            "{}:{}",
                            s(a, "/ip"),
                            p.get("port").and_then(Value::as_u64).unwrap_or(0)
                        ));
                    }
                }
            }
            vec![name, json!(first_three(list, "<none>")), json!(age)]
        }
        "Node" => {
            let ready = arr(obj, "/status/conditions")
                .iter()
                .find(|c| s(c, "/type") == "Ready")
                .map(|c| s(c, "/status"));
            let mut status = match ready {
                Some("True") => "Ready".to_string(),
                Some("False") => "NotReady".to_string(),
                _ => "Unknown".to_string(),
            };
            if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let addr = |ty: &str| {
                arr(obj, "/status/addresses")
                    .iter()
                    .find(|a| s(a, "/type") == ty)
                    .map(|a| s(a, "/address").to_string())
                    .unwrap_or_else(|| "<none>".into())
            };
            vec![
                name,
                json!(status),
                json!(or_none(roles)),
                json!(age),
                json!(s(obj, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
            ]
        }
        "Namespace" => vec![name, json!(s(obj, "/status/phase")), json!(age)],
        _ => vec![name, json!(age)],
    }
}

/// Kubernetes' `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (m, h) = (secs / 60, secs / 3600);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let d = h / 24;
        if d % 365 == 0 {
            format!("{}y", d / 365)
        } else {
            format!("{}y{}d", d / 365, d % 365)
        }
    } else {
        format!("{}y", h / 24 / 365)
    }
}

fn age(obj: &Value) -> String {
    let created = s(obj, "/metadata/creationTimestamp");
    match created.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// A Table of `items` of `resource`.
pub fn render(
    resource: &ResourceType,
    items: &[Stored],
    resource_version: u64,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let obj = &*item.value;
            let mut row = json!({"cells": cells(resource.kind, obj, age(obj))});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))});
                }
                IncludeObject::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns(resource.kind), "rows": rows})
}
