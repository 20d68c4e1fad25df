//! Create / get / list / replace / patch / delete over HTTP, with the real apiserver's
//! status codes, stamping, defaulting, allocation, status subresource and pagination.

mod common;

use std::net::Ipv4Addr;

use common::*;
use serde_json::json;

#[test]
fn create_stamps_defaults_and_allocates() {
    let s = server();
    let r = send_json(
        s.addr(),
        "POST",
        SERVICES,
        &service("web", json!({"app": "web"})),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let svc = r.json();
    let meta = &svc["metadata"];
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(rv_of(&svc) > 0);
    let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        ip.octets()[..3],
        [198, 18, 0],
        "allocated from 198.18.0.0/24"
    );
    assert_eq!(svc["spec"]["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none());

    // A NodePort Service gets node ports from 30000-32767, and distinct IPs per Service.
    let mut np = service("np", json!({}));
    np["spec"]["type"] = json!("NodePort");
    let np = send_json(s.addr(), "POST", SERVICES, &np).json();
    let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    assert_ne!(np["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
    assert!(rv_of(&np) > rv_of(&svc), "versions increase");

    let got = get(s.addr(), &format!("{SERVICES}/web"));
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), svc);
}

#[test]
fn errors_are_status_objects_with_reason_and_code() {
    let s = server();
    let a = s.addr();
    assert_eq!(
        send_json(a, "POST", SERVICES, &service("web", json!({}))).status,
        201
    );

    let dup = send_json(a, "POST", SERVICES, &service("web", json!({})));
    assert_eq!(dup.status, 409);
    let st = dup.json();
    assert_eq!(
        (
            st["kind"].as_str(),
            st["reason"].as_str(),
            st["code"].as_u64()
        ),
        (Some("Status"), Some("AlreadyExists"), Some(409))
    );
    assert_eq!(st["details"], json!({"name": "web", "kind": "services"}));

    let missing = get(a, &format!("{SERVICES}/nope"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["reason"], "NotFound");
    assert_eq!(missing.json()["message"], "services \"nope\" not found");

    let missing_slice = get(a, &format!("{SLICES}/nope")).json();
    assert_eq!(
        missing_slice["message"],
        "endpointslices.discovery.k8s.io \"nope\" not found"
    );
    assert_eq!(missing_slice["details"]["group"], "discovery.k8s.io");

    let mut bad = service("bad", json!({}));
    bad["spec"]["ports"][0]["port"] = json!(70000);
    let invalid = send_json(a, "POST", SERVICES, &bad);
    assert_eq!(invalid.status, 422);
    let st = invalid.json();
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "spec.ports[0].port");
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueInvalid");

    let not_json = request_with(a, "POST", SERVICES, "application/json", b"{nope", &[]);
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.json()["reason"], "BadRequest");

    let wrong_kind = send_json(a, "POST", SLICES, &service("x", json!({})));
    assert_eq!(wrong_kind.status, 400);

    let mut elsewhere = service("x", json!({}));
    // A body namespace that differs from the URL's is a 400; without one the URL decides.
    assert_eq!(
        send_json(a, "POST", "/api/v1/namespaces/nowhere/services", &elsewhere).status,
        400
    );
    elsewhere["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let no_ns = send_json(a, "POST", "/api/v1/namespaces/nowhere/services", &elsewhere);
    assert_eq!(no_ns.status, 404);
    assert_eq!(no_ns.json()["details"]["kind"], "namespaces");

    let unknown_path = get(a, "/api/v1/namespaces/default/pods");
    assert_eq!(unknown_path.status, 404);
}

#[test]
fn field_validation_strict_warn_ignore() {
    let s = server();
    let mut svc = service("web", json!({}));
    svc["spec"]["bogus"] = json!(1);
    let strict = send_json(
        s.addr(),
        "POST",
        &format!("{SERVICES}?fieldValidation=Strict"),
        &svc,
    );
    assert_eq!(strict.status, 400);
    assert_eq!(
        strict.json()["message"],
        "strict decoding error: unknown field \"spec.bogus\""
    );

    let warn = send_json(s.addr(), "POST", SERVICES, &svc);
    assert_eq!(warn.status, 201);
    assert_eq!(
        warn.headers_named("Warning"),
        vec!["299 - \"unknown field \\\"spec.bogus\\\"\""]
    );
    assert!(
        warn.json()["spec"].get("bogus").is_none(),
        "unknown fields are dropped"
    );

    let mut svc2 = service("web2", json!({}));
    svc2["spec"]["bogus"] = json!(1);
    let ignore = send_json(
        s.addr(),
        "POST",
        &format!("{SERVICES}?fieldValidation=Ignore"),
        &svc2,
    );
    assert_eq!(ignore.status, 201);
    assert!(ignore.header("Warning").is_none());
}

#[test]
fn replace_with_optimistic_concurrency() {
    let s = server();
    let a = s.addr();
    let mut np = service("web", json!({}));
    np["spec"]["type"] = json!("NodePort");
    let created = send_json(a, "POST", SERVICES, &np).json();
    let node_port = created["spec"]["ports"][0]["nodePort"].clone();
    let url = format!("{SERVICES}/web");

    // A replace with the current version succeeds; unset allocated values are kept.
    let mut next = np.clone();
    next["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    next["metadata"]["labels"] = json!({"v": "2"});
    let replaced = send_json(a, "PUT", &url, &next);
    assert_eq!(replaced.status, 200);
    let replaced = replaced.json();
    assert_eq!(replaced["spec"]["clusterIP"], created["spec"]["clusterIP"]);
    assert_eq!(replaced["spec"]["ports"][0]["nodePort"], node_port);
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
    assert!(rv_of(&replaced) > rv_of(&created));

    // The old version is now stale: 409 Conflict.
    let stale = send_json(a, "PUT", &url, &next);
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["reason"], "Conflict");

    // Without a version the replace is unconditional.
    let mut free = np.clone();
    free["metadata"]["labels"] = json!({"v": "3"});
    assert_eq!(send_json(a, "PUT", &url, &free).status, 200);

    // A replace that changes nothing keeps the version (no write, no event).
    let current = get(a, &url).json();
    let same = send_json(a, "PUT", &url, &current).json();
    assert_eq!(rv_of(&same), rv_of(&current));

    // The cluster IP may not change.
    let mut moved = current.clone();
    moved["spec"]["clusterIP"] = json!("198.18.0.250");
    moved["spec"]["clusterIPs"] = json!(["198.18.0.250"]);
    assert_eq!(send_json(a, "PUT", &url, &moved).status, 422);

    // Name in the body must match the URL; replace of a missing Service is 404.
    assert_eq!(
        send_json(a, "PUT", &format!("{SERVICES}/other"), &np).status,
        400
    );
    assert_eq!(
        send_json(
            a,
            "PUT",
            &format!("{SERVICES}/other"),
            &service("other", json!({}))
        )
        .status,
        404
    );

    // Endpoints are created by PUT, as in the real apiserver.
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "198.18.1.1"}], "ports": [{"port": 80}]}]});
    let put = send_json(a, "PUT", "/api/v1/namespaces/default/endpoints/web", &ep);
    assert_eq!(put.status, 201);
    assert_eq!(put.json()["subsets"][0]["ports"][0]["protocol"], "TCP");
}

