//! Pure planning: Kubernetes objects → [`crate::model::DesiredState`] → map delta.
//! No aya, no kube client, no I/O.
pub mod diff;
pub mod ids;
pub mod image;

#[cfg(test)]
mod diff_tests;
