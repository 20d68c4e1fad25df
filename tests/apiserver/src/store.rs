//! The object store: current objects, one global resource version counter (like etcd's
//! revision), and a bounded history of changes that watches resume from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::alloc::{Allocator, Ipv4Cidr};
use crate::canonical::{self, FieldValidation};
use crate::error::ApiError;
use crate::resource::{self, NAMESPACES, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::{defaults, strategic, validate};

/// Storage key: resource index in `resource::ALL`, namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub res: usize,
    pub ns: String,
    pub name: String,
}

impl Key {
    pub fn resource(&self) -> &'static ResourceType {
        resource::ALL[self.res]
    }
}

/// A stored object with its JSON encoding (encoded once, sent many times).
#[derive(Debug, Clone)]
pub struct Stored {
    pub value: Arc<Value>,
    pub json: Bytes,
}

impl Stored {
    fn new(value: Value) -> Self {
        let json = Bytes::from(serde_json::to_vec(&value).expect("JSON values encode"));
        Stored {
            value: Arc::new(value),
            json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change: what watches send and what paginated lists undo.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub event: EventType,
    pub key: Key,
    /// The new object; for a delete, the last state stamped with the delete's version.
    pub object: Stored,
    /// The object before the change (None for an add).
    pub prev: Option<Stored>,
    /// `{"type":…,"object":…}\n`, ready for every watch stream.
    pub line: Bytes,
}

/// Options common to writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

/// A successful write: the object as stored and any `Warning` headers to send.
#[derive(Debug)]
pub struct Written {
    pub object: Stored,
    pub warnings: Vec<String>,
    /// True when a create (POST, or PUT creating an Endpoints) made it.
    pub created: bool,
}

/// Preconditions of a delete (`DeleteOptions.preconditions`).
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// A list result: encoded items, the version it reflects and a continue token.
#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Stored>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

/// Paging and version options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions<'a> {
    /// At most this many items, with a continue token for the rest.
    pub limit: Option<usize>,
    pub continue_token: Option<&'a str>,
    /// `resourceVersionMatch=Exact`: the objects as they were at this version.
    pub exact_version: Option<u64>,
}

/// What a watch reads: objects or changes after its cursor.
#[derive(Debug)]
pub enum Since {
    Changes {
        changes: Vec<Arc<Change>>,
        cursor: u64,
    },
    /// The cursor is older than the kept history (answer 410 Expired).
    TooOld { floor: u64 },
}

/// Counters for `/_test/stats` and the library's `stats()`.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub lists: AtomicU64,
    pub gets: AtomicU64,
    pub writes: AtomicU64,
    pub watches_started: AtomicU64,
    pub watches_active: AtomicU64,
    pub watches_cut: AtomicU64,
    pub watch_expired: AtomicU64,
    pub bookmarks: AtomicU64,
}

struct Inner {
    objects: BTreeMap<Key, Stored>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    /// Oldest version a watch may start from: every change after it is in `history`.
    floor: u64,
    /// Newest version of a change no longer in `history`: an open watch whose cursor is
    /// older missed it. (Differs from `floor` after `expire`, which compacts past the last
    /// change without dropping events an open watch still needs.)
    lost: u64,
    alloc: Allocator,
}

pub struct Store {
    inner: Mutex<Inner>,
    history_limit: usize,
    /// Latest committed version, for waking watches.
    rv_tx: tokio::sync::watch::Sender<u64>,
    /// Bumped to end every open watch stream.
    cut_tx: tokio::sync::watch::Sender<u64>,
    pub counters: Counters,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    // Version 4, variant 1 bits as in a random UUID.
    let v = format!("{}{:02x}", &h(6..7)[1..], b[7]);
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        h(0..4),
        h(4..6),
        v,
        8 | (b[8] & 0x3),
        &h(8..10)[1..],
        h(10..16)
    )
}

fn random_suffix() -> String {
    // The real generateName alphabet: no vowels, no ambiguous characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    let root = obj
        .as_object_mut()
        .expect("decoded objects are JSON objects");
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("made an object above")
}

