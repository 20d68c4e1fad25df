//! The real agent against the test apiserver (svclb-testapi): `svclb-agent run
//! --kubeconfig …` in the sandbox's node namespace, the apiserver in-process but
//! listening inside that namespace (its sockets are made by a thread that entered it),
//! objects written through kubectl or the server's object API, and the data path read
//! with `svclb-agent dump --json`. Needs root.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use svclb_testapi::TestApiServer;
use svclb_tests::{
    agent::{backend_addrs, dump_json, frontend, frontends},
    netns::{NetNs, unique_name},
    process::Process,
    sandbox::{POD_HTTP_PORT, Sandbox},
    topology::NODE_IP,
};

const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const WEB_NODE_PORT: u16 = 30080;
const NODE_NAME: &str = "node-1";
const METRICS: &str = "127.0.0.1:10249";
const HEALTHZ: &str = "127.0.0.1:10256";
/// Bounds every wait for the agent; changes normally land within milliseconds.
const WAIT: Duration = Duration::from_secs(15);

// ---- objects ----

fn web_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "clusterIP": WEB_IP.to_string(),
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                       "targetPort": POD_HTTP_PORT, "nodePort": WEB_NODE_PORT}]
        }
    })
}

fn web_slice(name: &str, pods: &[Ipv4Addr]) -> Value {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": POD_HTTP_PORT, "protocol": "TCP"}]
    })
}

fn node(internal: &[Ipv4Addr], external: &[Ipv4Addr]) -> Value {
    let addrs: Vec<Value> = internal
        .iter()
        .map(|a| json!({"type": "InternalIP", "address": a.to_string()}))
        .chain(
            external
                .iter()
                .map(|a| json!({"type": "ExternalIP", "address": a.to_string()})),
        )
        .chain([json!({"type": "Hostname", "address": NODE_NAME})])
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME},
        "status": {"addresses": addrs}
    })
}

fn pod(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, n, 2)
}

// ---- network namespace helpers ----

/// `GET path` on `addr` inside `ns`: (status, body).
fn http_get(ns: &NetNs, addr: &str, path: &str) -> Result<(u16, String)> {
    let addr: SocketAddr = addr.parse()?;
    let path = path.to_owned();
    ns.in_thread(move || -> Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP head")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status")?;
        Ok((status, body.to_owned()))
    })?
}

/// The value of metric sample `name` (`name` or `name{labels}` exactly).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok())?
    })
}

// ---- the environment ----

struct Env {
    // Field order is drop order: agent, apiserver, then namespaces and pins.
    agent: Option<Process>,
    api: Option<TestApiServer>,
    sb: Sandbox,
    dir: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
}

impl Env {
    /// Sandbox plus a test apiserver listening in the node namespace.
    fn new() -> Env {
        let sb = Sandbox::new().unwrap();
        let dir = std::env::temp_dir().join(unique_name("kube"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut env = Env {
            agent: None,
            api: None,
            kubeconfig: dir.join("kubeconfig"),
            log: dir.join("agent.log"),
            dir,
            sb,
        };
        env.start_api("127.0.0.1:0".parse().unwrap());
        env
    }

    fn start_api(&mut self, bind: SocketAddr) {
        let api = self
            .sb
            .topo
            .node
            .in_thread(move || TestApiServer::start(bind))
            .unwrap()
            .unwrap();
        api.kubeconfig(&self.kubeconfig).unwrap();
        self.api = Some(api);
    }

    fn api(&self) -> &TestApiServer {
        self.api.as_ref().expect("apiserver running")
    }

    fn create(&self, obj: &Value) {
        self.api().objects().create(obj).unwrap();
    }

    fn replace(&self, obj: Value) {
        self.put(obj, false);
    }

    /// PUT on `/status` (a Node's addresses live there).
    fn replace_status(&self, obj: Value) {
        self.put(obj, true);
    }

    fn put(&self, mut obj: Value, status: bool) {
        let kind = obj["kind"].as_str().unwrap().to_owned();
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        let ns = obj["metadata"]["namespace"].as_str().map(String::from);
        let current = self
            .api()
            .objects()
            .get(&kind, ns.as_deref(), &name)
            .unwrap();
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if status {
            self.api().objects().replace_status(&obj).unwrap();
        } else {
            self.api().objects().replace(&obj).unwrap();
        }
    }

    /// `svclb-agent run --kubeconfig …` in the node namespace, with `extra` flags.
    fn start_agent(&mut self, extra: &[&str]) {
        assert!(self.agent.is_none());
        let bin = self.sb.bins().agent.clone();
        let mut cmd = self.sb.topo.node.command(&bin.to_string_lossy()).unwrap();
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--iface")
            .arg(self.sb.topo.node_ifaces().join(","))
            .arg("--bpffs")
            .arg(self.sb.pins())
            .args(["--hostname-override", NODE_NAME])
            .args(["--metrics-bind-address", METRICS])
            .args(["--healthz-bind-address", HEALTHZ])
            .arg("--socket-lb=false")
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG_STYLE", "never");
        self.agent = Some(Process::spawn("svclb-agent", cmd, &self.log).unwrap());
    }

    fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.terminate(Duration::from_secs(5));
        }
    }

