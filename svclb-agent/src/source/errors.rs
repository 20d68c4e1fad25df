//! Problems met while reading objects. Each renders as one log line that says where
//! (file, document, line) and what.
use std::{io, path::PathBuf};

use thiserror::Error;

use crate::plan::errors::PlanError;

#[derive(Debug, Error)]
pub enum SourceError {
    /// The directory itself is unreadable: nothing can be loaded.
    #[error("cannot read manifest directory {}: {source}", path.display())]
    ReadDir { path: PathBuf, source: io::Error },
    /// One file is unreadable (vanished, permissions, not UTF-8); the others are used.
    #[error("{}: cannot read: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    /// One document (or List item) does not parse; the others are used.
    /// `location` is like `dir/web.yaml document 2 (line 14)`.
    #[error("{location}: {}{message}", object.as_ref().map(|o| format!("{o}: ")).unwrap_or_default())]
    Parse {
        location: String,
        object: Option<String>,
        message: String,
    },
    /// The same kind/namespace/name defined twice: the first definition is used.
    #[error("{location}: {object} is already defined at {first}; this definition is ignored")]
    Duplicate {
        location: String,
        object: String,
        first: String,
    },
    /// A field the Endpoints mirroring could not use.
    #[error(transparent)]
    Object(#[from] PlanError),
}

impl SourceError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::ReadDir { .. } => "read_dir",
            SourceError::ReadFile { .. } => "read_file",
            SourceError::Parse { .. } => "parse",
            SourceError::Duplicate { .. } => "duplicate",
            SourceError::Object(e) => e.kind.metric_label(),
        }
    }
}
