//! API errors, rendered as Kubernetes `Status` objects with the reason and code the real
//! apiserver uses, so clients (kubectl, kube-rs) take the same branches as in a cluster.

use serde_json::{Value, json};

use crate::resource::ResourceType;

/// One field problem of a 422 Invalid answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`, `FieldValueForbidden`.
    pub reason: &'static str,
    /// Field path, e.g. `spec.ports[0].port`.
    pub field: String,
    /// Message without the field, e.g. `Invalid value: 0: must be between 1 and 65535, inclusive`.
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Self {
        let field = field.into();
        Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field,
        }
    }

    pub fn invalid(field: impl Into<String>, value: impl std::fmt::Display, detail: &str) -> Self {
        let field = field.into();
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
            field,
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let field = field.into();
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: \"{value}\": supported values: {}",
                list.join(", ")
            ),
            field,
        }
    }

    pub fn duplicate(field: impl Into<String>, value: impl std::fmt::Display) -> Self {
        let field = field.into();
        Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {value}"),
            field,
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        let field = field.into();
        Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field,
        }
    }
}

/// An error answered to a client; `status()` gives its `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{} \"{name}\" not found", qualified(resource))]
    NotFound {
        resource: &'static ResourceType,
        name: String,
    },
    /// A namespace that does not exist (also a NotFound, on `namespaces`).
    #[error("namespaces \"{0}\" not found")]
    NamespaceNotFound(String),
    #[error("{} \"{name}\" already exists", qualified(resource))]
    AlreadyExists {
        resource: &'static ResourceType,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {} \"{name}\": {detail}",
        qualified(resource)
    )]
    Conflict {
        resource: &'static ResourceType,
        name: String,
        detail: String,
    },
    #[error("{}", invalid_message(resource, name, causes))]
    Invalid {
        resource: &'static ResourceType,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("the server could not find the requested resource")]
    UnknownPath,
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A resource version or continue token older than the kept history.
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    Timeout(String),
}

fn qualified(r: &ResourceType) -> String {
    if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

fn invalid_message(r: &ResourceType, name: &str, causes: &[Cause]) -> String {
    let msgs: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let joined = if msgs.len() == 1 {
        msgs[0].clone()
    } else {
        format!("[{}]", msgs.join(", "))
    };
    format!("{} \"{name}\" is invalid: {joined}", r.kind)
}

impl ApiError {
    /// HTTP status code (also the `code` of the Status object).
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NamespaceNotFound(_) | ApiError::UnknownPath => {
                404
            }
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Expired(_) => 410,
            ApiError::Timeout(_) => 504,
        }
    }

    /// The `reason` of the Status object.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NamespaceNotFound(_) | ApiError::UnknownPath => {
                "NotFound"
            }
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Expired(_) => "Expired",
            ApiError::Timeout(_) => "Timeout",
        }
    }

    /// The Kubernetes `Status` object for this error.
    pub fn status(&self) -> Value {
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                Some(details(resource.group, resource.plural, name))
            }
            ApiError::NamespaceNotFound(name) => Some(details("", "namespaces", name)),
            ApiError::Invalid {
                resource,
                name,
                causes,
            } => {
                let mut d = details(resource.group, resource.kind, name);
                d["causes"] = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                Some(d)
            }
            ApiError::Timeout(_) => Some(json!({"retryAfterSeconds": 1})),
            _ => None,
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": kind});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// A successful `Status` (deletecollection of nothing, and similar).
pub fn success_status(details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}