    fn log(&self) -> String {
        self.agent.as_ref().map(Process::stderr).unwrap_or_default()
    }

    /// Log lines of syncs that wrote to the maps.
    fn writing_syncs(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" synced ") && l.contains("writes="))
            .count()
    }

    fn dump(&self) -> Result<Value> {
        dump_json(
            &self.sb.bins().agent,
            self.sb.topo.node.name(),
            self.sb.pins(),
        )
    }

    /// Polls the dump until `ready` holds.
    fn wait_dump(&mut self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(a) = &mut self.agent
                && !a.is_running()
            {
                panic!("agent exited while waiting for {what}");
            }
            let last = self.dump();
            if let Ok(d) = &last
                && ready(d)
            {
                return last.unwrap();
            }
            if Instant::now() > deadline {
                panic!("{what}: not reached within {WAIT:?}; last dump: {last:#?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(&self.sb.topo.node, METRICS, "/metrics").unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        metric(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// (status, JSON body) of /healthz; status 0 when nothing answers (yet).
    fn healthz(&self) -> (u16, Value) {
        match http_get(&self.sb.topo.node, HEALTHZ, "/healthz") {
            Ok((status, body)) => (status, serde_json::from_str(&body).unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&Env) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(self) {
            if Instant::now() > deadline {
                panic!("{what}: not reached within {WAIT:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["--kubeconfig", self.kubeconfig.to_str().unwrap()];
        all.extend_from_slice(args);
        self.sb.topo.node.run("kubectl", &all).unwrap()
    }

    fn write(&self, name: &str, objs: &[Value]) -> PathBuf {
        let path = self.dir.join(name);
        let text: Vec<String> = objs
            .iter()
            .map(|o| serde_json::to_string_pretty(o).unwrap())
            .collect();
        std::fs::write(&path, text.join("\n---\n")).unwrap();
        path
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "----- svclb-agent log ({}) -----\n{}",
                self.log.display(),
                self.log()
            );
        }
        self.stop_agent();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The frontends of a dump without their traffic counters, for "nothing changed".
fn programmed(dump: &Value) -> Vec<Value> {
    frontends(dump)
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if let Some(o) = f.as_object_mut() {
                o.remove("packets");
                o.remove("bytes");
            }
            f
        })
        .collect()
}

fn backends_of(dump: &Value, ip: Ipv4Addr, port: u16) -> Option<Vec<String>> {
    frontend(dump, ip, port, "TCP").map(backend_addrs)
}

fn addrs(pods: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = pods
        .iter()
        .map(|n| format!("{}:{POD_HTTP_PORT}", pod(*n)))
        .collect();
    v.sort();
    v
}

fn nodeport_addresses(dump: &Value) -> BTreeSet<String> {
    frontends(dump)
        .iter()
        .filter(|f| f["kind"] == "NodePort" && f["port"] == WEB_NODE_PORT)
        .map(|f| f["address"].as_str().unwrap_or("").to_owned())
        .collect()
}

// ---- tests ----

/// kubectl create / replace / delete drive the data path; /metrics and /healthz answer.
#[test]
fn kubectl_create_replace_delete_drive_the_data_path() {
    let mut env = Env::new();
    env.start_agent(&[]);
    env.wait_for("healthz after the initial (empty) sync", |e| {
        e.healthz().0 == 200
    });

    let svc = env.write("web-svc.yaml", &[web_service()]);
    let slice = env.write(
        "web-slice.yaml",
        &[web_slice("web-abc", &[pod(1), pod(2), pod(3)])],
    );
    let out = env.kubectl(&[
        "create",
        "-f",
        svc.to_str().unwrap(),
        "-f",
        slice.to_str().unwrap(),
    ]);
    assert!(out.contains("service/web created"), "{out}");
    let dump = env.wait_dump("web with 3 backends", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[1, 2, 3]))
            && backends_of(d, NODE_IP, WEB_NODE_PORT) == Some(addrs(&[1, 2, 3]))
    });
    assert_eq!(
        frontends(&dump)[0]["service"]
            .as_str()
            .map(|s| s.starts_with("default/web:")),
        Some(true)
    );

    let slice = env.write("web-slice.yaml", &[web_slice("web-abc", &[pod(2), pod(3)])]);
    env.kubectl(&["replace", "-f", slice.to_str().unwrap()]);
    env.wait_dump("web with 2 backends", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[2, 3]))
    });

    env.kubectl(&["delete", "-f", svc.to_str().unwrap()]);
    env.wait_dump("no frontends", |d| frontends(d).is_empty());

    let text = env.metrics();
    for (name, at_least) in [
        ("svclb_sync_proxy_rules_duration_seconds_count", 4.0),
        ("svclb_network_programming_duration_seconds_count", 3.0),
        ("svclb_map_writes_total", 3.0),
    ] {
        let v = metric(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert!(v >= at_least, "{name} = {v}, want >= {at_least}\n{text}");
    }
    assert_eq!(metric(&text, "svclb_services"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "svclb_frontends"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "svclb_sync_errors_total"),
        Some(0.0),
        "{text}"
    );
    let (status, health) = env.healthz();
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["apiserverReachable"], true, "{health}");
    let (status, _) = http_get(&env.sb.topo.node, HEALTHZ, "/livez").unwrap();
    assert_eq!(status, 200);
    let log = env.log();
    assert!(
        log.contains("metrics server listening local=127.0.0.1:10249"),
        "{log}"
    );
    assert!(
        log.contains("healthz server listening local=127.0.0.1:10256"),
        "{log}"
    );
}

