//! Label and field selectors on lists, with the grammar of apimachinery.

mod common;

use common::*;
use serde_json::json;

fn listed(addr: std::net::SocketAddr, query: &str) -> Vec<String> {
    let r = get(addr, &format!("{SERVICES}?{query}"));
    assert_eq!(
        r.status,
        200,
        "{query}: {}",
        String::from_utf8_lossy(&r.body)
    );
    names(&r.json())
}

#[test]
fn label_selector_operators() {
    let s = server();
    let a = s.addr();
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web", "tier": "back"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
    ] {
        assert_eq!(
            send_json(a, "POST", SERVICES, &service(name, labels)).status,
            201
        );
    }
    assert_eq!(listed(a, "labelSelector=app%3Dweb"), ["a", "b"]);
    assert_eq!(listed(a, "labelSelector=app%3D%3Dweb"), ["a", "b"]);
    // != and notin also match objects without the label.
    assert_eq!(listed(a, "labelSelector=app%21%3Dweb"), ["c", "d"]);
    assert_eq!(listed(a, "labelSelector=tier+in+%28front%2Cside%29"), ["a"]);
    assert_eq!(
        listed(a, "labelSelector=tier+notin+%28front%29"),
        ["b", "c", "d"]
    );
    assert_eq!(listed(a, "labelSelector=tier"), ["a", "b"]);
    assert_eq!(listed(a, "labelSelector=%21tier"), ["c", "d"]);
    assert_eq!(
        listed(a, "labelSelector=app%3Dweb%2Ctier%21%3Dfront"),
        ["b"]
    );
    assert_eq!(listed(a, "labelSelector=app+in+(web,db),!tier"), ["c"]);
    assert_eq!(listed(a, "labelSelector="), ["a", "b", "c", "d"]);

    let bad = get(a, &format!("{SERVICES}?labelSelector=app%3D%3D%3Dx"));
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["reason"], "BadRequest");
    assert_eq!(
        get(a, &format!("{SERVICES}?labelSelector=tier+in+front")).status,
        400
    );
}

#[test]
fn field_selectors() {
    let s = server();
    let a = s.addr();
    for name in ["a", "b"] {
        send_json(a, "POST", SERVICES, &service(name, json!({})));
    }
    let mut np = service("c", json!({}));
    np["spec"]["type"] = json!("NodePort");
    send_json(a, "POST", SERVICES, &np);
    assert_eq!(listed(a, "fieldSelector=metadata.name%3Db"), ["b"]);
    assert_eq!(listed(a, "fieldSelector=metadata.name%21%3Db"), ["a", "c"]);
    assert_eq!(
        listed(
            a,
            "fieldSelector=metadata.namespace%3Ddefault,metadata.name%3Da"
        ),
        ["a"]
    );
    assert_eq!(listed(a, "fieldSelector=spec.type%3DNodePort"), ["c"]);
    assert_eq!(
        names(
            &get(
                a,
                "/api/v1/services?fieldSelector=metadata.namespace%3Dkube-system"
            )
            .json()
        ),
        Vec::<String>::new()
    );
    let unsupported = get(a, &format!("{SERVICES}?fieldSelector=spec.selector%3Dx"));
    assert_eq!(unsupported.status, 400);
    assert!(
        unsupported.json()["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported")
    );
}
