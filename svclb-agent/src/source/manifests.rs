//! Objects from a directory of manifest files, as `kubectl apply -f DIR` would read
//! them: `*.yaml`, `*.yml`, `*.json`, multi-document, `kind: List` and typed lists
//! (`ServiceList` ...). Service, EndpointSlice and Endpoints are used; other kinds are
//! skipped. A bad document costs only itself.
use std::{
    collections::BTreeMap,
    fs,
    hash::{DefaultHasher, Hash, Hasher},
    io,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use k8s_openapi::{
    Resource,
    api::{
        core::v1::{Endpoints, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::debug;

use super::{documents, errors::SourceError, objects::Objects};

/// Loads every manifest file of `dir` (not recursive, in name order). Fails only when
/// the directory cannot be listed; everything else is reported next to the objects.
pub fn load_dir(dir: &Path) -> Result<(Objects, Vec<SourceError>), SourceError> {
    let files = manifest_files(dir).map_err(|source| SourceError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut loader = Loader::default();
    for path in files {
        match fs::read_to_string(&path) {
            Ok(text) => loader.add_file(&path.display().to_string(), &text),
            Err(source) => loader.errors.push(SourceError::ReadFile { path, source }),
        }
    }
    Ok(loader.finish())
}

/// Parses one file's text; `name` locates errors and chooses JSON when it ends in
/// `.json`. Endpoints are mirrored as in [`load_dir`].
pub fn parse_file(name: &str, text: &str) -> (Objects, Vec<SourceError>) {
    let mut loader = Loader::default();
    loader.add_file(name, text);
    loader.finish()
}

/// The files [`load_dir`] reads, sorted by name. Hidden files (editor swap and lock
/// files, a ConfigMap volume's `..data`) are skipped; symlinks are followed, so a
/// mounted ConfigMap works.
pub fn manifest_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        if name.starts_with('.') || !matches!(ext.as_deref(), Some("yaml" | "yml" | "json")) {
            continue;
        }
        // metadata() follows symlinks; a dangling one or a directory is not a manifest.
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A cheap change detector for the run loop: hashes the names, sizes, mtimes and
/// contents of the files [`load_dir`] would read, so an edit that keeps the size and
/// lands in the same mtime tick is still seen.
pub fn dir_fingerprint(dir: &Path) -> io::Result<u64> {
    let mut h = DefaultHasher::new();
    for path in manifest_files(dir)? {
        path.hash(&mut h);
        // A file removed since the listing simply hashes as absent.
        if let Ok(meta) = fs::metadata(&path) {
            meta.len().hash(&mut h);
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .hash(&mut h);
        }
        fs::read(&path).ok().hash(&mut h);
    }
    Ok(h.finish())
}

#[derive(Default)]
struct Loader {
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    endpoints: Vec<Endpoints>,
    /// (kind, namespace/name) → where it was first defined.
    seen: BTreeMap<(&'static str, String), String>,
    errors: Vec<SourceError>,
}

impl Loader {
    fn add_file(&mut self, name: &str, text: &str) {
        let docs = if name.to_ascii_lowercase().ends_with(".json") {
            documents::json(text)
        } else {
            documents::yaml(text)
        };
        for doc in docs {
            let location = format!("{name} document {} (line {})", doc.index, doc.line);
            match doc.parsed {
                Ok(value) => self.add_value(value, &location, None),
                Err(message) => self.errors.push(SourceError::Parse {
                    location,
                    object: None,
                    message,
                }),
            }
        }
    }

    /// `list_item_kind` is `Some((apiVersion, kind))` for the items of a typed list
    /// (`ServiceList`), whose items may omit them.
    fn add_value(
        &mut self,
        mut value: Value,
        location: &str,
        list_item_kind: Option<(&str, &str)>,
    ) {
        let Value::Object(map) = &mut value else {
            if !value.is_null() {
                let message = "document is not an object".to_string();
                self.errors.push(SourceError::Parse {
                    location: location.into(),
                    object: None,
                    message,
                });
            }
            return;
        };
        if let Some((api, kind)) = list_item_kind {
            map.entry("apiVersion").or_insert_with(|| api.into());
            map.entry("kind").or_insert_with(|| kind.into());
        }
        let api = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(kind) = map.get("kind").and_then(Value::as_str).map(str::to_string) else {
            let message = "no kind: not a Kubernetes object".to_string();
            self.errors.push(SourceError::Parse {
                location: location.into(),
                object: None,
                message,
            });
            return;
        };
        if kind.ends_with("List") && map.contains_key("items") {
            let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                Some(Value::Null) => Vec::new(),
                Some(_) => {
                    let message = "items: expected a sequence".to_string();
                    self.errors.push(SourceError::Parse {
                        location: location.into(),
                        object: Some(kind),
                        message,
                    });
                    return;
                }
                None => unreachable!("checked above"),
            };
            for (i, item) in items.into_iter().enumerate() {
                self.add_value(
                    item,
                    &format!("{location} items[{i}]"),
                    item_kind.map(|k| (api.as_str(), k)),
                );
            }
            return;
        }
        match (api.as_str(), kind.as_str()) {
            (Service::API_VERSION, Service::KIND) => {
                if let Some(s) = self.typed::<Service>(value, location, |s| &mut s.metadata) {
                    self.services.push(s);
                }
            }
            (EndpointSlice::API_VERSION, EndpointSlice::KIND) => {
                if let Some(s) = self.typed::<EndpointSlice>(value, location, |s| &mut s.metadata) {
                    self.slices.push(s);
                }
            }
            (Endpoints::API_VERSION, Endpoints::KIND) => {
                if let Some(e) = self.typed::<Endpoints>(value, location, |e| &mut e.metadata) {
                    self.endpoints.push(e);
                }
            }
            ("", Service::KIND | EndpointSlice::KIND | Endpoints::KIND) => {
                let object = Some(describe(&value, &kind));
                let message = "apiVersion is missing".to_string();
                self.errors.push(SourceError::Parse {
                    location: location.into(),
                    object,
                    message,
                });
            }
            _ => debug!(location, api, kind, "not a kind svclb uses: skipped"),
        }
    }

    /// Deserializes a recognised object, naming the failing field; fills in the
    /// default namespace and drops a repeated definition.
    fn typed<T: DeserializeOwned + Resource>(
        &mut self,
        value: Value,
        location: &str,
        meta: impl FnOnce(&mut T) -> &mut ObjectMeta,
    ) -> Option<T> {
        let object = describe(&value, T::KIND);
        let mut obj: T = match serde_path_to_error::deserialize(value) {
            Ok(obj) => obj,
            Err(e) => {
                let path = e.path().to_string();
                let message = if path == "." {
                    e.inner().to_string()
                } else {
                    format!("{path}: {}", e.inner())
                };
                self.errors.push(SourceError::Parse {
                    location: location.into(),
                    object: Some(object),
                    message,
                });
                return None;
            }
        };
        let m = meta(&mut obj);
        if m.name.as_deref().is_none_or(str::is_empty) {
            let message = "metadata.name is missing".to_string();
            self.errors.push(SourceError::Parse {
                location: location.into(),
                object: Some(object),
                message,
            });
            return None;
        }
        let ns = super::objects::namespace(m).to_string();
        m.namespace = Some(ns);
        let key = (T::KIND, super::objects::key(m));
        if let Some(first) = self.seen.get(&key) {
            self.errors.push(SourceError::Duplicate {
                location: location.into(),
                object,
                first: first.clone(),
            });
            return None;
        }
        self.seen.insert(key, location.to_string());
        Some(obj)
    }

    fn finish(mut self) -> (Objects, Vec<SourceError>) {
        let mut objects = Objects {
            services: self.services,
            slices: self.slices,
        };
        let mirror_errors = objects.add_endpoints(&self.endpoints);
        self.errors
            .extend(mirror_errors.into_iter().map(SourceError::Object));
        (objects, self.errors)
    }
}

/// `Kind namespace/name` from the raw document, as far as it is readable.
fn describe(value: &Value, kind: &str) -> String {
    let meta = value.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match field("name") {
        Some(name) => format!("{kind} {}/{name}", field("namespace").unwrap_or("default")),
        None => kind.to_string(),
    }
}
