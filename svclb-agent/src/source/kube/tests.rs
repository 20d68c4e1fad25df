//! Stores → Objects, change detection and pacing, without a cluster: the stores are
//! filled through `Writer::apply_watcher_event`, as the reflectors would.
use std::time::Duration;

use k8s_openapi::{
    api::{
        core::v1::{
            Node, NodeAddress, NodeSpec, NodeStatus, Service, ServicePort, ServiceSpec, Taint,
        },
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::runtime::{
    reflector::{self, Store, store::Writer},
    watcher::Event,
};
use tokio::{sync::mpsc, time::Instant};

use super::{
    KubeOptions, KubeSource, Signal, Touch, What,
    lenient::Lenient,
    mirror::{LAST_CHANGE_TRIGGER_TIME, Mirror},
};
use crate::{metrics::Metrics, source::change::Change};

const PERIOD: Duration = Duration::from_millis(20);

fn meta(name: &str, rv: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid: Some(format!("uid-{name}")),
        resource_version: Some(rv.into()),
        ..Default::default()
    }
}

fn service(name: &str, rv: &str, ip: &str) -> Lenient<Service> {
    Lenient::Valid(Service {
        metadata: meta(name, rv),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn slice(name: &str, service: &str, rv: &str, ips: &[&str]) -> Lenient<EndpointSlice> {
    let mut m = meta(name, rv);
    m.labels = Some(
        [(
            "kubernetes.io/service-name".to_string(),
            service.to_string(),
        )]
        .into(),
    );
    Lenient::Valid(EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            port: Some(8080),
            ..Default::default()
        }]),
    })
}

fn node(name: &str, rv: &str, internal: &str, taint: Option<&str>) -> Lenient<Node> {
    Lenient::Valid(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: taint.map(|k| {
                vec![Taint {
                    key: k.into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: internal.into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.into(),
                },
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: "fd00::1".into(),
                },
            ]),
            ..Default::default()
        }),
    })
}

/// A full list, as a (re)list delivers it.
fn list<K: Clone + kube::Resource>(w: &mut Writer<K>, objs: &[K])
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    w.apply_watcher_event(&Event::Init);
    for o in objs {
        w.apply_watcher_event(&Event::InitApply(o.clone()));
    }
    w.apply_watcher_event(&Event::InitDone);
}

// ---- Lenient decoding ----

#[test]
fn one_undecodable_object_in_a_list_costs_only_itself() {
    let json = r#"[
        {"metadata": {"name": "good", "namespace": "a", "resourceVersion": "1"},
         "spec": {"clusterIP": "198.18.0.10", "ports": [{"port": 80}]}},
        {"metadata": {"name": "bad", "namespace": "a", "resourceVersion": "2"},
         "spec": {"ports": [{"port": "eighty"}]}}
    ]"#;
    let items: Vec<Lenient<Service>> = serde_json::from_str(json).unwrap();
    assert!(matches!(&items[0], Lenient::Valid(s) if s.metadata.name.as_deref() == Some("good")));
    match &items[1] {
        Lenient::Invalid { meta, error } => {
            assert_eq!(meta.name.as_deref(), Some("bad"));
            assert_eq!(meta.namespace.as_deref(), Some("a"));
            assert!(
                error.contains("eighty") || error.contains("invalid type"),
                "{error}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn an_undecodable_object_in_a_watch_event_is_an_event_not_an_error() {
    let line = r#"{"type":"MODIFIED","object":{"apiVersion":"v1","kind":"Service",
        "metadata":{"name":"bad","namespace":"a","resourceVersion":"7"},"spec":{"ports":"nope"}}}"#;
    let ev: kube::core::WatchEvent<Lenient<Service>> = serde_json::from_str(line).unwrap();
    match ev {
        kube::core::WatchEvent::Modified(Lenient::Invalid { meta, .. }) => {
            assert_eq!(meta.resource_version.as_deref(), Some("7"))
        }
        other => panic!("{other:?}"),
    }
}

// ---- Mirror ----

fn store_of<K: Clone + kube::Resource<DynamicType = ()> + 'static>(
    objs: &[K],
) -> (Store<K>, Writer<K>) {
    let (store, mut w) = reflector::store();
    list(&mut w, objs);
    (store, w)
}

fn names(items: &[Service]) -> Vec<String> {
    let mut n: Vec<String> = items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    n.sort();
    n
}

