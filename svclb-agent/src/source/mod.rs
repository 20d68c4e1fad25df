//! Where Kubernetes objects come from: manifest files or the apiserver.
pub mod change;
mod documents;
pub mod errors;
pub mod kube;
pub mod manifests;
pub mod objects;

pub use errors::SourceError;
pub use objects::Objects;

#[cfg(test)]
mod tests;
