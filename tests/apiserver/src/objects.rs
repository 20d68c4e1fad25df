//! Direct object access for in-process tests and benchmarks: the same store operations
//! as the HTTP API (validation, defaulting, allocation, versions, watch events), without
//! HTTP. Objects are `serde_json::Value`s; the kind comes from the object or an argument.

use serde_json::Value;

use crate::error::ApiError;
use crate::resource::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{ListOptions, PatchType, Preconditions, Store, WriteOptions};

pub struct Objects<'a> {
    store: &'a Store,
}

fn resource_of(kind: &str) -> Result<&'static ResourceType, ApiError> {
    resource::by_kind_name(kind)
        .ok_or_else(|| ApiError::BadRequest(format!("kind {kind} is not served")))
}

fn kind_and_namespace(obj: &Value) -> Result<(&'static ResourceType, Option<String>), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let r = resource_of(kind)?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    Ok((r, r.namespaced.then(|| ns.unwrap_or("default").to_string())))
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl<'a> Objects<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Objects { store }
    }

    /// Creates an object (namespace `default` when the object names none).
    pub fn create(&self, obj: &Value) -> Result<Value, ApiError> {
        let (r, ns) = kind_and_namespace(obj)?;
        Ok((*self
            .store
            .create(r, ns.as_deref(), obj, WriteOptions::default())?
            .object
            .value)
            .clone())
    }

    /// Replaces an object (PUT); a `metadata.resourceVersion` in `obj` is a precondition.
    pub fn replace(&self, obj: &Value) -> Result<Value, ApiError> {
        let (r, ns) = kind_and_namespace(obj)?;
        Ok((*self
            .store
            .replace(
                r,
                ns.as_deref(),
                &name_of(obj),
                obj,
                false,
                WriteOptions::default(),
            )?
            .object
            .value)
            .clone())
    }

    /// Replaces an object's status (PUT on `/status`), e.g. a Service's load balancer.
    pub fn replace_status(&self, obj: &Value) -> Result<Value, ApiError> {
        let (r, ns) = kind_and_namespace(obj)?;
        Ok((*self
            .store
            .replace(
                r,
                ns.as_deref(),
                &name_of(obj),
                obj,
                true,
                WriteOptions::default(),
            )?
            .object
            .value)
            .clone())
    }

    /// Applies an RFC 7386 merge patch.
    pub fn merge_patch(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let r = resource_of(kind)?;
        let body = serde_json::to_vec(patch).expect("JSON values encode");
        Ok((*self
            .store
            .patch(
                r,
                namespace,
                name,
                PatchType::Merge,
                &body,
                false,
                WriteOptions::default(),
            )?
            .object
            .value)
            .clone())
    }

    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let r = resource_of(kind)?;
        Ok((*self.store.get(r, namespace, name)?.value).clone())
    }

    /// Every object of `kind`, in one namespace or (None) all.
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Vec<Value>, ApiError> {
        let r = resource_of(kind)?;
        let list = self.store.list(
            r,
            namespace,
            &LabelSelector::default(),
            &FieldSelector::default(),
            &ListOptions::default(),
        )?;
        Ok(list.items.into_iter().map(|i| (*i.value).clone()).collect())
    }

    /// Deletes an object; answers it as it was.
    pub fn delete(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let r = resource_of(kind)?;
        Ok((*self
            .store
            .delete(r, namespace, name, &Preconditions::default(), false)?
            .value)
            .clone())
    }
}
