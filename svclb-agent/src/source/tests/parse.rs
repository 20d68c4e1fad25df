//! Parsing manifest text: documents, lists, kinds, and errors that cost one document.
use crate::source::{SourceError, manifests::parse_file};

fn names(objs: &crate::source::Objects) -> (Vec<String>, Vec<String>) {
    let key = crate::source::objects::key;
    (
        objs.services.iter().map(|s| key(&s.metadata)).collect(),
        objs.slices.iter().map(|s| key(&s.metadata)).collect(),
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 198.18.0.10, ports: [{port: 80}]}\n";

#[test]
fn multi_document_file_with_kinds_we_use_and_kinds_we_skip() {
    let text = format!(
        "{SERVICE}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{a: b}}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}\n\
         addressType: IPv4\nendpoints: []\n---\n\
         apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {{name: old}}\naddressType: IPv4\nendpoints: []\n"
    );
    let (objs, errors) = parse_file("m.yaml", &text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        names(&objs),
        (vec!["default/web".into()], vec!["shop/web-1".into()])
    );
    // A missing namespace is filled in as "default".
    assert_eq!(
        objs.services[0].metadata.namespace.as_deref(),
        Some("default")
    );
}

#[test]
fn kind_list_and_typed_lists() {
    let text = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {ports: [{port: 80}]}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
- apiVersion: v1
  kind: List
  items: [{apiVersion: v1, kind: Service, metadata: {name: nested}}]
---
apiVersion: v1
kind: ServiceList
items:
- {metadata: {name: b, namespace: x}, spec: {ports: [{port: 81}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSliceList
items:
- {metadata: {name: s1, labels: {kubernetes.io/service-name: a}}, addressType: IPv4, endpoints: []}
---
apiVersion: v1
kind: List
items: null
"#;
    let (objs, errors) = parse_file("list.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        names(&objs),
        (
            vec!["default/a".into(), "default/nested".into(), "x/b".into()],
            vec!["default/s1".into()]
        )
    );
}

#[test]
fn invalid_document_among_valid_ones_costs_only_itself() {
    let text = format!(
        "{SERVICE}---\n# the bad one\napiVersion: v1\nkind: Service\nmetadata: {{name: bad, namespace: shop}}\nspec:\n  ports: [{{port: eighty}}]\n---\n{}",
        SERVICE.replace("name: web", "name: web2")
    );
    let (objs, errors) = parse_file("dir/svc.yaml", &text);
    assert_eq!(names(&objs).0, ["default/web", "default/web2"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let SourceError::Parse {
        location,
        object,
        message,
    } = &errors[0]
    else {
        panic!("{:?}", errors[0])
    };
    assert_eq!(location, "dir/svc.yaml document 2 (line 7)");
    assert_eq!(object.as_deref(), Some("Service shop/bad"));
    assert!(
        message.starts_with("spec.ports[0].port: invalid type: string \"eighty\""),
        "{message}"
    );
    assert_eq!(
        errors[0].to_string(),
        format!("dir/svc.yaml document 2 (line 7): Service shop/bad: {message}"),
    );
}

#[test]
fn bad_list_item_names_its_index() {
    let text = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a}}
- {apiVersion: v1, kind: Service, metadata: {name: b}, spec: {ports: [{port: 80, nodePort: [1]}]}}
- {apiVersion: v1, kind: Service, metadata: {name: c}}
"#;
    let (objs, errors) = parse_file("l.yaml", text);
    assert_eq!(names(&objs).0, ["default/a", "default/c"]);
    assert_eq!(errors.len(), 1);
    let line = errors[0].to_string();
    assert!(
        line.starts_with(
            "l.yaml document 1 (line 2) items[1]: Service default/b: spec.ports[0].nodePort: "
        ),
        "{line}"
    );
}

#[test]
fn yaml_syntax_error_in_one_document() {
    let text = format!(
        "{SERVICE}---\napiVersion: v1\nkind: Service\nmetadata: {{name: [oops\n---\n{}",
        SERVICE.replace("web", "web3")
    );
    let (objs, errors) = parse_file("s.yaml", &text);
    assert_eq!(names(&objs).0, ["default/web", "default/web3"]);
    assert_eq!(errors.len(), 1);
    let SourceError::Parse {
        location,
        object: None,
        ..
    } = &errors[0]
    else {
        panic!("{:?}", errors[0])
    };
    assert_eq!(location, "s.yaml document 2 (line 6)");
}

#[test]
fn documents_that_are_not_objects() {
    let text = "just a string\n---\n[1, 2]\n---\napiVersion: v1\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {namespace: a}\n---\n~\n---\nkind: Service\nmetadata: {name: x}\n";
    let (objs, errors) = parse_file("n.yaml", text);
    assert!(objs.services.is_empty());
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "n.yaml document 1 (line 1): document is not an object",
            "n.yaml document 2 (line 3): document is not an object",
            "n.yaml document 3 (line 5): no kind: not a Kubernetes object",
            "n.yaml document 4 (line 8): Service: metadata.name is missing",
            "n.yaml document 6 (line 14): Service default/x: apiVersion is missing",
        ]
    );
}

#[test]
fn typed_list_item_with_another_api_version_is_skipped() {
    // The typed list gives its items apiVersion v1; an item that says otherwise is
    // another kind of object and is skipped.
    let text = "apiVersion: v1\nkind: ServiceList\nitems:\n- {apiVersion: v2, metadata: {name: a}}\n- {metadata: {name: b}}\n";
    let (objs, errors) = parse_file("t.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(names(&objs).0, ["default/b"]);
}

#[test]
fn duplicate_object_keeps_the_first_definition() {
    let text = format!(
        "{SERVICE}---\n{}",
        SERVICE.replace("198.18.0.10", "198.18.0.11")
    );
    let (objs, errors) = parse_file("d.yaml", &text);
    assert_eq!(objs.services.len(), 1);
    assert_eq!(
        objs.services[0]
            .spec
            .as_ref()
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("198.18.0.10")
    );
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "d.yaml document 2 (line 6): Service default/web is already defined at d.yaml document 1 (line 1); this definition is ignored"
        ]
    );
    // Same name, other kind or namespace: not a duplicate.
    let text = format!(
        "{SERVICE}---\n{}",
        SERVICE.replace("{name: web}", "{name: web, namespace: other}")
    );
    assert!(parse_file("d.yaml", &text).1.is_empty());
}

#[test]
fn json_files() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}]}
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": [{"port": "x"}]}}"#;
    let (objs, errors) = parse_file("x.JSON", text);
    assert_eq!(names(&objs).0, ["default/a"]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("x.JSON document 2 (line 3): Service default/b: spec.ports[0].port: "),
        "{}",
        errors[0]
    );
}

#[test]
fn endpoints_are_mirrored_when_loaded() {
    let text = format!(
        "{SERVICE}---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: web}}\nsubsets: [{{addresses: [{{ip: 198.19.1.2}}, {{ip: 198.19.1.999}}], ports: [{{port: 80}}]}}]\n"
    );
    let (objs, errors) = parse_file("e.yaml", &text);
    assert_eq!(names(&objs).1, ["default/web-mirror-0"]);
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "Endpoints default/web: subsets[0].addresses[1].ip: \"198.19.1.999\" is not an IP address; address not mirrored"
        ]
    );
}
