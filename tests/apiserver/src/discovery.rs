//! Discovery documents: `/version`, legacy `/api`, `/api/v1`, `/apis`, `/apis/<g>/<v>`,
//! aggregated discovery (apidiscovery.k8s.io/v2) when the client asks for it, and the
//! OpenAPI v3 index and per-group-version documents kubectl uses to learn that the
//! server validates fields itself (`fieldValidation`).

use serde_json::{Value, json};

use crate::resource::{self, GROUP_VERSIONS, ResourceType, STATUS_VERBS, VERBS};

/// Kubernetes version reported (matches the k8s-openapi API level the types come from).
pub const MAJOR: &str = "1";
pub const MINOR: &str = "34";

/// Content type of aggregated discovery answers.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": format!("v{MAJOR}.{MINOR}.0-svclb-testapi"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// Whether an Accept header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_versions_of(group: &str) -> Vec<Value> {
    GROUP_VERSIONS
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect()
}

/// One named API group (`/apis/<group>`).
pub fn api_group(group: &str) -> Option<Value> {
    let versions = group_versions_of(group);
    let preferred = versions.first()?.clone();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": preferred}),
    )
}

pub fn api_group_list() -> Value {
    let mut groups: Vec<&str> = GROUP_VERSIONS
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    let groups: Vec<Value> = groups
        .into_iter()
        .filter_map(api_group)
        .map(|mut g| {
            let o = g.as_object_mut().expect("object");
            o.remove("kind");
            o.remove("apiVersion");
            g
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `APIResourceList` of one group version, or None when not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if !GROUP_VERSIONS.contains(&(group, version)) {
        return None;
    }
    let mut resources = Vec::new();
    for r in resource::of_group_version(group, version) {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
            "shortNames": r.short_names,
            "categories": r.categories,
        }));
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn aggregated_resource(r: &ResourceType) -> Value {
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let mut v = json!({
        "resource": r.plural,
        "responseKind": kind,
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if r.has_status {
        v["subresources"] =
            json!([{"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}]);
    }
    v
}

/// Aggregated discovery for `/api` (`legacy`) or `/apis`.
pub fn aggregated(legacy: bool) -> Value {
    let mut groups: Vec<&str> = GROUP_VERSIONS
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| g.is_empty() == legacy)
        .collect();
    groups.dedup();
    let items: Vec<Value> = groups
        .into_iter()
        .map(|g| {
            let versions: Vec<Value> = GROUP_VERSIONS
                .iter()
                .filter(|(gg, _)| *gg == g)
                .map(|(_, v)| {
                    let resources: Vec<Value> = resource::of_group_version(g, v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Content type of the protobuf OpenAPI v2 document as the real apiserver answers it
/// (clients ask with `…spec.v2@v1.0+protobuf`, which Go's MIME parser cannot read back).
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2` as JSON: a valid Swagger 2.0 document without paths or definitions.
pub fn openapi_v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": format!("v{MAJOR}.{MINOR}.0-svclb-testapi")}, "paths": {}})
}

/// `/openapi/v2` as protobuf (gnostic `openapi_v2.Document`, fields `swagger` = 1 and
/// `info` = 2 with `title` = 1 and `version` = 2), which kubectl before 1.29 downloads
/// before every create or replace. With no schemas in it kubectl validates nothing on
/// its side and leaves field validation to the server.
pub fn openapi_v2_protobuf() -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, b"Kubernetes");
    field(
        &mut info,
        2,
        format!("v{MAJOR}.{MINOR}.0-svclb-testapi").as_bytes(),
    );
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

/// A stable hash of a document, for the `?hash=` the OpenAPI v3 index carries.
fn doc_hash(doc: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: the index of per-group-version documents.
pub fn openapi_v3_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in GROUP_VERSIONS {
        let rel = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let doc = openapi_v3_group_version(g, v).expect("served group version");
        paths.insert(
            rel.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{rel}?hash={}", doc_hash(&doc))}),
        );
    }
    json!({"paths": paths})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/<g>/<v>`: operations (no schemas). Each
/// write operation lists the `fieldValidation` and `dryRun` parameters and carries
/// `x-kubernetes-group-version-kind`, which is what kubectl reads to decide that it can
/// leave field validation to the server.
pub fn openapi_v3_group_version(group: &str, version: &str) -> Option<Value> {
    if !GROUP_VERSIONS.contains(&(group, version)) {
        return None;
    }
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    for r in resource::of_group_version(group, version) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |verb: &str, action: &str, write: bool| {
            let mut params = vec![query_param(
                "pretty",
                "If 'true', then the output is pretty printed.",
            )];
            if write {
                params.push(query_param(
                    "dryRun",
                    "When present, indicates that modifications should not be persisted.",
                ));
                params.push(query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."));
                params.push(query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn (default), Strict."));
            }
            json!({
                "operationId": format!("{verb}{}", r.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let (collection, item) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (
                format!("{base}/{}", r.plural),
                format!("{base}/{}/{{name}}", r.plural),
            )
        };
        paths.insert(
            collection,
            json!({
                "get": op("list", "list", false),
                "post": op("create", "post", true),
                "delete": op("deleteCollection", "deletecollection", false),
            }),
        );
        paths.insert(
            item.clone(),
            json!({
                "get": op("read", "get", false),
                "put": op("replace", "put", true),
                "patch": op("patch", "patch", true),
                "delete": op("delete", "delete", false),
            }),
        );
        if r.has_status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": op("read", "get", false),
                    "put": op("replace", "put", true),
                    "patch": op("patch", "patch", true),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{MAJOR}.{MINOR}.0-svclb-testapi")},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
