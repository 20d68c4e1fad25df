//! kube-rs against the test apiserver: typed CRUD through `Api`, and the runtime watcher
//! (`any_semantic`, bookmarks) through a cut stream, a compaction (410 → relist) and a
//! restart, as the agent uses it.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use serde_json::json;
use svclb_testapi::TestApiServer;

async fn client(s: &TestApiServer) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&s.kubeconfig_yaml()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn svc(name: &str) -> Service {
    serde_json::from_value(common::service(name, json!({"app": name}))).unwrap()
}

/// The next watcher item, within 10 s.
async fn next<S>(stream: &mut S) -> Result<Event<Service>, watcher::Error>
where
    S: Stream<Item = Result<Event<Service>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watcher event within 10 s")
        .expect("watcher streams forever")
}

fn name(s: &Service) -> String {
    s.metadata.name.clone().unwrap()
}

/// Reads a full relist (`Init`, `InitApply`…, `InitDone`), skipping errors before it.
async fn relist<S>(stream: &mut S) -> BTreeSet<String>
where
    S: Stream<Item = Result<Event<Service>, watcher::Error>> + Unpin,
{
    loop {
        if let Ok(Event::Init) = next(stream).await {
            break;
        }
    }
    let mut names = BTreeSet::new();
    loop {
        match next(stream).await.unwrap() {
            Event::InitApply(s) => {
                names.insert(name(&s));
            }
            Event::InitDone => return names,
            other => panic!("unexpected event during relist: {other:?}"),
        }
    }
}

/// The next Apply or Delete, skipping nothing else (errors fail the test).
async fn change<S>(stream: &mut S) -> Event<Service>
where
    S: Stream<Item = Result<Event<Service>, watcher::Error>> + Unpin,
{
    next(stream).await.expect("no watcher error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_api_crud() {
    let s = common::server();
    let api: Api<Service> = Api::namespaced(client(&s).await, "default");
    let created = api
        .create(&PostParams::default(), &svc("web"))
        .await
        .unwrap();
    assert!(
        created
            .spec
            .as_ref()
            .unwrap()
            .cluster_ip
            .as_deref()
            .unwrap()
            .starts_with("198.18.0.")
    );
    let got = api.get("web").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);

    let mut stale = got.clone();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    stale.metadata.labels = Some([("y".to_string(), "2".to_string())].into());
    match api.replace("web", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("expected 409 Conflict, got {other:?}"),
    }
    match api.create(&PostParams::default(), &svc("web")).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.reason, "AlreadyExists"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let list = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());

    let slices: Api<EndpointSlice> = Api::namespaced(client(&s).await, "default");
    let slice: EndpointSlice =
        serde_json::from_value(common::slice("web-1", "web", &["198.18.1.1"])).unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let listed = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    assert_eq!(listed.items[0].endpoints[0].addresses, ["198.18.1.1"]);

    api.delete("web", &DeleteParams::default()).await.unwrap();
    match api.get("web").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_cuts_410_and_restarts() {
    let s = common::server();
    let client = client(&s).await;
    let api: Api<Service> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &svc("a")).await.unwrap();
    let mut stream =
        watcher::watcher(api.clone(), watcher::Config::default().any_semantic()).boxed();
    assert_eq!(relist(&mut stream).await, BTreeSet::from(["a".to_string()]));

    api.create(&PostParams::default(), &svc("b")).await.unwrap();
    match change(&mut stream).await {
        Event::Apply(s) => assert_eq!(name(&s), "b"),
        other => panic!("expected Apply(b), got {other:?}"),
    }

    // A cut stream is resumed from the last version: no relist, the next change arrives.
    let before = s.stats();
    s.cut_watches();
    api.create(&PostParams::default(), &svc("c")).await.unwrap();
    match change(&mut stream).await {
        Event::Apply(s) => assert_eq!(name(&s), "c"),
        other => panic!("expected Apply(c) after a cut, got {other:?}"),
    }
    let after = s.stats();
    assert!(
        after.watches_started > before.watches_started,
        "the watcher watched again"
    );
    assert_eq!(after.lists, before.lists, "and did not relist");

    // Compaction plus a cut: the re-watch gets 410 Expired and the watcher relists.
    s.expire();
    s.cut_watches();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut saw_410 = false;
    loop {
        match next(&mut stream).await {
            Err(watcher::Error::WatchError(status)) => {
                assert_eq!(status.code, 410);
                saw_410 = true;
            }
            Ok(Event::Init) => break,
            other => panic!("expected a 410 then a relist, got {other:?}"),
        }
    }
    assert!(saw_410);
    let mut names = BTreeSet::new();
    loop {
        match next(&mut stream).await.unwrap() {
            Event::InitApply(s) => {
                names.insert(name(&s));
            }
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        names,
        BTreeSet::from(["b".to_string(), "c".to_string()]),
        "the relist reflects the delete"
    );
    assert!(s.stats().watch_expired >= 1);

    // A restart drops the connection; the watcher reconnects and sees later changes.
    s.restart(Duration::from_millis(300));
    api.create(&PostParams::default(), &svc("d")).await.unwrap();
    loop {
        match next(&mut stream).await {
            Ok(Event::Apply(s)) if name(&s) == "d" => break,
            // Errors while the server is down are retried by polling on.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher() {
    let s = common::server();
    let api: Api<Service> = Api::namespaced(client(&s).await, "default");
    api.create(&PostParams::default(), &svc("a")).await.unwrap();
    let mut stream =
        watcher::watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert_eq!(relist(&mut stream).await, BTreeSet::from(["a".to_string()]));
    api.delete("a", &DeleteParams::default()).await.unwrap();
    match change(&mut stream).await {
        Event::Delete(s) => assert_eq!(name(&s), "a"),
        other => panic!("expected Delete(a), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_across_namespaces_and_by_field() {
    use k8s_openapi::api::core::v1::Node;
    let s = common::server();
    let client = client(&s).await;
    let objects = s.objects();
    let mut other = common::service("far", json!({}));
    other["metadata"]["namespace"] = json!("kube-system");
    objects.create(&other).unwrap();
    let all: Api<Service> = Api::all(client.clone());
    let mut stream = watcher::watcher(all, watcher::Config::default().any_semantic()).boxed();
    assert_eq!(
        relist(&mut stream).await,
        BTreeSet::from(["far".to_string()])
    );
    objects.create(&common::service("near", json!({}))).unwrap();
    match change(&mut stream).await {
        Event::Apply(s) => assert_eq!(
            (name(&s).as_str(), s.metadata.namespace.as_deref()),
            ("near", Some("default"))
        ),
        other => panic!("expected Apply(near), got {other:?}"),
    }

    let node = |n: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}});
    objects.create(&node("n1")).unwrap();
    objects.create(&node("n2")).unwrap();
    let nodes: Api<Node> = Api::all(client);
    let config = watcher::Config::default()
        .any_semantic()
        .fields("metadata.name=n2");
    let mut nodes = watcher::watcher(nodes, config).boxed();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), nodes.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Event::InitApply(n) => seen.push(n.metadata.name.unwrap()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["n2"]);
    objects
        .merge_patch(
            "Node",
            None,
            "n1",
            &json!({"metadata": {"labels": {"x": "1"}}}),
        )
        .unwrap();
    objects
        .merge_patch(
            "Node",
            None,
            "n2",
            &json!({"metadata": {"labels": {"x": "2"}}}),
        )
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), nodes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Event::Apply(n) => assert_eq!(n.metadata.name.as_deref(), Some("n2")),
        other => panic!("expected Apply(n2), got {other:?}"),
    }
}
