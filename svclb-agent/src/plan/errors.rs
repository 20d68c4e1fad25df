//! What the planner reports about objects it could not fully use. Each error names the
//! object and the field; the planner skips only the smallest unit the field affects.
use thiserror::Error;

/// One bad field of one object, rendered as a single log line:
/// `Service default/web: spec.ports[1].port: port 0 is out of range 1-65535`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Error)]
#[error("{object}: {field}: {message}")]
pub struct PlanError {
    /// `Service ns/name` or `EndpointSlice ns/name`.
    pub object: String,
    /// Path of the offending field, e.g. `spec.externalIPs[0]`.
    pub field: String,
    pub kind: ErrorKind,
    /// What is wrong and what was skipped because of it.
    pub message: String,
}

/// Class of a [`PlanError`], for metrics and for tests that must not match on text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    InvalidAddress,
    InvalidPort,
    NodePortRange,
    UnknownProtocol,
    UnsupportedProtocol,
    /// A value outside the field's allowed set (type, policy, timeout, annotation).
    InvalidValue,
    /// The same port, name or object defined twice.
    Duplicate,
    /// Two Services (or two ports) claim one frontend.
    Conflict,
    TooManyEndpoints,
}

impl ErrorKind {
    pub fn metric_label(self) -> &'static str {
        match self {
            ErrorKind::InvalidAddress => "invalid_address",
            ErrorKind::InvalidPort => "invalid_port",
            ErrorKind::NodePortRange => "node_port_range",
            ErrorKind::UnknownProtocol => "unknown_protocol",
            ErrorKind::UnsupportedProtocol => "unsupported_protocol",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooManyEndpoints => "too_many_endpoints",
        }
    }
}

/// A field-level problem found by a validator, before it is tied to an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub kind: ErrorKind,
    pub message: String,
}

impl Invalid {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Invalid {
            kind,
            message: message.into(),
        }
    }

    pub fn at(self, object: &str, field: impl Into<String>) -> PlanError {
        PlanError {
            object: object.to_string(),
            field: field.into(),
            kind: self.kind,
            message: self.message,
        }
    }
}
