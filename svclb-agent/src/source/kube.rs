//! The apiserver as a source: reflectors over Services, EndpointSlices and the
//! agent's own Node, read as a whole (level-based) whenever they change.
//!
//! Each resource has a watcher task (`watcher(..).default_backoff()`, so an
//! unreachable apiserver is retried with backoff, a cut stream resumes, and 410 Gone
//! relists) that feeds a reflector store and signals every change. [`KubeSource::next`]
//! waits until every store has listed once, then paces changes ([`pace::Pacer`]) and
//! brings [`Objects`] up to the stores: only the objects that events touched, or
//! everything after a relist, where objects whose uid and resourceVersion did not
//! change are kept as they are. A relist or resumed watch that brings nothing new thus
//! reports [`Change::Unchanged`] without planning.
use std::{collections::HashSet, fmt::Debug, time::Duration};

use futures::StreamExt as _;
use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt as _,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tracing::{debug, info, warn};

use super::{Objects, change::Change};
use crate::metrics::Metrics;
use crate::plan::{Lookup, Touched as PlanTouched};

pub mod client;
pub mod lenient;
pub mod mirror;
pub mod node;
pub mod pace;

use self::{
    lenient::Lenient,
    mirror::{Mirror, MirrorDelta},
    node::NodeView,
    pace::Pacer,
};

#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// This node's name: its Node object is watched.
    pub node_name: Option<String>,
    /// Changes within this long of the last reconcile wait for the next one.
    pub min_sync_period: Duration,
}

/// A change a watcher task applied to its store: when it arrived and what it touched.
#[derive(Clone, Debug)]
pub struct Signal {
    pub at: Instant,
    pub what: What,
}

#[derive(Clone, Debug)]
pub enum What {
    Service(Touch),
    Slice(Touch),
    Node,
}

#[derive(Clone, Debug)]
pub enum Touch {
    /// One object was applied or deleted.
    Object {
        namespace: Option<String>,
        name: String,
    },
    /// The store was (re)listed: anything may have changed.
    All,
}

/// What of one kind must be re-read from its store.
#[derive(Debug, Default)]
enum Touched {
    #[default]
    Nothing,
    Objects(HashSet<(Option<String>, String)>),
    All,
}

impl Touched {
    fn add(&mut self, touch: Touch) {
        match (touch, &mut *self) {
            (_, Touched::All) => {}
            (Touch::All, _) => *self = Touched::All,
            (Touch::Object { namespace, name }, Touched::Objects(set)) => {
                set.insert((namespace, name));
            }
            (Touch::Object { namespace, name }, Touched::Nothing) => {
                *self = Touched::Objects(HashSet::from([(namespace, name)]));
            }
        }
    }
}

pub struct KubeSource {
    services: Store<Lenient<Service>>,
    slices: Store<Lenient<EndpointSlice>>,
    nodes: Option<(String, Store<Lenient<Node>>)>,
    changes: mpsc::UnboundedReceiver<Signal>,
    touched_services: Touched,
    touched_slices: Touched,
    tasks: Vec<JoinHandle<()>>,
    metrics: Metrics,
    pacer: Pacer,
    synced: bool,
    service_mirror: Mirror<Service>,
    slice_mirror: Mirror<EndpointSlice>,
    objects: Objects,
    node: Option<NodeView>,
    /// What the last [`KubeSource::next`] change covered; None after a (re)list or a
    /// Node change, when every object counts as touched.
    touched: Option<PlanTouched>,
}

impl KubeSource {
    /// Starts the watches (all namespaces). Needs a tokio runtime.
    pub fn start(client: Client, opts: KubeOptions, metrics: Metrics) -> Self {
        let (tx, changes) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let config = watcher::Config::default().any_semantic();
        let services = spawn_watch::<Service>(
            Api::all(client.clone()),
            config.clone(),
            "services",
            What::Service,
            &tx,
            &metrics,
            &mut tasks,
        );
        let slices = spawn_watch::<EndpointSlice>(
            Api::all(client.clone()),
            config.clone(),
            "endpointslices",
            What::Slice,
            &tx,
            &metrics,
            &mut tasks,
        );
        let nodes = opts.node_name.clone().map(|name| {
            let store = spawn_watch::<Node>(
                Api::all(client),
                config.fields(&format!("metadata.name={name}")),
                "nodes",
                |_| What::Node,
                &tx,
                &metrics,
                &mut tasks,
            );
            (name, store)
        });
        let mut source = KubeSource::with_stores(services, slices, nodes, changes, &opts, metrics);
        source.tasks = tasks;
        source
    }

