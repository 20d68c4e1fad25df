//! Dataplane backends. They take a [`crate::model::DesiredState`] and know nothing of
//! Kubernetes objects.
