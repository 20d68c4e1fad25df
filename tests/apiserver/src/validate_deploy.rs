//! Validation of the workload and RBAC kinds that deploy manifests create: the real
//! apiserver's checks that a DaemonSet or RBAC manifest most easily gets wrong, with its
//! field paths and messages.

use serde_json::Value;

use crate::error::Cause;

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn not_found(field: String, value: &str) -> Cause {
    Cause {
        reason: "FieldValueNotFound",
        message: format!("Not found: \"{value}\""),
        field,
    }
}

pub fn daemon_set(obj: &Value, causes: &mut Vec<Cause>) {
    let labels = obj.pointer("/spec/template/metadata/labels");
    match obj.pointer("/spec/selector") {
        None | Some(Value::Null) => causes.push(Cause::required("spec.selector")),
        Some(sel) => {
            let want = sel.get("matchLabels").and_then(Value::as_object);
            let empty = want.is_none_or(|m| m.is_empty())
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(|a| a.is_empty());
            if empty {
                causes.push(Cause::invalid(
                    "spec.selector",
                    sel,
                    "empty selector is invalid for daemonset",
                ));
            }
            let matches = want
                .into_iter()
                .flatten()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if !matches {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    labels.cloned().unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    let pod = obj
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(Value::Null);
    let restart = s(&pod, "/restartPolicy");
    if !restart.is_empty() && restart != "Always" {
        causes.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            &["Always"],
        ));
    }
    let volumes: Vec<&str> = pod
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| s(v, "/name"))
        .collect();
    let containers = pod
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if containers.is_empty() {
        causes.push(Cause::required("spec.template.spec.containers"));
    }
    for (i, c) in containers.iter().enumerate() {
        let at = format!("spec.template.spec.containers[{i}]");
        for field in ["name", "image"] {
            if s(c, &format!("/{field}")).is_empty() {
                causes.push(Cause::required(format!("{at}.{field}")));
            }
        }
        let privileged = c.pointer("/securityContext/privileged") == Some(&Value::Bool(true));
        let sys_admin = c
            .pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|cap| matches!(cap.as_str(), Some("SYS_ADMIN" | "CAP_SYS_ADMIN")));
        if c.pointer("/securityContext/allowPrivilegeEscalation") == Some(&Value::Bool(false)) {
            if privileged {
                causes.push(Cause::invalid(
                    format!("{at}.securityContext"),
                    "true",
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                ));
            }
            if sys_admin {
                causes.push(Cause::invalid(
                    format!("{at}.securityContext"),
                    "true",
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ));
            }
        }
        for (j, m) in c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = s(m, "/name");
            if !volumes.contains(&name) {
                causes.push(not_found(format!("{at}.volumeMounts[{j}].name"), name));
            }
            if s(m, "/mountPath").is_empty() {
                causes.push(Cause::required(format!("{at}.volumeMounts[{j}].mountPath")));
            }
            match s(m, "/mountPropagation") {
                "" | "None" | "HostToContainer" => {}
                "Bidirectional" if privileged => {}
                "Bidirectional" => causes.push(Cause::forbidden(
                    format!("{at}.volumeMounts.mountPropagation"),
                    "Bidirectional mount propagation is available only to privileged containers",
                )),
                other => causes.push(Cause::not_supported(
                    format!("{at}.volumeMounts.mountPropagation"),
                    other,
                    &["Bidirectional", "HostToContainer", "None"],
                )),
            }
        }
    }
}

pub fn cluster_role(obj: &Value, causes: &mut Vec<Cause>) {
    for (i, rule) in obj
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let list = |k: &str| {
            rule.get(k)
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0)
        };
        if list("verbs") == 0 {
            causes.push(Cause::required(format!("rules[{i}].verbs")));
        }
        if list("nonResourceURLs") > 0 && list("resources") > 0 {
            causes.push(Cause::invalid(
                format!("rules[{i}].nonResourceURLs"),
                rule["nonResourceURLs"].clone(),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        if list("resources") > 0 && rule.get("apiGroups").is_none() {
            causes.push(Cause::required(format!("rules[{i}].apiGroups")));
        }
        if list("resources") == 0 && list("nonResourceURLs") == 0 {
            causes.push(Cause::required(format!("rules[{i}].resources")));
        }
    }
}

pub fn cluster_role_binding(obj: &Value, causes: &mut Vec<Cause>) {
    let group = s(obj, "/roleRef/apiGroup");
    if group != "rbac.authorization.k8s.io" {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            group,
            &["rbac.authorization.k8s.io"],
        ));
    }
    let kind = s(obj, "/roleRef/kind");
    if kind != "ClusterRole" {
        causes.push(Cause::not_supported("roleRef.kind", kind, &["ClusterRole"]));
    }
    if s(obj, "/roleRef/name").is_empty() {
        causes.push(Cause::required("roleRef.name"));
    }
    for (i, sub) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("subjects[{i}]");
        if s(sub, "/name").is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        }
        match s(sub, "/kind") {
            "ServiceAccount" => {
                if s(sub, "/namespace").is_empty() {
                    causes.push(Cause::required(format!("{at}.namespace")));
                }
                let g = s(sub, "/apiGroup");
                if !g.is_empty() {
                    causes.push(Cause::not_supported(format!("{at}.apiGroup"), g, &[""]));
                }
            }
            "User" | "Group" => {}
            other => causes.push(Cause::not_supported(
                format!("{at}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}