/// Cut watch streams resume; a forced 410 relists; neither writes to the maps, and a
/// later change is still applied.
#[test]
fn cut_watches_and_410_relist_without_map_writes() {
    let mut env = Env::new();
    env.create(&web_service());
    env.create(&web_slice("web-abc", &[pod(1), pod(2)]));
    env.start_agent(&[]);
    let before = env.wait_dump("web with 2 backends", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[1, 2]))
    });
    env.wait_for("healthz", |e| e.healthz().0 == 200);
    let writes = env.metric("svclb_map_writes_total");
    let syncs = env.writing_syncs();
    let stats = env.api().stats();

    // Resume: the streams end, the watcher re-watches from its resourceVersion.
    assert!(
        env.api().cut_watches() >= 2,
        "the agent watches services, slices and its node"
    );
    env.wait_for("watches resumed", |e| {
        e.api().stats().watches_started >= stats.watches_started + 3
    });
    // Relist: compact the history and cut again, so every re-watch gets 410 Expired.
    // A BOOKMARK that reaches a watcher between the two calls carries a version past
    // the compaction and spares it the 410: retry then (bounded).
    let mut expired = false;
    for _ in 0..3 {
        env.api().expire();
        env.api().cut_watches();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !expired {
            expired = env.api().stats().watch_expired >= stats.watch_expired + 3;
            thread::sleep(Duration::from_millis(50));
        }
        if expired {
            break;
        }
        eprintln!("no 410 for every watch yet: {:?}", env.api().stats());
    }
    assert!(expired, "410s answered: {:?}", env.api().stats());
    env.wait_for("relisted", |e| e.api().stats().lists >= stats.lists + 3);
    // Let the relisted state reach the loop (it is paced in tens of milliseconds).
    thread::sleep(Duration::from_millis(500));

    assert_eq!(
        env.metric("svclb_map_writes_total"),
        writes,
        "map writes after relist"
    );
    assert_eq!(
        env.writing_syncs(),
        syncs,
        "writing syncs after relist:\n{}",
        env.log()
    );
    assert_eq!(programmed(&env.dump().unwrap()), programmed(&before));
    assert_eq!(env.healthz().0, 200);

    env.replace(web_slice("web-abc", &[pod(1), pod(2), pod(3)]));
    env.wait_dump("the change after the relist", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[1, 2, 3]))
    });
    assert!(env.metric("svclb_map_writes_total") > writes);
}

