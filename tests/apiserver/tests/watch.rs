//! Watch streams: resourceVersion semantics, bookmarks, timeouts, selectors, 410 after a
//! compaction, and the hooks that cut streams and restart the server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use svclb_testapi::Config;

#[test]
fn watch_from_version_gets_later_events_only() {
    let s = server();
    let a = s.addr();
    let first = send_json(a, "POST", SERVICES, &service("one", json!({}))).json();
    let rv = rv_of(&first);
    send_json(a, "POST", SERVICES, &service("two", json!({})));
    let mut w = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={rv}"));
    assert_eq!(w.status, 200);
    let e = w.next_object_event().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("two"))
    );

    let patched = patch(
        a,
        &format!("{SERVICES}/one"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"x": "1"}}}),
    )
    .json();
    let e = w.next_object_event().unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"], patched);

    let deleted = request_with(
        a,
        "DELETE",
        &format!("{SERVICES}/one"),
        "application/json",
        b"",
        &[],
    )
    .json();
    let e = w.next_object_event().unwrap();
    assert_eq!(e["type"], "DELETED");
    assert_eq!(rv_of(&e["object"]), rv_of(&deleted));
    assert!(rv_of(&deleted) > rv_of(&patched));

    // Events of other kinds and namespaces are not sent.
    send_json(a, "POST", SLICES, &slice("s", "two", &["198.18.1.1"]));
    let mut other = service("three", json!({}));
    other["metadata"]["namespace"] = json!("kube-system");
    send_json(a, "POST", "/api/v1/namespaces/kube-system/services", &other);
    send_json(a, "POST", SERVICES, &service("four", json!({})));
    let e = w.next_object_event().unwrap();
    assert_eq!(e["object"]["metadata"]["name"], "four");
}

#[test]
fn watch_without_version_starts_with_current_state() {
    let s = server();
    let a = s.addr();
    for n in ["a", "b"] {
        send_json(a, "POST", SERVICES, &service(n, json!({})));
    }
    for rv in ["", "&resourceVersion=0"] {
        let mut w = Watch::open(a, &format!("{SERVICES}?watch=true{rv}"));
        let got: Vec<String> = (0..2)
            .map(|_| {
                let e = w.next_object_event().unwrap();
                assert_eq!(e["type"], "ADDED");
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(got, ["a", "b"]);
    }
    // Streaming list: the initial events end with a BOOKMARK marked initial-events-end.
    let mut w = Watch::open(
        a,
        &format!(
            "{SERVICES}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
        ),
    );
    assert_eq!(w.next().unwrap()["type"], "ADDED");
    assert_eq!(w.next().unwrap()["type"], "ADDED");
    let bm = w.next().unwrap();
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(
        bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(rv_of(&bm["object"]), s.resource_version());
}

#[test]
fn bookmarks_and_timeout() {
    let s = server_with(Config {
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    });
    let a = s.addr();
    let created = send_json(a, "POST", SERVICES, &service("a", json!({}))).json();
    let start = Instant::now();
    let mut w = Watch::open(
        a,
        &format!(
            "{SERVICES}?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=1",
            rv_of(&created)
        ),
    );
    let bm = w.next().unwrap();
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(bm["object"]["kind"], "Service");
    assert_eq!(bm["object"]["apiVersion"], "v1");
    // Writes to other kinds still move the bookmark's version forward.
    let slice = send_json(a, "POST", SLICES, &slice("s", "a", &["198.18.1.1"])).json();
    let mut last = rv_of(&bm["object"]);
    while last < rv_of(&slice) {
        let e = w.next().unwrap();
        assert_eq!(e["type"], "BOOKMARK", "no Service events: {e}");
        last = rv_of(&e["object"]);
    }
    // The stream ends by itself after timeoutSeconds.
    while w.next_within(Duration::from_secs(5)).is_some() {}
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(s.stats().bookmarks >= 2);

    // Without allowWatchBookmarks there are none.
    let mut w = Watch::open(
        a,
        &format!(
            "{SERVICES}?watch=1&resourceVersion={}&timeoutSeconds=1",
            s.resource_version()
        ),
    );
    assert!(w.next_within(Duration::from_secs(5)).is_none());
}

#[test]
fn selector_changes_are_added_and_deleted() {
    let s = server();
    let a = s.addr();
    let created = send_json(a, "POST", SERVICES, &service("a", json!({"tier": "back"}))).json();
    let mut w = Watch::open(
        a,
        &format!(
            "{SERVICES}?watch=1&labelSelector=tier%3Dfront&resourceVersion={}",
            rv_of(&created)
        ),
    );
    let url = format!("{SERVICES}/a");
    patch(
        a,
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"tier": "front"}}}),
    );
    assert_eq!(w.next_object_event().unwrap()["type"], "ADDED");
    patch(
        a,
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"x": "1"}}}),
    );
    assert_eq!(w.next_object_event().unwrap()["type"], "MODIFIED");
    patch(
        a,
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"tier": "back"}}}),
    );
    assert_eq!(w.next_object_event().unwrap()["type"], "DELETED");

    // The deprecated /watch/ path with a name watches that object.
    let mut w = Watch::open(
        a,
        &format!(
            "/api/v1/watch/namespaces/default/services/a?resourceVersion={}",
            s.resource_version()
        ),
    );
    send_json(a, "POST", SERVICES, &service("b", json!({})));
    patch(
        a,
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"y": "1"}}}),
    );
    let e = w.next_object_event().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("MODIFIED"), Some("a"))
    );
}