    /// A source over stores that something else fills (the watcher tasks, or tests
    /// through `Writer::apply_watcher_event`); `changes` carries each change's arrival.
    pub fn with_stores(
        services: Store<Lenient<Service>>,
        slices: Store<Lenient<EndpointSlice>>,
        nodes: Option<(String, Store<Lenient<Node>>)>,
        changes: mpsc::UnboundedReceiver<Signal>,
        opts: &KubeOptions,
        metrics: Metrics,
    ) -> Self {
        KubeSource {
            services,
            slices,
            nodes,
            changes,
            touched_services: Touched::All,
            touched_slices: Touched::All,
            tasks: Vec::new(),
            metrics,
            pacer: Pacer::new(opts.min_sync_period),
            synced: false,
            service_mirror: Mirror::new("Service"),
            slice_mirror: Mirror::new("EndpointSlice"),
            objects: Objects::default(),
            node: None,
            touched: None,
        }
    }

    /// Whether every store has been listed once.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The objects as of the last [`Change`].
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The agent's Node as of the last [`Change`], when it exists.
    pub fn node(&self) -> Option<&NodeView> {
        self.node.as_ref()
    }

    /// The objects the last change covered, when known object by object.
    pub fn touched(&self) -> Option<&PlanTouched> {
        self.touched.as_ref()
    }

    /// The next change. The first one is the initial state, once every store has
    /// listed. Cancel-safe: progress is kept in `self`.
    pub async fn next(&mut self) -> Change {
        if !self.synced {
            self.wait_synced().await;
            self.synced = true;
            self.pacer.run(Instant::now());
            let _ = self.read_stores();
            info!(
                services = self.objects.services.len(),
                endpoint_slices = self.objects.slices.len(),
                node = ?self.node,
                "initial list done"
            );
            return Change::Changed {
                noticed: None,
                triggered: Vec::new(),
            };
        }
        loop {
            match self.pacer.due() {
                None => match self.changes.recv().await {
                    Some(signal) => self.note(signal),
                    None => std::future::pending().await,
                },
                Some(due) => {
                    tokio::select! {
                        signal = self.changes.recv() => if let Some(signal) = signal {
                            self.note(signal);
                        },
                        _ = tokio::time::sleep_until(due) => {
                            while let Ok(signal) = self.changes.try_recv() {
                                self.note(signal);
                            }
                            let noticed = self.pacer.run(Instant::now());
                            return match self.read_stores() {
                                Some(triggered) => Change::Changed { noticed, triggered },
                                None => Change::Unchanged,
                            };
                        }
                    }
                }
            }
        }
    }

    async fn wait_synced(&mut self) {
        // Errors only when a writer is gone, which the watcher tasks never drop.
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        if let Some((_, nodes)) = &self.nodes {
            let _ = nodes.wait_until_ready().await;
        }
        // Changes signalled while listing are in the state read next (all of it).
        while self.changes.try_recv().is_ok() {}
        self.touched_services = Touched::All;
        self.touched_slices = Touched::All;
    }

    fn note(&mut self, signal: Signal) {
        self.pacer.note_change(signal.at);
        match signal.what {
            What::Service(t) => self.touched_services.add(t),
            What::Slice(t) => self.touched_slices.add(t),
            // Read whole on every reconcile: one small object.
            What::Node => {}
        }
    }