impl Store {
    /// A store holding the namespaces every cluster has.
    pub fn new(history_limit: usize, service_cidr: Ipv4Cidr) -> Self {
        let store = Store {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rv: 0,
                history: VecDeque::new(),
                floor: 0,
                lost: 0,
                alloc: Allocator::new(service_cidr),
            }),
            history_limit: history_limit.max(1),
            rv_tx: tokio::sync::watch::channel(0).0,
            cut_tx: tokio::sync::watch::channel(0).0,
            counters: Counters::default(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .create(
                    &NAMESPACES,
                    None,
                    &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    WriteOptions::default(),
                )
                .expect("built-in namespaces are valid");
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest committed resource version.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// The oldest version a watch may still start from.
    pub fn floor(&self) -> u64 {
        self.lock().floor
    }

    pub fn history_len(&self) -> usize {
        self.lock().history.len()
    }

    pub fn object_count(&self) -> usize {
        self.lock().objects.len()
    }

    pub fn subscribe_versions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rv_tx.subscribe()
    }

    pub fn subscribe_cuts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.cut_tx.subscribe()
    }

    /// Ends every open watch stream; returns how many were open.
    pub fn cut_watches(&self) -> u64 {
        let open = self.counters.watches_active.load(Ordering::Relaxed);
        self.counters.watches_cut.fetch_add(open, Ordering::Relaxed);
        self.cut_tx.send_modify(|g| *g += 1);
        open
    }

    /// Compacts: drops the history and moves the version on by one (as the other writes of
    /// a real cluster would), so a new watch from any version handed out so far gets 410
    /// Expired. Open watches that have seen every change go on; together with
    /// `cut_watches` every watcher therefore relists. Returns the new floor.
    pub fn expire(&self) -> u64 {
        let mut inner = self.lock();
        if let Some(last) = inner.history.back() {
            inner.lost = last.rv;
        }
        inner.history.clear();
        inner.rv += 1;
        inner.floor = inner.rv;
        // Wake open watches: those that had not read every change yet notice now.
        self.rv_tx.send_replace(inner.rv);
        inner.floor
    }

    fn key(resource: &'static ResourceType, ns: Option<&str>, name: &str) -> Key {
        Key {
            res: resource.index(),
            ns: if resource.namespaced {
                ns.unwrap_or("").to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn commit(
        &self,
        inner: &mut Inner,
        event: EventType,
        key: Key,
        mut value: Value,
        prev: Option<Stored>,
    ) -> Stored {
        inner.rv += 1;
        let rv = inner.rv;
        meta_mut(&mut value).insert("resourceVersion".into(), json!(rv.to_string()));
        let object = Stored::new(value);
        match event {
            EventType::Deleted => {
                inner.objects.remove(&key);
            }
            _ => {
                inner.objects.insert(key.clone(), object.clone());
            }
        }
        let mut line = Vec::with_capacity(object.json.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(event.as_str().as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(&object.json);
        line.extend_from_slice(b"}\n");
        inner.history.push_back(Arc::new(Change {
            rv,
            event,
            key,
            object: object.clone(),
            prev,
            line: Bytes::from(line),
        }));
        while inner.history.len() > self.history_limit {
            if let Some(old) = inner.history.pop_front() {
                inner.floor = old.rv;
                inner.lost = old.rv;
            }
        }
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.rv_tx.send_replace(rv);
        object
    }

    /// Decodes a body, enforcing `fieldValidation`; returns the object and warnings.
    fn decode(
        resource: &'static ResourceType,
        body: &Value,
        opts: WriteOptions,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let decoded = canonical::decode(resource, body)?;
        let unknown: Vec<String> = decoded
            .unknown_fields
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        match opts.field_validation {
            FieldValidation::Strict if !unknown.is_empty() => Err(ApiError::BadRequest(format!(
                "strict decoding error: {}",
                unknown.join(", ")
            ))),
            FieldValidation::Warn => Ok((decoded.object, unknown)),
            _ => Ok((decoded.object, Vec::new())),
        }
    }

    /// Namespace of the body must agree with the URL's; fills it in when unset.
    fn place(
        resource: &'static ResourceType,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let meta = meta_mut(obj);
        if resource.namespaced {
            let url_ns = ns.unwrap_or("default");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != url_ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(url_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        Ok(())
    }

    fn check_namespace(inner: &Inner, resource: &ResourceType, ns: &str) -> Result<(), ApiError> {
        if resource.namespaced
            && !inner
                .objects
                .contains_key(&Self::key(&NAMESPACES, None, ns))
        {
            return Err(ApiError::NamespaceNotFound(ns.to_string()));
        }
        Ok(())
    }

    /// POST: creates an object from a request body.
    pub fn create(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
        body: &Value,
        opts: WriteOptions,
    ) -> Result<Written, ApiError> {
        let (mut obj, warnings) = Self::decode(resource, body, opts)?;
        Self::place(resource, ns, &mut obj)?;
        let mut inner = self.lock();
        let object = self.create_decoded(&mut inner, resource, obj, opts)?;
        Ok(Written {
            object,
            warnings,
            created: true,
        })
    }

    fn create_decoded(
        &self,
        inner: &mut Inner,
        resource: &'static ResourceType,
        mut obj: Value,
        opts: WriteOptions,
    ) -> Result<Stored, ApiError> {
        let ns = meta_str(&obj, "namespace").to_string();
        Self::check_namespace(inner, resource, &ns)?;
        let meta = meta_mut(&mut obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::BadRequest(
                "resourceVersion should not be set on objects to be created".into(),
            ));
        }
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            let name = format!("{prefix}{}", random_suffix());
            meta.insert("name".into(), json!(name));
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now()));
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(f);
        }
        if resource.kind == "Service"
            && let Some(root) = obj.as_object_mut()
        {
            // The real Service strategy clears status on create.
            root.remove("status");
        }
        defaults::apply(resource.kind, &mut obj);
        let name = meta_str(&obj, "name").to_string();
        let causes = validate::object(resource.kind, &obj);
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                resource,
                name,
                causes,
            });
        }
        let key = Self::key(resource, Some(&ns), &name);
        if inner.objects.contains_key(&key) {
            return Err(ApiError::AlreadyExists { resource, name });
        }
        if resource.kind == "Service" {
            self.allocate(inner, resource, &name, None, &mut obj, opts.dry_run)?;
        }
        if opts.dry_run {
            return Ok(Stored::new(obj));
        }
        Ok(self.commit(inner, EventType::Added, key, obj, None))
    }

    fn allocate(
        &self,
        inner: &mut Inner,
        resource: &'static ResourceType,
        name: &str,
        old: Option<&Value>,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let result = if dry_run {
            inner.alloc.clone().service_write(old, obj)
        } else {
            inner.alloc.service_write(old, obj)
        };
        result.map_err(|causes| ApiError::Invalid {
            resource,
            name: name.to_string(),
            causes,
        })
    }

    /// GET of one object.
    pub fn get(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        self.lock()
            .objects
            .get(&Self::key(resource, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::NotFound {
                resource,
                name: name.to_string(),
            })
    }

    /// PUT (or the end of a PATCH): replaces an object, or its status with `status_only`.
    #[allow(clippy::too_many_arguments)]
    pub fn replace(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        body: &Value,
        status_only: bool,
        opts: WriteOptions,
    ) -> Result<Written, ApiError> {
        let (mut obj, warnings) = Self::decode(resource, body, opts)?;
        Self::place(resource, ns, &mut obj)?;
        let body_name = meta_str(&obj, "name").to_string();
        if body_name.is_empty() {
            meta_mut(&mut obj).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let mut inner = self.lock();
        let key = Self::key(resource, ns, name);
        let Some(old) = inner.objects.get(&key).cloned() else {
            if resource.create_on_update && !status_only {
                meta_mut(&mut obj).remove("resourceVersion");
                let object = self.create_decoded(&mut inner, resource, obj, opts)?;
                return Ok(Written {
                    object,
                    warnings,
                    created: true,
                });
            }
            return Err(ApiError::NotFound {
                resource,
                name: name.to_string(),
            });
        };
        let old_rv = meta_str(&old.value, "resourceVersion").to_string();
        let body_rv = meta_str(&obj, "resourceVersion");
        if !body_rv.is_empty() && body_rv != old_rv {
            return Err(ApiError::Conflict {
                resource,
                name: name.to_string(),
                detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
        let old_uid = meta_str(&old.value, "uid").to_string();
        let body_uid = meta_str(&obj, "uid");
        if !body_uid.is_empty() && body_uid != old_uid {
            return Err(ApiError::Conflict {
                resource,
                name: name.to_string(),
                detail: format!(
                    "Precondition failed: UID in precondition: {body_uid}, UID in object meta: {old_uid}"
                ),
            });
        }
        let mut new = if status_only {
            let mut new = (*old.value).clone();
            new["status"] = obj.get("status").cloned().unwrap_or_else(|| json!({}));
            new
        } else {
            let mut new = obj;
            {
                let meta = meta_mut(&mut new);
                meta.insert("uid".into(), json!(old_uid));
                meta.insert(
                    "creationTimestamp".into(),
                    old.value["metadata"]["creationTimestamp"].clone(),
                );
                meta.remove("managedFields");
            }
            if resource.has_status {
                match old.value.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().expect("object").remove("status");
                    }
                }
            }
            if resource.kind == "Service" {
                defaults::keep_allocated(&old.value, &mut new);
            }
            defaults::apply(resource.kind, &mut new);
            new
        };
        meta_mut(&mut new).insert("resourceVersion".into(), json!(old_rv));
        let mut causes = validate::object(resource.kind, &new);
        if status_only && resource.kind == "Service" {
            causes.extend(validate::service_status(&new));
        }
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                resource,
                name: name.to_string(),
                causes,
            });
        }
        // An update that changes nothing is not written (no new version, no event).
        if new == *old.value {
            return Ok(Written {
                object: old,
                warnings,
                created: false,
            });
        }
        if resource.kind == "Service" && !status_only {
            self.allocate(
                &mut inner,
                resource,
                name,
                Some(&old.value),
                &mut new,
                opts.dry_run,
            )?;
        }
        if opts.dry_run {
            return Ok(Written {
                object: Stored::new(new),
                warnings,
                created: false,
            });
        }
        let object = self.commit(&mut inner, EventType::Modified, key, new, Some(old));
        Ok(Written {
            object,
            warnings,
            created: false,
        })
    }

    /// PATCH: applies a patch of `patch_type` to the stored object, then replaces it.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &[u8],
        status_only: bool,
        opts: WriteOptions,
    ) -> Result<Written, ApiError> {
        let bad =
            |e: &dyn std::fmt::Display| ApiError::BadRequest(format!("error decoding patch: {e}"));
        // A patch naming a resourceVersion is conditional on it; any other patch is
        // applied to the latest version, retried when a concurrent write wins (as the
        // real apiserver's GuaranteedUpdate does).
        let pinned = match patch_type {
            PatchType::Merge | PatchType::Strategic => {
                let p: Value = serde_json::from_slice(patch).map_err(|e| bad(&e))?;
                p.pointer("/metadata/resourceVersion")
                    .is_some_and(Value::is_string)
            }
            PatchType::Json => {
                let p: Vec<Value> = serde_json::from_slice(patch).map_err(|e| bad(&e))?;
                p.iter()
                    .any(|op| op["path"] == "/metadata/resourceVersion" && op["op"] != "remove")
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.get(resource, ns, name)?;
            let mut doc = (*current.value).clone();
            match patch_type {
                PatchType::Merge => {
                    let p: Value = serde_json::from_slice(patch).map_err(|e| bad(&e))?;
                    json_patch::merge(&mut doc, &p);
                }
                PatchType::Strategic => {
                    let p: Value = serde_json::from_slice(patch).map_err(|e| bad(&e))?;
                    strategic::apply(&mut doc, &p)?;
                }
                PatchType::Json => {
                    let p: json_patch::Patch =
                        serde_json::from_slice(patch).map_err(|e| bad(&e))?;
                    json_patch::patch(&mut doc, &p).map_err(|e| {
                        ApiError::BadRequest(format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ))
                    })?;
                }
            }
            if meta_str(&doc, "name") != name {
                return Err(ApiError::BadRequest(
                    "metadata.name: the name of a patched object may not change".into(),
                ));
            }
            if !pinned {
                meta_mut(&mut doc).insert(
                    "resourceVersion".into(),
                    current.value["metadata"]["resourceVersion"].clone(),
                );
            }
            match self.replace(resource, ns, name, &doc, status_only, opts) {
                Err(ApiError::Conflict { .. }) if !pinned && attempt < 50 => continue,
                result => return result,
            }
        }
    }

    /// DELETE of one object; answers the object as it was, stamped with the delete's version.
    pub fn delete(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        pre: &Preconditions,
        dry_run: bool,
    ) -> Result<Stored, ApiError> {
        let mut inner = self.lock();
        let key = Self::key(resource, ns, name);
        let Some(old) = inner.objects.get(&key).cloned() else {
            return Err(ApiError::NotFound {
                resource,
                name: name.to_string(),
            });
        };
        for (what, want, have) in [
            ("UID", pre.uid.as_deref(), meta_str(&old.value, "uid")),
            (
                "ResourceVersion",
                pre.resource_version.as_deref(),
                meta_str(&old.value, "resourceVersion"),
            ),
        ] {
            if let Some(want) = want.filter(|w| !w.is_empty())
                && want != have
            {
                return Err(ApiError::Conflict {
                    resource,
                    name: name.to_string(),
                    detail: format!(
                        "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
                    ),
                });
            }
        }
        if dry_run {
            return Ok(old);
        }
        Ok(self.delete_locked(&mut inner, key, old))
    }

    fn delete_locked(&self, inner: &mut Inner, key: Key, old: Stored) -> Stored {
        let resource = key.resource();
        if resource.kind == "Namespace" {
            // Namespace deletion takes its contents along (finalization done at once).
            let inside: Vec<(Key, Stored)> = inner
                .objects
                .iter()
                .filter(|(k, _)| k.ns == key.name && k.resource().namespaced)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in inside {
                self.delete_locked(inner, k, v);
            }
        }
        if resource.kind == "Service" {
            inner.alloc.service_delete(&old.value);
        }
        let value = (*old.value).clone();
        self.commit(inner, EventType::Deleted, key, value, Some(old))
    }

    /// DELETE of a collection: every object matching the selectors; answers them.
    pub fn delete_collection(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        dry_run: bool,
    ) -> ListResult {
        let mut inner = self.lock();
        let matching: Vec<(Key, Stored)> = Self::range(&inner, resource, ns)
            .filter(|(_, v)| labels.matches_object(&v.value) && fields.matches_object(&v.value))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut items = Vec::with_capacity(matching.len());
        for (k, v) in matching {
            items.push(if dry_run {
                v
            } else {
                self.delete_locked(&mut inner, k, v)
            });
        }
        ListResult {
            items,
            resource_version: inner.rv,
            continue_token: None,
        }
    }

    fn range<'a>(
        inner: &'a Inner,
        resource: &'static ResourceType,
        ns: Option<&str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Stored)> {
        let res = resource.index();
        let ns = ns.filter(|_| resource.namespaced).map(str::to_string);
        let start = Key {
            res,
            ns: ns.clone().unwrap_or_default(),
            name: String::new(),
        };
        inner
            .objects
            .range(start..)
            .take_while(move |(k, _)| k.res == res && ns.as_ref().is_none_or(|n| &k.ns == n))
    }

    /// LIST: current objects, or (with a continue token) the next page of the snapshot the
    /// first page was taken from.
    pub fn list(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &ListOptions<'_>,
    ) -> Result<ListResult, ApiError> {
        let inner = self.lock();
        let matches =
            |v: &Stored| labels.matches_object(&v.value) && fields.matches_object(&v.value);
        let limit = opts.limit.filter(|&l| l > 0).unwrap_or(usize::MAX);
        let continue_token = opts.continue_token.filter(|t| !t.is_empty());
        let past = opts.exact_version.filter(|&rv| rv != inner.rv);
        if continue_token.is_none() && past.is_none() {
            let mut items = Vec::new();
            let mut last = None;
            let mut more = false;
            for (k, v) in Self::range(&inner, resource, ns) {
                if !matches(v) {
                    continue;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(v.clone());
                last = Some(k);
            }
            let continue_token = match (more, last) {
                (true, Some(k)) => Some(encode_continue(inner.rv, k)),
                _ => None,
            };
            return Ok(ListResult {
                items,
                resource_version: inner.rv,
                continue_token,
            });
        }
        let (snap_rv, after) = match (continue_token, past) {
            (Some(token), _) => decode_continue(token)?,
            (None, Some(rv)) => {
                if rv < inner.floor || rv > inner.rv {
                    return Err(ApiError::Expired(format!(
                        "too old resource version: {rv} ({})",
                        inner.floor
                    )));
                }
                (rv, (String::new(), String::new()))
            }
            (None, None) => unreachable!("handled above"),
        };
        if snap_rv < inner.floor || snap_rv > inner.rv {
            return Err(ApiError::Expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
            ));
        }
        // The state at `snap_rv`: current objects with every later change undone.
        let mut undo: BTreeMap<&Key, Option<&Stored>> = BTreeMap::new();
        let first_later = inner.history.partition_point(|c| c.rv <= snap_rv);
        for change in inner.history.range(first_later..).rev() {
            undo.insert(&change.key, change.prev.as_ref());
        }
        let in_scope = |k: &Key| {
            k.res == resource.index()
                && (!resource.namespaced || ns.is_none_or(|n| k.ns == n))
                && (k.ns.as_str(), k.name.as_str()) > (after.0.as_str(), after.1.as_str())
        };
        let mut snapshot: Vec<(&Key, &Stored)> = Self::range(&inner, resource, ns)
            .filter(|(k, _)| in_scope(k) && !undo.contains_key(k))
            .collect();
        snapshot.extend(
            undo.iter()
                .filter(|(k, _)| in_scope(k))
                .filter_map(|(k, v)| v.map(|v| (*k, v))),
        );
        snapshot.sort_by(|a, b| a.0.cmp(b.0));
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut last: Option<&Key> = None;
        for (k, v) in snapshot.into_iter().filter(|(_, v)| matches(v)) {
            if items.len() == limit {
                continue_token = last.map(|l| encode_continue(snap_rv, l));
                break;
            }
            items.push(v.clone());
            last = Some(k);
        }
        Ok(ListResult {
            items,
            resource_version: snap_rv,
            continue_token,
        })
    }

    /// Objects for a watch that starts with the current state, and the version they are at.
    pub fn snapshot(
        &self,
        resource: &'static ResourceType,
        ns: Option<&str>,
    ) -> (Vec<Stored>, u64) {
        let inner = self.lock();
        let items = Self::range(&inner, resource, ns)
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Changes after `cursor` (at most `max`), and the cursor to ask from next time.
    /// `starting`: the watch starts at `cursor` (refused below the compaction floor); else
    /// it is an open watch (refused only if it missed a change).
    pub fn since(&self, cursor: u64, max: usize, starting: bool) -> Since {
        let inner = self.lock();
        if (starting && cursor < inner.floor) || cursor < inner.lost {
            return Since::TooOld { floor: inner.floor };
        }
        let first = inner.history.partition_point(|c| c.rv <= cursor);
        let changes: Vec<Arc<Change>> = inner.history.range(first..).take(max).cloned().collect();
        let cursor = if changes.len() == max {
            changes.last().map_or(cursor, |c| c.rv)
        } else {
            inner.rv.max(cursor)
        };
        Since::Changes { changes, cursor }
    }
}

fn encode_continue(rv: u64, after: &Key) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}\u{0}", after.ns, after.name)});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    use base64::Engine;
    let bad = || ApiError::BadRequest(format!("invalid continue token: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let start = start.strip_suffix('\u{0}').unwrap_or(start);
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

/// PATCH body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (see `strategic`).
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
}
