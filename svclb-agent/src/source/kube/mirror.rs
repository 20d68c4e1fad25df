//! A reflector store's content as the plain `Vec<K>` the planner reads, kept up to
//! date incrementally: objects whose uid and resourceVersion did not change are moved
//! over from the previous snapshot instead of cloned, and the update says whether
//! anything changed at all, so that a relist of unchanged objects costs no planning.
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

/// Remembers which version of each object the planner's `Vec<K>` holds.
#[derive(Debug)]
pub struct Mirror<K> {
    kind: &'static str,
    index: HashMap<String, Seen>,
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

/// What one [`Mirror::update`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MirrorDelta {
    /// New or modified objects (valid or not).
    pub changed: usize,
    pub removed: usize,
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
}

impl<K: Resource + Clone + Default> Mirror<K> {
    /// `kind` names objects in log lines ("Service").
    pub fn new(kind: &'static str) -> Self {
        Mirror {
            kind,
            index: HashMap::new(),
            _kind: std::marker::PhantomData,
        }
    }

    /// Makes `items` hold the valid objects of `state` (a store's content), in no
    /// particular order. `items` must be what the previous update left (empty the
    /// first time): unchanged objects are taken from it.
    pub fn update(&mut self, state: &[Arc<Lenient<K>>], items: &mut Vec<K>) -> MirrorDelta {
        let mut old_items = std::mem::take(items);
        let mut delta = MirrorDelta::default();
        items.reserve(state.len());
        let mut index = HashMap::with_capacity(state.len());
        for obj in state {
            let meta = obj.meta();
            let key = objects::key(meta);
            let kept = match self.index.remove(&key) {
                Some(seen) if seen.version.same(meta) => match seen.pos {
                    None => Some(None),
                    Some(p) => old_items.get_mut(p).map(|k| {
                        items.push(std::mem::take(k));
                        Some(items.len() - 1)
                    }),
                },
                _ => None,
            };
            let pos = match kept {
                Some(pos) => pos,
                None => {
                    delta.changed += 1;
                    if let Some(t) = trigger_time(meta) {
                        delta.trigger_times.push(t);
                    }
                    match &**obj {
                        Lenient::Valid(k) => {
                            items.push(k.clone());
                            Some(items.len() - 1)
                        }
                        Lenient::Invalid { error, .. } => {
                            let object = format!("{} {key}", self.kind);
                            error!(%object, %error, "cannot decode; object skipped");
                            delta.invalid.push((object, error.clone()));
                            None
                        }
                    }
                }
            };
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
        delta
    }
}

fn trigger_time(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.annotations
        .as_ref()?
        .get(LAST_CHANGE_TRIGGER_TIME)?
        .parse()
        .ok()
}
