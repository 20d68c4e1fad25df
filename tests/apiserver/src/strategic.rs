//! Strategic merge patch for the lists of these kinds that the real apiserver merges by
//! key. Every other list is atomic (replaced whole), as it is in Kubernetes for them.
//! Directives `$patch` (replace/delete/merge), `$setElementOrder/…`, `$retainKeys` and
//! `$deleteFromPrimitiveList/…` are understood; ordering directives are ignored.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// List fields merged by key, as `(path without indices, merge key)`; `None` merges a
/// list of scalars as a set.
const MERGE_LISTS: &[(&str, Option<&str>)] = &[
    ("metadata.ownerReferences", Some("uid")),
    ("metadata.finalizers", None),
    ("spec.ports", Some("port")),
    ("spec.finalizers", None),
    ("status.addresses", Some("type")),
    ("status.conditions", Some("type")),
    // Pod templates (DaemonSet), with the Pod API's patch merge keys.
    ("spec.template.spec.containers", Some("name")),
    ("spec.template.spec.initContainers", Some("name")),
    ("spec.template.spec.containers.env", Some("name")),
    ("spec.template.spec.containers.ports", Some("containerPort")),
    (
        "spec.template.spec.containers.volumeMounts",
        Some("mountPath"),
    ),
    ("spec.template.spec.volumes", Some("name")),
    ("spec.template.spec.imagePullSecrets", Some("name")),
];

/// Applies `patch` to `doc`.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "strategic merge patch must be a JSON object".into(),
        ));
    }
    merge_value(doc, patch, "");
    Ok(())
}

fn merge_value(doc: &mut Value, patch: &Value, path: &str) {
    let Some(p) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *doc = Value::Object(strip_directives(p));
            return;
        }
        Some("delete") => {
            *doc = Value::Null;
            return;
        }
        _ => {}
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let d = doc.as_object_mut().expect("made an object above");
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        d.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in p {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                d.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let sub = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if value.is_null() {
            d.remove(key);
            continue;
        }
        let merge_list = MERGE_LISTS.iter().find(|(p, _)| *p == sub).map(|(_, k)| *k);
        match (d.get_mut(key), value, merge_list) {
            (Some(Value::Array(list)), Value::Array(items), Some(merge_key)) => {
                merge_list_by_key(list, items, merge_key, &sub);
            }
            (Some(existing @ Value::Object(_)), Value::Object(_), _) => {
                merge_value(existing, value, &sub)
            }
            _ => {
                let mut fresh = Value::Null;
                merge_value(&mut fresh, value, &sub);
                if value.is_object() {
                    d.insert(key.clone(), fresh);
                } else {
                    d.insert(key.clone(), clean(value));
                }
            }
        }
    }
}

fn merge_list_by_key(list: &mut Vec<Value>, items: &[Value], merge_key: Option<&str>, path: &str) {
    let Some(merge_key) = merge_key else {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return;
    };
    for item in items {
        let Some(id) = item.get(merge_key) else {
            list.push(clean(item));
            continue;
        };
        let pos = list.iter().position(|e| e.get(merge_key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_value(&mut list[i], item, path),
            (None, false) => list.push(clean(item)),
        }
    }
}

fn strip_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

/// A patch value with directives removed, for inserting where nothing existed.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m)),
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}