#[test]
fn explicit_cluster_ips_and_node_ports_are_exclusive() {
    let s = server();
    let a = s.addr();
    let mut one = service("one", json!({}));
    one["spec"]["type"] = json!("NodePort");
    one["spec"]["clusterIP"] = json!("198.19.0.10");
    one["spec"]["ports"][0]["nodePort"] = json!(30080);
    assert_eq!(send_json(a, "POST", SERVICES, &one).status, 201);
    let mut two = one.clone();
    two["metadata"]["name"] = json!("two");
    let r = send_json(a, "POST", SERVICES, &two);
    assert_eq!(r.status, 422);
    let causes = r.json()["details"]["causes"].clone();
    assert_eq!(causes.as_array().unwrap().len(), 2, "{causes}");
    // After deleting the first, its IP and port are free again.
    assert_eq!(
        request_with(
            a,
            "DELETE",
            &format!("{SERVICES}/one"),
            "application/json",
            b"",
            &[]
        )
        .status,
        200
    );
    assert_eq!(send_json(a, "POST", SERVICES, &two).status, 201);
    // nodePort on a ClusterIP Service is refused.
    let mut cip = service("cip", json!({}));
    cip["spec"]["ports"][0]["nodePort"] = json!(30081);
    assert_eq!(send_json(a, "POST", SERVICES, &cip).status, 422);
}