    /// Re-reads the stores; `None` when nothing changed, else the changed objects'
    /// own change times.
    fn read_stores(&mut self) -> Option<Vec<k8s_openapi::jiff::Timestamp>> {
        let all = matches!(self.touched_services, Touched::All)
            || matches!(self.touched_slices, Touched::All);
        let services = read_touched(
            &mut self.service_mirror,
            &self.services,
            std::mem::take(&mut self.touched_services),
            &mut self.objects.services,
        );
        let slices = read_touched(
            &mut self.slice_mirror,
            &self.slices,
            std::mem::take(&mut self.touched_slices),
            &mut self.objects.slices,
        );
        for d in [&services, &slices] {
            for _ in &d.invalid {
                self.metrics.object_error("decode");
            }
        }
        let node = self.read_node();
        let node_changed = node != self.node;
        if node_changed {
            debug!(?node, "own Node changed");
            self.node = node;
        }
        log_delta("Service", &services);
        log_delta("EndpointSlice", &slices);
        if services.is_empty() && slices.is_empty() && !node_changed {
            return None;
        }
        self.touched = (!all && !node_changed).then_some(PlanTouched {
            services: services.keys,
            slices: slices.keys,
        });
        let mut triggered = services.trigger_times;
        triggered.extend(slices.trigger_times);
        Some(triggered)
    }

    fn read_node(&mut self) -> Option<NodeView> {
        let (name, store) = self.nodes.as_ref()?;
        let found = store.find(|n| n.meta().name.as_deref() == Some(name.as_str()))?;
        match &*found {
            Lenient::Valid(node) => Some(NodeView::of(node)),
            Lenient::Invalid { error, .. } => {
                warn!(node = %name, %error, "cannot decode own Node; using interface addresses");
                None
            }
        }
    }
}

impl Lookup for KubeSource {
    fn service(&self, key: &str) -> Option<&Service> {
        self.service_mirror.get(key, &self.objects.services)
    }
    fn slice(&self, key: &str) -> Option<&EndpointSlice> {
        self.slice_mirror.get(key, &self.objects.slices)
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Brings `items` up to the store for what was touched.
fn read_touched<K>(
    mirror: &mut Mirror<K>,
    store: &Store<Lenient<K>>,
    touched: Touched,
    items: &mut Vec<K>,
) -> MirrorDelta
where
    K: Resource<DynamicType = ()> + Clone,
{
    match touched {
        Touched::Nothing => MirrorDelta::default(),
        Touched::All => mirror.update_all(&store.state(), items),
        Touched::Objects(set) => {
            let mut delta = MirrorDelta::default();
            for (namespace, name) in set {
                let key = format!(
                    "{}/{name}",
                    namespace
                        .as_deref()
                        .filter(|n| !n.is_empty())
                        .unwrap_or("default")
                );
                let mut r = ObjectRef::new(&name);
                if let Some(ns) = &namespace {
                    r = r.within(ns);
                }
                let current = store.get(&r);
                delta.add(mirror.update_one(&key, current.as_deref(), items));
            }
            delta
        }
    }
}

fn log_delta(kind: &str, d: &MirrorDelta) {
    if !d.is_empty() {
        debug!(
            kind,
            changed = d.changed,
            removed = d.removed,
            "store changes"
        );
    }
}

/// Spawns `reflector(watcher)` for `K` and returns its store. Every applied change
/// sends its arrival time on `tx`; errors are logged and counted (the watcher retries
/// them itself with backoff).
fn spawn_watch<K>(
    api: Api<Lenient<K>>,
    config: watcher::Config,
    resource: &'static str,
    what: fn(Touch) -> What,
    tx: &mpsc::UnboundedSender<Signal>,
    metrics: &Metrics,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<Lenient<K>>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let tx = tx.clone();
    let metrics = metrics.clone();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => debug!(resource, "listing"),
                Ok(watcher::Event::InitApply(_)) => {}
                Ok(ev) => {
                    if failing {
                        info!(resource, "watch recovered");
                        failing = false;
                    }
                    let touch = match &ev {
                        watcher::Event::Apply(o) | watcher::Event::Delete(o) => Touch::Object {
                            namespace: o.meta().namespace.clone(),
                            name: o.meta().name.clone().unwrap_or_default(),
                        },
                        _ => {
                            debug!(resource, "list done");
                            Touch::All
                        }
                    };
                    let signal = Signal {
                        at: Instant::now(),
                        what: what(touch),
                    };
                    // The receiver lives as long as the source, which aborts us.
                    let _ = tx.send(signal);
                }
                Err(e) => {
                    metrics.watch_error(resource);
                    warn!(resource, error = %e, "list/watch failed; retrying with backoff");
                    failing = true;
                }
            }
        }
    }));
    store
}

#[cfg(test)]
mod tests;