#[test]
fn expired_history_gives_410() {
    let s = server();
    let a = s.addr();
    let old = rv_of(&send_json(a, "POST", SERVICES, &service("a", json!({}))).json());
    send_json(a, "POST", SERVICES, &service("b", json!({})));
    let floor = s.expire();
    assert_eq!(floor, s.resource_version());
    let mut w = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={old}"));
    assert_eq!(w.status, 200);
    let e = w.next().unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(w.next().is_none(), "the stream ends after the error");
    assert_eq!(s.stats().watch_expired, 1);

    // From the current version (or newer writes) it works.
    let mut w = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={floor}"));
    send_json(a, "POST", SERVICES, &service("c", json!({})));
    assert_eq!(w.next_object_event().unwrap()["type"], "ADDED");

    // The HTTP hook does the same.
    let hook = request_with(a, "POST", "/_test/expire", "application/json", b"", &[]);
    assert_eq!(hook.status, 200);
    let mut w = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={floor}"));
    assert_eq!(w.next().unwrap()["object"]["code"], 410);

    // A watch that falls behind a bounded history also gets 410.
    let small = server_with(Config {
        history: 3,
        ..Config::default()
    });
    let start = small.resource_version();
    for i in 0..5 {
        send_json(
            small.addr(),
            "POST",
            SERVICES,
            &service(&format!("s{i}"), json!({})),
        );
    }
    let mut w = Watch::open(
        small.addr(),
        &format!("{SERVICES}?watch=1&resourceVersion={start}"),
    );
    assert_eq!(w.next().unwrap()["object"]["reason"], "Expired");
}

#[test]
fn too_new_version_times_out_with_504() {
    let s = server();
    let r = get(
        s.addr(),
        &format!(
            "{SERVICES}?watch=1&resourceVersion={}",
            s.resource_version() + 100
        ),
    );
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["reason"], "Timeout");
}

#[test]
fn cut_watches_ends_streams() {
    let s = server();
    let a = s.addr();
    let rv = s.resource_version();
    let mut w1 = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={rv}"));
    let mut w2 = Watch::open(
        a,
        &format!("{SLICES}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.stats().watches_active < 2 {
        assert!(Instant::now() < deadline, "watches did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.cut_watches(), 2);
    assert!(w1.next_within(Duration::from_secs(5)).is_none());
    while let Some(e) = w2.next_within(Duration::from_secs(5)) {
        assert_eq!(e["type"], "BOOKMARK");
    }
    // New watches work after a cut; the HTTP hook cuts them too.
    let mut w3 = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={rv}"));
    send_json(a, "POST", SERVICES, &service("a", json!({})));
    assert_eq!(w3.next_object_event().unwrap()["type"], "ADDED");
    let hook = request_with(
        a,
        "POST",
        "/_test/cut-watches",
        "application/json",
        b"",
        &[],
    )
    .json();
    assert_eq!(hook["cut"], 1);
    assert!(w3.next_within(Duration::from_secs(5)).is_none());
    let stats = get(a, "/_test/stats").json();
    assert_eq!(stats["watchesCut"], 3);
    assert_eq!(stats["watchesStarted"], 3);
}

#[test]
fn restart_drops_connections_and_keeps_objects() {
    let s = server();
    let a = s.addr();
    send_json(a, "POST", SERVICES, &service("a", json!({})));
    let mut w = Watch::open(
        a,
        &format!(
            "{SERVICES}?watch=1&resourceVersion={}",
            s.resource_version()
        ),
    );
    let t = std::thread::spawn(move || w.next_within(Duration::from_secs(5)));
    s.restart(Duration::from_millis(300));
    let event = t.join().unwrap();
    assert!(event.is_none(), "the watch stream ended");
    assert_eq!(
        get(a, &format!("{SERVICES}/a")).status,
        200,
        "same address, same objects"
    );

    // Through the hook: refused while down, back afterwards.
    assert_eq!(
        request_with(
            a,
            "POST",
            "/_test/restart?downMillis=700",
            "application/json",
            b"",
            &[]
        )
        .status,
        200
    );
    std::thread::sleep(Duration::from_millis(250));
    assert!(std::net::TcpStream::connect(a).is_err(), "listener is down");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(a).is_err() {
        assert!(Instant::now() < deadline, "listener did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(a, &format!("{SERVICES}/a")).status, 200);
}

#[test]
fn expire_keeps_open_watches_but_refuses_old_versions() {
    let s = server();
    let a = s.addr();
    let rv = rv_of(&send_json(a, "POST", SERVICES, &service("a", json!({}))).json());
    let mut open = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={rv}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.stats().watches_active < 1 {
        assert!(Instant::now() < deadline, "watch did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let floor = s.expire();
    assert!(
        floor > rv,
        "even the latest version handed out is now too old"
    );
    send_json(a, "POST", SERVICES, &service("b", json!({})));
    let e = open.next_object_event().unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    let mut fresh = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={rv}"));
    assert_eq!(fresh.next().unwrap()["object"]["code"], 410);
    // A list gives a version new watches may start from.
    let list_rv: u64 = get(a, SERVICES).json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut relisted = Watch::open(a, &format!("{SERVICES}?watch=1&resourceVersion={list_rv}"));
    send_json(a, "POST", SERVICES, &service("c", json!({})));
    assert_eq!(
        relisted.next_object_event().unwrap()["object"]["metadata"]["name"],
        "c"
    );
}
