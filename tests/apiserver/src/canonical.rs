//! Decoding a request body the way the real apiserver does: into the typed object (here
//! the k8s-openapi type), which drops unknown fields, and back to JSON. The fields that did
//! not survive the round trip are the "unknown fields" of server-side field validation.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::error::ApiError;
use crate::resource::{self, ResourceType};
use k8s_openapi::api::{
    apps::v1 as apps, core::v1 as core, discovery::v1 as discovery, rbac::v1 as rbac,
};

/// How unknown fields are treated (`fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    /// The server default: accept, and answer with `Warning` headers.
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other}; must be one of Ignore, Warn or Strict"
            ))),
        }
    }
}

/// A decoded body: the canonical JSON and the paths of the fields that were dropped.
#[derive(Debug)]
pub struct Decoded {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

/// Decodes `body` as an object of `resource`, checking `apiVersion` and `kind` first.
pub fn decode(resource: &'static ResourceType, body: &Value) -> Result<Decoded, ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::BadRequest(
            "the body of the request was not a JSON object".into(),
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Object 'Kind' is missing in '{}'",
            truncate(body)
        )));
    }
    if api_version.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Object 'apiVersion' is missing in '{}'",
            truncate(body)
        )));
    }
    if resource::by_kind(api_version, kind) != Some(resource) {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            resource.api_version()
        ))
        .or_kind_mismatch(resource, kind));
    }
    let object = match resource.kind {
        "Service" => round_trip::<core::Service>(resource, body)?,
        "Endpoints" => round_trip::<core::Endpoints>(resource, body)?,
        "Node" => round_trip::<core::Node>(resource, body)?,
        "Namespace" => round_trip::<core::Namespace>(resource, body)?,
        "EndpointSlice" => round_trip::<discovery::EndpointSlice>(resource, body)?,
        "ServiceAccount" => round_trip::<core::ServiceAccount>(resource, body)?,
        "ConfigMap" => round_trip::<core::ConfigMap>(resource, body)?,
        "DaemonSet" => round_trip::<apps::DaemonSet>(resource, body)?,
        "ClusterRole" => round_trip::<rbac::ClusterRole>(resource, body)?,
        "ClusterRoleBinding" => round_trip::<rbac::ClusterRoleBinding>(resource, body)?,
        other => unreachable!("no decoder for served kind {other}"),
    };
    let mut unknown_fields = Vec::new();
    unknown(body, &object, "", &mut unknown_fields);
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

impl ApiError {
    /// A kind mismatch is reported about the kind rather than the version.
    fn or_kind_mismatch(self, resource: &ResourceType, kind: &str) -> ApiError {
        if kind != resource.kind {
            ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                resource.kind
            ))
        } else {
            self
        }
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(
    resource: &ResourceType,
    body: &Value,
) -> Result<Value, ApiError> {
    let typed: T = serde_path_to_error::deserialize(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {path}: {inner}",
            kind = resource.kind,
            version = resource.version,
            path = e.path(),
            inner = e.inner(),
        ))
    })?;
    serde_json::to_value(&typed)
        .map_err(|e| ApiError::BadRequest(format!("re-encoding {}: {e}", resource.kind)))
}

/// Collects paths present in `original` but not in `canonical`. Nulls and empty
/// collections dropped by the typed encoding are not unknown, just unset.
fn unknown(original: &Value, canonical: &Value, path: &str, out: &mut Vec<String>) {
    match (original, canonical) {
        (Value::Object(o), Value::Object(c)) => {
            for (k, v) in o {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match c.get(k) {
                    Some(cv) => unknown(v, cv, &sub, out),
                    None if is_unset(v) => {}
                    // Objects the typed encoding knows but emptied (e.g. all-null maps).
                    None if v.as_object().is_some_and(|m| m.values().all(is_unset)) => {}
                    None => out.push(sub),
                }
            }
        }
        (Value::Array(o), Value::Array(c)) => {
            for (i, (ov, cv)) in o.iter().zip(c).enumerate() {
                unknown(ov, cv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn truncate(body: &Value) -> String {
    let text = body.to_string();
    if text.len() > 200 {
        format!("{}…", &text[..text.floor_char_boundary(200)])
    } else {
        text
    }
}