/// An apiserver restart (connections dropped, nothing listening for a while): the agent
/// notices it is unreachable, resumes afterwards, writes nothing, and applies later
/// changes.
#[test]
fn apiserver_restart_changes_nothing_and_later_changes_apply() {
    let mut env = Env::new();
    env.create(&web_service());
    env.create(&web_slice("web-abc", &[pod(1), pod(2)]));
    env.start_agent(&[]);
    let before = env.wait_dump("web with 2 backends", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[1, 2]))
    });
    env.wait_for("healthz", |e| e.healthz().0 == 200);
    let writes = env.metric("svclb_map_writes_total");

    let api = env.api.take().unwrap();
    let restart = thread::spawn(move || {
        api.restart(Duration::from_secs(4));
        api
    });
    env.wait_for("apiserver seen unreachable", |e| {
        e.healthz().1["apiserverReachable"] == false
    });
    // Still healthy: the data path is current and the outage is short of the timeout.
    assert_eq!(env.healthz().0, 200);
    env.api = Some(restart.join().unwrap());
    env.wait_for("apiserver reachable again", |e| {
        e.healthz().1["apiserverReachable"] == true
    });
    assert!(env.metric("svclb_watch_errors_total{resource=\"services\"}") >= 1.0);

    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        env.metric("svclb_map_writes_total"),
        writes,
        "map writes after the restart"
    );
    assert_eq!(programmed(&env.dump().unwrap()), programmed(&before));

    env.replace(web_slice("web-abc", &[pod(3)]));
    env.wait_dump("the change after the restart", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[3]))
    });
    assert!(env.metric("svclb_map_writes_total") > writes);
}

/// The agent starts while the apiserver is down: the pins left by the previous agent
/// keep the data path, /healthz says 503 (never synced), the agent retries, and once the
/// apiserver answers it syncs the same state without writing.
#[test]
fn agent_started_while_apiserver_down_keeps_pins_and_syncs_when_it_is_up() {
    let mut env = Env::new();
    env.create(&web_service());
    env.create(&web_slice("web-abc", &[pod(1), pod(2), pod(3)]));
    env.start_agent(&[]);
    let before = env.wait_dump("web with 3 backends", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[1, 2, 3]))
    });
    env.stop_agent();

    let api = env.api.take().unwrap();
    let restart = thread::spawn(move || {
        api.restart(Duration::from_secs(5));
        api
    });
    thread::sleep(Duration::from_millis(300));
    env.start_agent(&[]);
    env.wait_for("the agent reports the apiserver unreachable", |e| {
        e.log().contains("list/watch failed")
    });
    let (status, health) = env.healthz();
    assert_eq!(status, 503, "never synced: {health}");
    assert_eq!(health["apiserverReachable"], false, "{health}");
    assert_eq!(
        programmed(&env.dump().unwrap()),
        programmed(&before),
        "pins kept while down"
    );

    env.api = Some(restart.join().unwrap());
    env.wait_for("healthz once synced", |e| e.healthz().0 == 200);
    let log = env.log();
    assert!(log.contains("synced (no change)"), "{log}");
    assert_eq!(env.writing_syncs(), 0, "{log}");
    assert_eq!(env.metric("svclb_map_writes_total"), 0.0);
    assert_eq!(programmed(&env.dump().unwrap()), programmed(&before));
}

