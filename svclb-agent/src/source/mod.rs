//! Where Kubernetes objects come from: manifest files or the apiserver.
mod documents;
pub mod errors;
pub mod manifests;
pub mod objects;

pub use errors::SourceError;
pub use objects::Objects;

#[cfg(test)]
mod tests;
