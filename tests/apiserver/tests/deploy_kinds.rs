//! The kinds a deploy manifest creates (ServiceAccount, ConfigMap, DaemonSet, ClusterRole,
//! ClusterRoleBinding): discovery, create / get / dry run, and the real apiserver's
//! checks of DaemonSets and RBAC objects.

mod common;

use common::*;
use serde_json::{Value, json};

const DS: &str = "/apis/apps/v1/namespaces/default/daemonsets";
const CR: &str = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
const CRB: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";

fn daemon_set(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "agent", "image": "example/agent:1",
                        "securityContext": {"capabilities": {"add": ["BPF"]}},
                        "volumeMounts": [{"name": "bpffs", "mountPath": "/sys/fs/bpf", "mountPropagation": "HostToContainer"}]
                    }],
                    "volumes": [{"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf"}}]
                }
            }
        }
    })
}

fn causes(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    r.json()["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["field"].as_str().unwrap(),
                c["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn discovery_lists_the_deploy_kinds() {
    let s = server();
    let core = get(s.addr(), "/api/v1").json();
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in ["serviceaccounts", "configmaps"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let apps = get(s.addr(), "/apis/apps/v1").json();
    assert_eq!(apps["resources"][0]["name"], "daemonsets");
    assert_eq!(apps["resources"][1]["name"], "daemonsets/status");
    let rbac = get(s.addr(), "/apis/rbac.authorization.k8s.io/v1").json();
    assert_eq!(rbac["resources"][0]["namespaced"], false);
    let groups: Vec<String> = get(s.addr(), "/apis").json()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        groups,
        ["discovery.k8s.io", "apps", "rbac.authorization.k8s.io"]
    );
}

#[test]
fn create_get_and_dry_run() {
    let s = server();
    let r = send_json(
        s.addr(),
        "POST",
        &format!("{DS}?dryRun=All"),
        &daemon_set("a"),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["metadata"]["uid"].is_string(),
        "a dry run answers the stamped object"
    );
    assert_eq!(
        get(s.addr(), &format!("{DS}/a")).status,
        404,
        "a dry run stores nothing"
    );

    let r = send_json(s.addr(), "POST", DS, &daemon_set("a"));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let got = get(s.addr(), &format!("{DS}/a")).json();
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["image"],
        "example/agent:1"
    );
    assert_eq!(
        send_json(s.addr(), "POST", DS, &daemon_set("a")).status,
        409
    );

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    assert_eq!(
        send_json(
            s.addr(),
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &cm
        )
        .status,
        201
    );
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}});
    assert_eq!(
        send_json(
            s.addr(),
            "POST",
            "/api/v1/namespaces/default/serviceaccounts",
            &sa
        )
        .status,
        201
    );
    assert_eq!(
        s.objects().get("ConfigMap", Some("default"), "c").unwrap()["data"]["k"],
        "v"
    );

    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:x"},
        "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}]});
    assert_eq!(send_json(s.addr(), "POST", CR, &role).status, 201);
    assert_eq!(
        get(s.addr(), &format!("{CR}/system:x")).json()["rules"][0]["verbs"],
        json!(["list"])
    );
}

#[test]
fn daemon_set_checks() {
    let s = server();
    let mut ds = daemon_set("d");
    ds["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    assert_eq!(
        causes(&send_json(s.addr(), "POST", DS, &ds)),
        [
            "spec.template.metadata.labels: Invalid value: {\"app\":\"d\"}: `selector` does not match template `labels`"
        ]
    );

    let mut ds = daemon_set("d");
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPropagation"] =
        json!("Bidirectional");
    assert_eq!(
        causes(&send_json(s.addr(), "POST", DS, &ds)),
        [
            "spec.template.spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers"
        ]
    );
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
        json!({"privileged": true});
    assert_eq!(
        send_json(s.addr(), "POST", DS, &ds).status,
        201,
        "privileged may use Bidirectional"
    );

    let mut ds = daemon_set("e");
    let c = &mut ds["spec"]["template"]["spec"]["containers"][0];
    c["securityContext"] = json!({"privileged": true, "allowPrivilegeEscalation": false});
    c["volumeMounts"][0]["name"] = json!("missing");
    c["image"] = json!("");
    assert_eq!(
        causes(&send_json(s.addr(), "POST", DS, &ds)),
        [
            "spec.template.spec.containers[0].image: Required value",
            "spec.template.spec.containers[0].securityContext: Invalid value: true: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            "spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
        ]
    );
}

#[test]
fn rbac_checks() {
    let s = server();
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "r"},
        "rules": [{"resources": ["services"], "verbs": []}]});
    assert_eq!(
        causes(&send_json(s.addr(), "POST", CR, &role)),
        [
            "rules[0].verbs: Required value",
            "rules[0].apiGroups: Required value"
        ]
    );
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
    assert_eq!(
        causes(&send_json(s.addr(), "POST", CRB, &binding)),
        [
            "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
            "subjects[0].namespace: Required value",
        ]
    );
}