#[test]
fn mirror_follows_the_store_and_a_relist_of_unchanged_objects_changes_nothing() {
    let objs = [
        service("a", "1", "198.18.0.1"),
        service("b", "2", "198.18.0.2"),
    ];
    let (store, mut w) = store_of(&objs);
    let mut mirror = Mirror::<Service>::new("Service");
    let mut items = Vec::new();
    let d = mirror.update_all(&store.state(), &mut items);
    assert_eq!((d.changed, d.removed), (2, 0));
    assert_eq!(names(&items), ["a", "b"]);

    // A relist (new Arcs, same versions).
    list(&mut w, &objs);
    let d = mirror.update_all(&store.state(), &mut items);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(names(&items), ["a", "b"]);

    // Modify one, add one, delete one.
    w.apply_watcher_event(&Event::Apply(service("a", "5", "198.18.0.9")));
    w.apply_watcher_event(&Event::Apply(service("c", "6", "198.18.0.3")));
    w.apply_watcher_event(&Event::Delete(service("b", "7", "198.18.0.2")));
    let d = mirror.update_all(&store.state(), &mut items);
    assert_eq!((d.changed, d.removed), (2, 1));
    assert_eq!(names(&items), ["a", "c"]);
    let a = items
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("a"))
        .unwrap();
    assert_eq!(
        a.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("198.18.0.9")
    );
}

#[test]
fn mirror_sees_a_recreated_object_with_a_reused_resource_version() {
    let (store, mut w) = store_of(&[service("a", "1", "198.18.0.1")]);
    let mut mirror = Mirror::<Service>::new("Service");
    let mut items = Vec::new();
    mirror.update_all(&store.state(), &mut items);
    let Lenient::Valid(mut again) = service("a", "1", "198.18.0.7") else {
        unreachable!()
    };
    again.metadata.uid = Some("uid-a-2".into());
    list(&mut w, &[Lenient::Valid(again)]);
    let d = mirror.update_all(&store.state(), &mut items);
    assert_eq!(d.changed, 1);
    assert_eq!(
        items[0].spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("198.18.0.7")
    );
}

#[test]
fn mirror_skips_and_reports_invalid_objects_once_per_version() {
    let bad = Lenient::<Service>::Invalid {
        meta: meta("bad", "3"),
        error: "invalid type".into(),
    };
    let (store, mut w) = store_of(&[service("a", "1", "198.18.0.1"), bad.clone()]);
    let mut mirror = Mirror::<Service>::new("Service");
    let mut items = Vec::new();
    let d = mirror.update_all(&store.state(), &mut items);
    assert_eq!(names(&items), ["a"]);
    assert_eq!(d.invalid.len(), 1);
    assert_eq!(d.invalid[0].0, "Service default/bad");
    list(&mut w, &[service("a", "1", "198.18.0.1"), bad]);
    let d = mirror.update_all(&store.state(), &mut items);
    assert!(d.is_empty() && d.invalid.is_empty(), "{d:?}");
    // Fixed: it appears.
    w.apply_watcher_event(&Event::Apply(service("bad", "4", "198.18.0.4")));
    let d = mirror.update_all(&store.state(), &mut items);
    assert_eq!(d.changed, 1);
    assert_eq!(names(&items), ["a", "bad"]);
}

#[test]
fn mirror_collects_trigger_times_of_changed_objects_only() {
    let mut s = slice("s1", "web", "1", &["198.19.1.2"]);
    if let Lenient::Valid(sl) = &mut s {
        sl.metadata.annotations = Some(
            [(
                LAST_CHANGE_TRIGGER_TIME.to_string(),
                "2025-01-02T03:04:05Z".to_string(),
            )]
            .into(),
        );
    }
    let (store, mut w) = store_of(&[s.clone()]);
    let mut mirror = Mirror::<EndpointSlice>::new("EndpointSlice");
    let mut items = Vec::new();
    let d = mirror.update_all(&store.state(), &mut items);
    assert_eq!(d.trigger_times.len(), 1);
    assert_eq!(d.trigger_times[0].to_string(), "2025-01-02T03:04:05Z");
    list(&mut w, &[s]);
    assert!(
        mirror
            .update_all(&store.state(), &mut items)
            .trigger_times
            .is_empty()
    );
}

