//! Pure planning: Kubernetes objects → [`crate::model::DesiredState`] → map delta.
//! No aya, no kube client, no I/O.