#[test]
fn status_subresource_is_separate_from_spec() {
    let s = server();
    let a = s.addr();
    let mut lb = service("lb", json!({}));
    lb["spec"]["type"] = json!("LoadBalancer");
    lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.18.9.9"}]}});
    let created = send_json(a, "POST", SERVICES, &lb).json();
    assert_eq!(
        created["status"],
        json!({"loadBalancer": {}}),
        "create clears status"
    );

    let patched = patch(
        a,
        &format!("{SERVICES}/lb/status"),
        "application/merge-patch+json",
        &json!({
            "spec": {"sessionAffinity": "ClientIP"},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.9.9"}]}},
        }),
    );
    assert_eq!(patched.status, 200);
    let patched = patched.json();
    assert_eq!(
        patched["status"]["loadBalancer"]["ingress"][0]["ip"],
        "198.18.9.9"
    );
    assert_eq!(
        patched["spec"]["sessionAffinity"], "None",
        "status writes ignore spec"
    );

    // A main-resource write keeps the status.
    let mut main = patched.clone();
    main["status"] = json!({"loadBalancer": {}});
    main["metadata"]["labels"] = json!({"x": "y"});
    let replaced = send_json(a, "PUT", &format!("{SERVICES}/lb"), &main).json();
    assert_eq!(
        replaced["status"]["loadBalancer"]["ingress"][0]["ip"],
        "198.18.9.9"
    );

    // PUT on /status with a bad address is 422.
    let mut bad = replaced.clone();
    bad["status"]["loadBalancer"]["ingress"][0]["ip"] = json!("not-an-ip");
    assert_eq!(
        send_json(a, "PUT", &format!("{SERVICES}/lb/status"), &bad).status,
        422
    );
    assert_eq!(
        get(a, &format!("{SERVICES}/lb/status")).json()["status"],
        replaced["status"]
    );
    // Slices have no status subresource.
    assert_eq!(get(a, &format!("{SLICES}/x/status")).status, 404);
}

#[test]
fn merge_json_and_strategic_patches() {
    let s = server();
    let a = s.addr();
    let mut svc = service("web", json!({"a": "1"}));
    svc["spec"]["ports"] = json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]);
    let created = send_json(a, "POST", SERVICES, &svc).json();
    let url = format!("{SERVICES}/web");

    let merged = patch(
        a,
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"a": null, "b": "2"}}}),
    );
    assert_eq!(merged.status, 200);
    let merged = merged.json();
    assert_eq!(merged["metadata"]["labels"], json!({"b": "2"}));
    assert!(rv_of(&merged) > rv_of(&created));

    // Strategic: spec.ports merge by port; a merge patch would have replaced the list.
    let smp = patch(
        a,
        &url,
        "application/strategic-merge-patch+json",
        &json!({"spec": {"ports": [{"port": 443, "name": "tls"}]}}),
    )
    .json();
    let names: Vec<&str> = smp["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "tls"]);
    let smp = patch(
        a,
        &url,
        "application/strategic-merge-patch+json",
        &json!({"spec": {"ports": [{"port": 80, "$patch": "delete"}]}}),
    )
    .json();
    assert_eq!(smp["spec"]["ports"].as_array().unwrap().len(), 1);

    let jp = patch(
        a,
        &url,
        "application/json-patch+json",
        &json!([{"op": "replace", "path": "/spec/sessionAffinity", "value": "ClientIP"}]),
    );
    assert_eq!(jp.status, 200);
    assert_eq!(jp.json()["spec"]["sessionAffinity"], "ClientIP");

    // A patch carrying a stale resourceVersion is a precondition: 409.
    let stale = patch(
        a,
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"c": "3"}}}),
    );
    assert_eq!(stale.status, 409);
    // Invalid results are refused; unknown patch types are 415; missing objects 404.
    assert_eq!(
        patch(
            a,
            &url,
            "application/merge-patch+json",
            &json!({"spec": {"type": "Bogus"}})
        )
        .status,
        422
    );
    assert_eq!(patch(a, &url, "text/plain", &json!({})).status, 415);
    assert_eq!(
        patch(
            a,
            &format!("{SERVICES}/nope"),
            "application/merge-patch+json",
            &json!({})
        )
        .status,
        404
    );
}

