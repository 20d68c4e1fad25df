//! A reflector store's content as the plain `Vec<K>` the planner reads, kept up to
//! date incrementally. After a watch event only the touched object is looked at
//! ([`Mirror::update_one`]); after a (re)list everything is compared
//! ([`Mirror::update_all`]), but objects whose uid and resourceVersion did not change
//! are kept, not cloned. Either way the update says whether anything changed, so that
//! a relist of unchanged objects costs no planning.
use std::{collections::HashMap, sync::Arc};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::ObjectMeta, jiff::Timestamp};
use kube::Resource;
use tracing::error;

use super::lenient::Lenient;
use crate::source::objects;

/// EndpointSlice annotation: when the change that produced this version happened
/// (set by the EndpointSlice controller; kube-proxy measures programming latency
/// from it).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Remembers which version of each object the planner's `Vec<K>` holds, and where.
#[derive(Debug)]
pub struct Mirror<K> {
    kind: &'static str,
    /// `namespace/name` → what the items hold of it.
    index: HashMap<String, Seen>,
    /// The key of each item, by position (for `swap_remove`).
    keys: Vec<String>,
    _kind: std::marker::PhantomData<fn() -> K>,
}

#[derive(Debug)]
struct Seen {
    version: Version,
    /// Position in `items`; `None` for an object that did not decode.
    pos: Option<usize>,
}

#[derive(Debug, PartialEq, Eq)]
struct Version {
    uid: Option<String>,
    resource_version: Option<String>,
}

impl Version {
    fn of(meta: &ObjectMeta) -> Self {
        Version {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }
    }

    /// Without a resourceVersion (never from an apiserver) nothing proves the
    /// object unchanged.
    fn same(&self, meta: &ObjectMeta) -> bool {
        self.resource_version.is_some()
            && self.resource_version == meta.resource_version
            && self.uid == meta.uid
    }
}

/// What an update found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MirrorDelta {
    /// New or modified objects (valid or not).
    pub changed: usize,
    pub removed: usize,
    /// Keys of the objects changed or removed (not filled by `update_all`).
    pub keys: Vec<String>,
    /// Newly seen objects that did not decode: (`Kind ns/name`, error). Each version
    /// is reported once.
    pub invalid: Vec<(String, String)>,
    /// `last-change-trigger-time` of the changed objects that carry it.
    pub trigger_times: Vec<Timestamp>,
}

impl MirrorDelta {
    pub fn is_empty(&self) -> bool {
        self.changed == 0 && self.removed == 0
    }

    pub fn add(&mut self, other: MirrorDelta) {
        self.changed += other.changed;
        self.removed += other.removed;
        self.keys.extend(other.keys);
        self.invalid.extend(other.invalid);
        self.trigger_times.extend(other.trigger_times);
    }
}

impl<K: Resource + Clone> Mirror<K> {
    /// `kind` names objects in log lines ("Service").
    pub fn new(kind: &'static str) -> Self {
        Mirror {
            kind,
            index: HashMap::new(),
            keys: Vec::new(),
            _kind: std::marker::PhantomData,
        }
    }

    /// Makes `items` hold the valid objects of `state` (a store's whole content), in
    /// no particular order. `items` must be what the previous updates left (empty the
    /// first time): unchanged objects are taken from it.
    pub fn update_all(&mut self, state: &[Arc<Lenient<K>>], items: &mut Vec<K>) -> MirrorDelta {
        let mut old_items: Vec<Option<K>> = std::mem::take(items).into_iter().map(Some).collect();
        let mut delta = MirrorDelta::default();
        let mut index = HashMap::with_capacity(state.len());
        let mut keys = Vec::with_capacity(state.len());
        items.reserve(state.len());
        for obj in state {
            let meta = obj.meta();
            let key = objects::key(meta);
            let kept = match self.index.remove(&key) {
                Some(seen) if seen.version.same(meta) => match seen.pos {
                    None => Some(None),
                    Some(p) => old_items.get_mut(p).and_then(Option::take).map(|k| {
                        items.push(k);
                        Some(items.len() - 1)
                    }),
                },
                _ => None,
            };
            let pos = match kept {
                Some(pos) => pos,
                None => {
                    self.note_change(&key, obj, &mut delta);
                    obj.valid().map(|k| {
                        items.push(k.clone());
                        items.len() - 1
                    })
                }
            };
            if pos.is_some() {
                keys.push(key.clone());
            }
            index.insert(
                key,
                Seen {
                    version: Version::of(meta),
                    pos,
                },
            );
        }
        delta.removed = self.index.len();
        self.index = index;
        self.keys = keys;
        delta
    }

    /// Brings the object `key` (`namespace/name`) in `items` up to `current`, its
    /// state in the store (`None`: deleted).
    pub fn update_one(
        &mut self,
        key: &str,
        current: Option<&Lenient<K>>,
        items: &mut Vec<K>,
    ) -> MirrorDelta {
        let mut delta = MirrorDelta::default();
        let Some(obj) = current else {
            if let Some(seen) = self.index.remove(key) {
                delta.removed = 1;
                delta.keys.push(key.to_string());
                if let Some(p) = seen.pos {
                    self.remove_at(p, items);
                }
            }
            return delta;
        };
        let meta = obj.meta();
        let old_pos = match self.index.get(key) {
            Some(seen) if seen.version.same(meta) => return delta,
            Some(seen) => seen.pos,
            None => None,
        };
        self.note_change(key, obj, &mut delta);
        delta.keys.push(key.to_string());
        let pos = match (obj.valid(), old_pos) {
            (Some(k), Some(p)) => {
                items[p] = k.clone();
                Some(p)
            }
            (Some(k), None) => {
                items.push(k.clone());
                self.keys.push(key.to_string());
                Some(items.len() - 1)
            }
            (None, Some(p)) => {
                self.remove_at(p, items);
                None
            }
            (None, None) => None,
        };
        self.index.insert(
            key.to_string(),
            Seen {
                version: Version::of(meta),
                pos,
            },
        );
        delta
    }

    /// The object with `key` in `items` (which this mirror keeps).
    pub fn get<'a>(&self, key: &str, items: &'a [K]) -> Option<&'a K> {
        items.get(self.index.get(key)?.pos?)
    }

    fn remove_at(&mut self, p: usize, items: &mut Vec<K>) {
        items.swap_remove(p);
        self.keys.swap_remove(p);
        if let Some(moved) = self.keys.get(p)
            && let Some(seen) = self.index.get_mut(moved)
        {
            seen.pos = Some(p);
        }
    }

    fn note_change(&self, key: &str, obj: &Lenient<K>, delta: &mut MirrorDelta) {
        delta.changed += 1;
        if let Some(t) = trigger_time(obj.meta()) {
            delta.trigger_times.push(t);
        }
        if let Lenient::Invalid { error, .. } = obj {
            let object = format!("{} {key}", self.kind);
            error!(%object, %error, "cannot decode; object skipped");
            delta.invalid.push((object, error.clone()));
        }
    }
}

fn trigger_time(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.annotations
        .as_ref()?
        .get(LAST_CHANGE_TRIGGER_TIME)?
        .parse()
        .ok()
}