/// (name, resourceVersion) of what `items` hold, sorted.
fn versions(items: &[Service]) -> Vec<(String, String)> {
    let mut v: Vec<_> = items
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap(),
                s.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The same for the valid objects of a store.
fn store_versions(store: &Store<Lenient<Service>>) -> Vec<(String, String)> {
    let items: Vec<Service> = store
        .state()
        .iter()
        .filter_map(|o| o.valid().cloned())
        .collect();
    versions(&items)
}

#[test]
fn update_one_follows_single_events_including_moves_and_invalid_versions() {
    let (store, mut w) = store_of(&[
        service("a", "1", "198.18.0.1"),
        service("b", "2", "198.18.0.2"),
        service("c", "3", "198.18.0.3"),
    ]);
    let mut mirror = Mirror::<Service>::new("Service");
    let mut items = Vec::new();
    mirror.update_all(&store.state(), &mut items);
    let key = |n: &str| format!("default/{n}");
    let get = |n: &str| store.get(&reflector::ObjectRef::new(n).within("default"));

    // Delete the first item: the last one moves into its place.
    let first = items[0].metadata.name.clone().unwrap();
    w.apply_watcher_event(&Event::Delete(service(&first, "9", "198.18.0.9")));
    let d = mirror.update_one(&key(&first), get(&first).as_deref(), &mut items);
    assert_eq!((d.changed, d.removed), (0, 1));
    assert_eq!(versions(&items), store_versions(&store));
    // The moved one is still found where it now is.
    let moved = items[0].metadata.name.clone().unwrap();
    w.apply_watcher_event(&Event::Apply(service(&moved, "10", "198.18.0.10")));
    let d = mirror.update_one(&key(&moved), get(&moved).as_deref(), &mut items);
    assert_eq!(d.changed, 1);
    assert_eq!(versions(&items), store_versions(&store));
    // Same version again (a duplicate event): nothing.
    assert!(
        mirror
            .update_one(&key(&moved), get(&moved).as_deref(), &mut items)
            .is_empty()
    );
    // An undecodable version replaces a valid one: skipped and reported.
    let bad = Lenient::<Service>::Invalid {
        meta: meta(&moved, "11"),
        error: "bad".into(),
    };
    w.apply_watcher_event(&Event::Apply(bad));
    let d = mirror.update_one(&key(&moved), get(&moved).as_deref(), &mut items);
    assert_eq!((d.changed, d.invalid.len()), (1, 1));
    assert_eq!(versions(&items), store_versions(&store));
    // Fixed again.
    w.apply_watcher_event(&Event::Apply(service(&moved, "12", "198.18.0.12")));
    mirror.update_one(&key(&moved), get(&moved).as_deref(), &mut items);
    assert_eq!(versions(&items), store_versions(&store));
    // A relist after single updates agrees and changes nothing.
    let all: Vec<Lenient<Service>> = store.state().iter().map(|o| (**o).clone()).collect();
    list(&mut w, &all);
    assert!(mirror.update_all(&store.state(), &mut items).is_empty());
}

#[test]
fn update_one_agrees_with_the_store_over_random_event_sequences() {
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let (store, mut w) = store_of::<Lenient<Service>>(&[]);
    let mut mirror = Mirror::<Service>::new("Service");
    let mut items = Vec::new();
    mirror.update_all(&store.state(), &mut items);
    for rv in 1..2000u32 {
        let name = format!("s{}", rng.random_range(0..40));
        let ev = match rng.random_range(0..10) {
            0..=2 => Event::Delete(service(&name, &rv.to_string(), "198.18.0.1")),
            3 => Event::Apply(Lenient::Invalid {
                meta: meta(&name, &rv.to_string()),
                error: "x".into(),
            }),
            _ => Event::Apply(service(&name, &rv.to_string(), "198.18.0.1")),
        };
        w.apply_watcher_event(&ev);
        let current = store.get(&reflector::ObjectRef::new(&name).within("default"));
        mirror.update_one(&format!("default/{name}"), current.as_deref(), &mut items);
        assert_eq!(versions(&items), store_versions(&store), "after event {rv}");
    }
}

// ---- KubeSource over stores ----

struct Fixture {
    source: KubeSource,
    services: Writer<Lenient<Service>>,
    slices: Writer<Lenient<EndpointSlice>>,
    nodes: Writer<Lenient<Node>>,
    tx: mpsc::UnboundedSender<Signal>,
    metrics: Metrics,
}

fn fixture(node_name: Option<&str>) -> Fixture {
    let (svc_store, services) = reflector::store();
    let (slice_store, slices) = reflector::store();
    let (node_store, nodes) = reflector::store();
    let (tx, rx) = mpsc::unbounded_channel();
    let (metrics, _) = Metrics::new();
    let opts = KubeOptions {
        node_name: node_name.map(String::from),
        min_sync_period: PERIOD,
    };
    let source = KubeSource::with_stores(
        svc_store,
        slice_store,
        node_name.map(|n| (n.to_string(), node_store)),
        rx,
        &opts,
        metrics.clone(),
    );
    Fixture {
        source,
        services,
        slices,
        nodes,
        tx,
        metrics,
    }
}

fn touch(o: &impl kube::Resource) -> Touch {
    Touch::Object {
        namespace: o.meta().namespace.clone(),
        name: o.meta().name.clone().unwrap(),
    }
}

impl Fixture {
    fn send(&self, what: What) {
        self.tx
            .send(Signal {
                at: Instant::now(),
                what,
            })
            .unwrap();
    }

    /// What the watcher tasks send after a (re)list.
    fn relisted(&self) {
        self.send(What::Service(Touch::All));
        self.send(What::Slice(Touch::All));
        self.send(What::Node);
    }

    /// What a watcher task does on an event for one Service.
    fn service_event(&mut self, ev: Event<Lenient<Service>>) {
        self.services.apply_watcher_event(&ev);
        if let Event::Apply(o) | Event::Delete(o) = &ev {
            self.send(What::Service(touch(o)));
        }
    }

    fn slice_event(&mut self, ev: Event<Lenient<EndpointSlice>>) {
        self.slices.apply_watcher_event(&ev);
        if let Event::Apply(o) | Event::Delete(o) = &ev {
            self.send(What::Slice(touch(o)));
        }
    }

    fn node_event(&mut self, ev: Event<Lenient<Node>>) {
        self.nodes.apply_watcher_event(&ev);
        self.send(What::Node);
    }

    async fn next(&mut self) -> Change {
        tokio::time::timeout(Duration::from_secs(5), self.source.next())
            .await
            .expect("no change within 5 s")
    }

    /// Whether `next` would return within `d`.
    async fn ready_within(&mut self, d: Duration) -> Option<Change> {
        tokio::time::timeout(d, self.source.next()).await.ok()
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_before_every_store_has_listed_then_the_whole_state() {
    let mut f = fixture(Some("n1"));
    list(&mut f.services, &[service("web", "1", "198.18.0.10")]);
    list(
        &mut f.slices,
        &[slice("web-1", "web", "2", &["198.19.1.2", "198.19.2.2"])],
    );
    f.relisted();
    assert!(
        f.ready_within(Duration::from_secs(1)).await.is_none(),
        "the Node store has not listed"
    );
    assert!(!f.source.synced());
    list(&mut f.nodes, &[node("n1", "3", "198.18.100.1", None)]);
    let c = f.next().await;
    assert_eq!(
        c,
        Change::Changed {
            noticed: None,
            triggered: vec![]
        }
    );
    assert!(f.source.synced());
    assert_eq!(f.source.objects().services.len(), 1);
    assert_eq!(f.source.objects().slices.len(), 1);
    let node = f.source.node().unwrap();
    assert_eq!(
        node.addresses,
        ["198.18.100.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(node.eligible);
}

#[tokio::test(start_paused = true)]
async fn without_a_node_name_no_node_is_waited_for() {
    let mut f = fixture(None);
    list(&mut f.services, &[]);
    list(&mut f.slices, &[]);
    assert!(matches!(f.next().await, Change::Changed { .. }));
    assert!(f.source.node().is_none());
}

#[tokio::test(start_paused = true)]
async fn changes_are_reported_relists_of_the_same_objects_are_not() {
    let mut f = fixture(None);
    let web = service("web", "1", "198.18.0.10");
    let sl = slice("web-1", "web", "2", &["198.19.1.2"]);
    list(&mut f.services, std::slice::from_ref(&web));
    list(&mut f.slices, std::slice::from_ref(&sl));
    f.next().await;

    // A relist after a 410 or an apiserver restart: same versions.
    list(&mut f.services, std::slice::from_ref(&web));
    list(&mut f.slices, std::slice::from_ref(&sl));
    f.relisted();
    assert_eq!(f.next().await, Change::Unchanged);

    // A real change, later.
    tokio::time::advance(Duration::from_secs(1)).await;
    let sent = Instant::now();
    f.slice_event(Event::Apply(slice(
        "web-1",
        "web",
        "3",
        &["198.19.1.2", "198.19.3.2"],
    )));
    match f.next().await {
        Change::Changed { noticed, .. } => assert_eq!(noticed, Some(sent)),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.source.objects().slices[0].endpoints.len(), 2);

    // Deleted.
    f.service_event(Event::Delete(web));
    assert!(matches!(f.next().await, Change::Changed { .. }));
    assert!(f.source.objects().services.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_burst_within_the_period_is_one_change_and_an_isolated_change_is_not_delayed() {
    let mut f = fixture(None);
    list(&mut f.services, &[]);
    list(&mut f.slices, &[]);
    f.next().await;
    tokio::time::advance(Duration::from_secs(1)).await;

    // Isolated change: no debounce delay.
    let t0 = Instant::now();
    f.service_event(Event::Apply(service("a", "1", "198.18.0.1")));
    assert!(matches!(f.next().await, Change::Changed { .. }));
    assert_eq!(Instant::now(), t0, "applied without waiting");

    // Three more right after: batched into one, at the end of the period.
    for (i, name) in ["b", "c", "d"].iter().enumerate() {
        f.service_event(Event::Apply(service(
            name,
            &format!("{}", i + 2),
            "198.18.0.2",
        )));
    }
    assert!(matches!(f.next().await, Change::Changed { .. }));
    assert_eq!(Instant::now(), t0 + PERIOD);
    assert_eq!(f.source.objects().services.len(), 4);
    assert!(
        f.ready_within(Duration::from_secs(1)).await.is_none(),
        "nothing left over"
    );
}

#[tokio::test(start_paused = true)]
async fn node_address_and_eligibility_changes_are_changes_status_churn_is_not() {
    let mut f = fixture(Some("n1"));
    list(&mut f.services, &[]);
    list(&mut f.slices, &[]);
    list(&mut f.nodes, &[node("n1", "1", "198.18.100.1", None)]);
    f.next().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    // A heartbeat-like update: new resourceVersion, same addresses.
    f.node_event(Event::Apply(node("n1", "2", "198.18.100.1", None)));
    assert_eq!(f.next().await, Change::Unchanged);
    tokio::time::advance(Duration::from_secs(1)).await;
    f.node_event(Event::Apply(node(
        "n1",
        "3",
        "198.18.100.1",
        Some("ToBeDeletedByClusterAutoscaler"),
    )));
    assert!(matches!(f.next().await, Change::Changed { .. }));
    assert!(!f.source.node().unwrap().eligible);
    tokio::time::advance(Duration::from_secs(1)).await;
    f.node_event(Event::Apply(node("n1", "4", "198.18.100.7", None)));
    assert!(matches!(f.next().await, Change::Changed { .. }));
    assert_eq!(
        f.source.node().unwrap().addresses,
        ["198.18.100.7".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    // Gone: back to interface addresses.
    tokio::time::advance(Duration::from_secs(1)).await;
    f.node_event(Event::Delete(node("n1", "5", "198.18.100.7", None)));
    assert!(matches!(f.next().await, Change::Changed { .. }));
    assert!(f.source.node().is_none());
}

#[tokio::test(start_paused = true)]
async fn undecodable_objects_are_counted_and_skipped() {
    let mut f = fixture(None);
    let bad = Lenient::<EndpointSlice>::Invalid {
        meta: meta("bad", "9"),
        error: "missing field `addressType`".into(),
    };
    list(&mut f.services, &[service("web", "1", "198.18.0.10")]);
    list(
        &mut f.slices,
        &[bad, slice("web-1", "web", "2", &["198.19.1.2"])],
    );
    f.next().await;
    assert_eq!(f.source.objects().slices.len(), 1);
    let text = crate::metrics::encode(&{
        // The fixture's metrics share values with a registry made for them here.
        let mut r = prometheus_client::registry::Registry::default();
        r.register("svclb_object_errors", "", f.metrics.object_errors.clone());
        r
    });
    assert!(
        text.contains("svclb_object_errors_total{kind=\"decode\"} 1"),
        "{text}"
    );
}
