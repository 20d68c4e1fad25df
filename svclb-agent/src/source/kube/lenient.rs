//! Objects decoded one at a time, so that one bad object in a list or watch stream
//! costs only itself: the watcher would otherwise fail the whole list (and retry it
//! forever) or lose the event.
use std::{borrow::Cow, fmt::Debug};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

/// `K` as the apiserver sent it: decoded, or not decodable as `K` (with the metadata
/// that could be read, so the store can key it and a later fix or delete replaces it).
// Stores hold it behind an Arc; boxing the valid object would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Lenient<K> {
    Valid(K),
    Invalid { meta: ObjectMeta, error: String },
}

impl<K> Lenient<K> {
    pub fn valid(&self) -> Option<&K> {
        match self {
            Lenient::Valid(k) => Some(k),
            Lenient::Invalid { .. } => None,
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        match K::deserialize(&value) {
            Ok(k) => Ok(Lenient::Valid(k)),
            Err(e) => {
                let meta = value
                    .get("metadata")
                    .and_then(|m| ObjectMeta::deserialize(m).ok())
                    .unwrap_or_default();
                Ok(Lenient::Invalid {
                    meta,
                    error: e.to_string(),
                })
            }
        }
    }
}

impl<K: Resource> Resource for Lenient<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Valid(k) => k.meta(),
            Lenient::Invalid { meta, .. } => meta,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Valid(k) => k.meta_mut(),
            Lenient::Invalid { meta, .. } => meta,
        }
    }
}