/// NodePorts answer on the Node's InternalIP/ExternalIP addresses, follow their changes,
/// and fall back to the interface addresses without a Node. A Service the planner
/// rejects (nodePort outside the agent's range) is logged, counted and skipped.
#[test]
fn node_addresses_and_a_rejected_service() {
    let mut env = Env::new();
    let ext = Ipv4Addr::new(198, 18, 100, 50);
    env.create(&node(&[NODE_IP], &[]));
    env.create(&web_service());
    env.create(&web_slice("web-abc", &[pod(1)]));
    let mut bad = web_service();
    bad["metadata"]["name"] = "outside".into();
    bad["spec"]["clusterIP"] = "198.18.0.20".into();
    bad["spec"]["ports"][0]["nodePort"] = 32000.into();
    env.create(&bad);
    env.start_agent(&["--service-node-port-range", "30000-30999"]);

    env.wait_dump("NodePort on the Node's InternalIP only", |d| {
        nodeport_addresses(d) == BTreeSet::from([NODE_IP.to_string()])
    });
    env.replace_status(node(&[NODE_IP], &[ext]));
    env.wait_dump("NodePort on InternalIP and ExternalIP", |d| {
        nodeport_addresses(d) == BTreeSet::from([NODE_IP.to_string(), ext.to_string()])
    });
    env.api().objects().delete("Node", None, NODE_NAME).unwrap();
    let ifaces = env.sb.topo.node_ifaces().len();
    let dump = env.wait_dump("NodePort on every interface address", |d| {
        nodeport_addresses(d).len() == ifaces
    });
    assert!(nodeport_addresses(&dump).contains(&NODE_IP.to_string()));

    // Only the rejected part is skipped: its ClusterIP works, its NodePort does not.
    assert!(
        frontend(&dump, Ipv4Addr::new(198, 18, 0, 20), 80, "TCP").is_some(),
        "{dump:#}"
    );
    assert!(
        !frontends(&dump).iter().any(|f| f["port"] == 32000),
        "{dump:#}"
    );
    assert_eq!(
        env.metric("svclb_object_errors_total{kind=\"node_port_range\"}"),
        1.0
    );
    let log = env.log();
    let complaints = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("default/outside"))
        .count();
    assert_eq!(complaints, 1, "logged once, not on every sync:\n{log}");
}

/// IPv6 and FQDN slices are ignored; IPv4 slices of one Service add up, an endpoint in
/// two of them counting once; Services of every namespace are watched.
#[test]
fn slices_of_other_address_types_are_ignored_and_every_namespace_is_watched() {
    let mut env = Env::new();
    env.create(&web_service());
    env.create(&web_slice("web-abc", &[pod(1)]));
    let mut v6 = web_slice("web-v6", &[]);
    v6["addressType"] = "IPv6".into();
    v6["endpoints"] = json!([{"addresses": ["fd00::2"]}]);
    env.create(&v6);
    let mut fqdn = web_slice("web-fqdn", &[]);
    fqdn["addressType"] = "FQDN".into();
    fqdn["endpoints"] = json!([{"addresses": ["db.example.test"]}]);
    env.create(&fqdn);
    env.create(&web_slice("web-def", &[pod(2), pod(1)]));
    // The same names in another namespace, another ClusterIP.
    env.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    let shop_ip = Ipv4Addr::new(198, 18, 0, 30);
    let mut shop = web_service();
    shop["metadata"]["namespace"] = "shop".into();
    shop["spec"]["type"] = "ClusterIP".into();
    shop["spec"]["clusterIP"] = shop_ip.to_string().into();
    shop["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    env.create(&shop);
    let mut shop_slice = web_slice("web-abc", &[pod(3)]);
    shop_slice["metadata"]["namespace"] = "shop".into();
    env.create(&shop_slice);
    env.start_agent(&[]);
    let dump = env.wait_dump("web from both IPv4 slices, endpoint 1 once", |d| {
        backends_of(d, WEB_IP, 80) == Some(addrs(&[1, 2]))
            && backends_of(d, shop_ip, 80) == Some(addrs(&[3]))
    });
    assert_eq!(
        frontend(&dump, shop_ip, 80, "TCP").unwrap()["service"],
        "shop/web:http/TCP"
    );
    // web's ClusterIP and NodePort share one backend set of two endpoints; shop/web has one.
    assert_eq!(env.metric("svclb_endpoints"), 3.0);
    assert_eq!(env.metric("svclb_services"), 2.0);
    assert_eq!(
        env.metric("svclb_frontends"),
        2.0 + env.sb.topo.node_ifaces().len() as f64
    );
}