#[test]
fn delete_dry_run_preconditions_and_collections() {
    let s = server();
    let a = s.addr();
    for (n, tier) in [("a", "front"), ("b", "front"), ("c", "back")] {
        assert_eq!(
            send_json(a, "POST", SERVICES, &service(n, json!({"tier": tier}))).status,
            201
        );
    }
    // dryRun stores nothing.
    assert_eq!(
        send_json(
            a,
            "POST",
            &format!("{SERVICES}?dryRun=All"),
            &service("d", json!({}))
        )
        .status,
        201
    );
    assert_eq!(get(a, &format!("{SERVICES}/d")).status, 404);
    assert_eq!(
        request_with(
            a,
            "DELETE",
            &format!("{SERVICES}/a?dryRun=All"),
            "application/json",
            b"",
            &[]
        )
        .status,
        200
    );
    assert_eq!(get(a, &format!("{SERVICES}/a")).status, 200);

    // A delete with a wrong resourceVersion precondition is a conflict.
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": "1"}});
    let r = request_with(
        a,
        "DELETE",
        &format!("{SERVICES}/a"),
        "application/json",
        body.to_string().as_bytes(),
        &[],
    );
    assert_eq!(r.status, 409);

    let before = rv_of(&get(a, &format!("{SERVICES}/a")).json());
    let deleted = request_with(
        a,
        "DELETE",
        &format!("{SERVICES}/a"),
        "application/json",
        b"",
        &[],
    );
    assert_eq!(deleted.status, 200);
    assert!(
        rv_of(&deleted.json()) > before,
        "the deleted object carries the delete's version"
    );
    assert_eq!(
        request_with(
            a,
            "DELETE",
            &format!("{SERVICES}/a"),
            "application/json",
            b"",
            &[]
        )
        .status,
        404
    );

    let coll = request_with(
        a,
        "DELETE",
        &format!("{SERVICES}?labelSelector=tier%3Dfront"),
        "application/json",
        b"",
        &[],
    );
    assert_eq!(coll.status, 200);
    assert_eq!(names(&coll.json()), ["b"]);
    assert_eq!(names(&get(a, SERVICES).json()), ["c"]);

    // Deleting a namespace deletes what is in it.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    assert_eq!(send_json(a, "POST", "/api/v1/namespaces", &ns).status, 201);
    let mut svc = service("x", json!({}));
    svc["metadata"]["namespace"] = json!("team");
    assert_eq!(
        send_json(a, "POST", "/api/v1/namespaces/team/services", &svc).status,
        201
    );
    assert_eq!(
        request_with(
            a,
            "DELETE",
            "/api/v1/namespaces/team",
            "application/json",
            b"",
            &[]
        )
        .status,
        200
    );
    assert_eq!(get(a, "/api/v1/namespaces/team/services/x").status, 404);
}

#[test]
fn lists_carry_versions_and_paginate_consistently() {
    let s = server();
    let a = s.addr();
    for i in 0..5 {
        send_json(a, "POST", SERVICES, &service(&format!("s{i}"), json!({})));
    }
    let all = get(a, SERVICES).json();
    assert_eq!(all["kind"], "ServiceList");
    assert_eq!(all["apiVersion"], "v1");
    assert_eq!(
        all["metadata"]["resourceVersion"].as_str().unwrap(),
        s.resource_version().to_string()
    );
    assert_eq!(names(&all), ["s0", "s1", "s2", "s3", "s4"]);

    let page1 = get(a, &format!("{SERVICES}?limit=2")).json();
    assert_eq!(names(&page1), ["s0", "s1"]);
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    // Changes after the first page do not show in later pages (a snapshot, as in etcd).
    request_with(
        a,
        "DELETE",
        &format!("{SERVICES}/s3"),
        "application/json",
        b"",
        &[],
    );
    send_json(a, "POST", SERVICES, &service("s5", json!({})));
    let page2 = get(a, &format!("{SERVICES}?limit=2&continue={token}")).json();
    assert_eq!(names(&page2), ["s2", "s3"]);
    assert_eq!(
        page2["metadata"]["resourceVersion"],
        page1["metadata"]["resourceVersion"]
    );
    let token2 = page2["metadata"]["continue"].as_str().unwrap().to_string();
    let page3 = get(a, &format!("{SERVICES}?limit=2&continue={token2}")).json();
    assert_eq!(names(&page3), ["s4"]);
    assert!(page3["metadata"].get("continue").is_none());

    // Once the history is compacted the token is too old: 410 Expired.
    s.expire();
    let gone = get(a, &format!("{SERVICES}?limit=2&continue={token2}"));
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["reason"], "Expired");

    // Lists across namespaces and of cluster-scoped kinds.
    assert_eq!(names(&get(a, "/api/v1/services").json()).len(), 5);
    assert_eq!(
        names(&get(a, "/api/v1/namespaces").json()),
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[test]
fn library_object_api_matches_http() {
    let s = server();
    let objects = s.objects();
    let created = objects.create(&service("web", json!({}))).unwrap();
    assert_eq!(get(s.addr(), &format!("{SERVICES}/web")).json(), created);
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "198.18.5.1"}]}});
    let node = objects.create(&node).unwrap();
    assert!(node["metadata"].get("namespace").is_none());
    assert_eq!(
        node["status"]["addresses"][0]["address"], "198.18.5.1",
        "node status is kept on create"
    );
    let mut lb = created.clone();
    lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.18.9.1"}]}});
    let with_status = objects.replace_status(&lb).unwrap();
    assert_eq!(
        with_status["status"]["loadBalancer"]["ingress"][0]["ip"],
        "198.18.9.1"
    );
    let patched = objects
        .merge_patch(
            "Service",
            Some("default"),
            "web",
            &json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .unwrap();
    assert_eq!(patched["metadata"]["labels"]["x"], "y");
    assert_eq!(objects.list("Service", None).unwrap().len(), 1);
    assert_eq!(
        objects
            .create(&service("web", json!({})))
            .unwrap_err()
            .code(),
        409
    );
    objects.delete("Service", Some("default"), "web").unwrap();
    assert_eq!(
        objects
            .get("Service", Some("default"), "web")
            .unwrap_err()
            .code(),
        404
    );
    assert_eq!(
        objects.get("Pod", Some("default"), "x").unwrap_err().code(),
        400
    );
}

#[test]
fn list_resource_version_semantics() {
    let s = server();
    let a = s.addr();
    let first = rv_of(&send_json(a, "POST", SERVICES, &service("a", json!({}))).json());
    send_json(a, "POST", SERVICES, &service("b", json!({})));
    patch(
        a,
        &format!("{SERVICES}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"v": "2"}}}),
    );
    // Exact: the objects as they were then.
    let then = get(
        a,
        &format!("{SERVICES}?resourceVersion={first}&resourceVersionMatch=Exact"),
    );
    assert_eq!(then.status, 200);
    let then = then.json();
    assert_eq!(names(&then), ["a"]);
    assert!(
        then["items"][0]["metadata"]
            .get("labels")
            .is_none_or(|l| l.get("v").is_none())
    );
    assert_eq!(then["metadata"]["resourceVersion"], first.to_string());
    // NotOlderThan (and "0", and unset): the current state.
    for q in [
        format!("resourceVersion={first}&resourceVersionMatch=NotOlderThan"),
        "resourceVersion=0".to_string(),
        String::new(),
    ] {
        let now = get(a, &format!("{SERVICES}?{q}")).json();
        assert_eq!(names(&now), ["a", "b"], "{q}");
        assert_eq!(now["items"][0]["metadata"]["labels"]["v"], "2");
    }
    // A version the store has not reached: 504 after waiting; one compacted away: 410.
    let future = s.resource_version() + 10;
    assert_eq!(
        get(a, &format!("{SERVICES}?resourceVersion={future}")).status,
        504
    );
    s.expire();
    let gone = get(
        a,
        &format!("{SERVICES}?resourceVersion={first}&resourceVersionMatch=Exact"),
    );
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json()["reason"], "Expired");
    assert_eq!(
        get(
            a,
            &format!("{SERVICES}?resourceVersionMatch=Bogus&resourceVersion=1")
        )
        .status,
        400
    );
}

#[test]
fn concurrent_unconditional_patches_all_apply() {
    let s = server();
    let a = s.addr();
    send_json(a, "POST", SERVICES, &service("web", json!({})));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..10 {
                    let r = patch(
                        a,
                        &format!("{SERVICES}/web"),
                        "application/merge-patch+json",
                        &json!({"metadata": {"labels": {format!("t{t}-{i}"): "x"}}}),
                    );
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let labels = get(a, &format!("{SERVICES}/web")).json()["metadata"]["labels"].clone();
    assert_eq!(labels.as_object().unwrap().len(), 80, "no patch was lost");
}
