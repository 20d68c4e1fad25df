//! End to end through the test apiserver: the real `svclb-agent run --kubeconfig …` in
//! the sandbox's node namespace, Services and EndpointSlices created, replaced and
//! patched with the real kubectl, and real TCP traffic from the client pod through the
//! ClusterIP. The apiserver (svclb-testapi) runs in-process but listens inside the node
//! namespace (its sockets are made by a thread that entered it), where the agent and
//! kubectl reach it on 127.0.0.1; nothing is added to the root namespace. Each test
//! builds its own sandbox and apiserver, so tests run in parallel. Needs root.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::Value;
use svclb_tests::{
    agent::{backend_addrs, frontend, frontends},
    kube_env::KubeEnv,
    manifests::{self, ServicePort, SlicePort, Target},
    process::Process,
    report::ProbeReport,
    sandbox::{POD_HTTP_PORT, Sandbox, finish_probe},
    topology::pod_ip,
};

const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const WEB_PORT: u16 = 80;
const SLICE: &str = "web-x7k2p";
/// The name the EndpointSlice builder gives the pods' node, passed to the agent as its
/// own (no Node object exists: NodePorts would answer on --node-ip).
const NODE_NAME: &str = "node";
/// The agent's default metrics address, inside the node namespace.
const METRICS: &str = "127.0.0.1:10249";
/// Bounds every wait for the agent; changes normally land within milliseconds.
const WAIT: Duration = Duration::from_secs(15);

const HTTP: SlicePort = SlicePort {
    name: "http",
    protocol: "TCP",
    port: POD_HTTP_PORT,
};

/// Service `web`: ClusterIP 198.18.0.10:80 → 8080.
fn web_service() -> String {
    manifests::service(
        "web",
        WEB_IP,
        Some("web"),
        &[ServicePort::tcp(
            Some("http"),
            WEB_PORT,
            Target::Number(POD_HTTP_PORT),
        )],
    )
}

/// The EndpointSlice of `web` with pods `pods` (1-based indexes), every one ready.
fn web_slice(pods: &[u8]) -> String {
    let addrs: Vec<Ipv4Addr> = pods.iter().map(|n| pod_ip(*n)).collect();
    manifests::endpoint_slice("web", SLICE, &[HTTP], &addrs)
}

fn pod_name(n: u8) -> String {
    format!("pod{n}")
}

/// `ip:8080` of `pods`, sorted like [`backend_addrs`].
fn addrs(pods: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = pods
        .iter()
        .map(|n| format!("{}:{POD_HTTP_PORT}", pod_ip(*n)))
        .collect();
    v.sort();
    v
}

/// The ClusterIP frontend's backends in a dump.
fn web_backends(dump: &Value) -> Option<Vec<String>> {
    frontend(dump, WEB_IP, WEB_PORT, "TCP").map(backend_addrs)
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

/// Log lines of syncs that wrote to the maps (the run loop logs "synced … writes=N"
/// for those and "synced (no change)" otherwise).
fn writing_syncs(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" synced ") && l.contains("writes="))
        .count()
}

/// The value of metric sample `name` (exactly `name` or `name{labels}`).
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok())?
    })
}

/// Every request answered, by exactly the pods `pods`, each with at least `min_share`
/// of the answers. Shares are chosen far below 1/len(pods) (≥ 5 standard deviations
/// for the counts used), so a fair spread never fails them.
fn assert_spread(r: &ProbeReport, pods: &[u8], min_share: f64) {
    assert!(r.attempts > 0, "{r:?}");
    assert_eq!(r.ok, r.attempts, "failed requests: {r:?}");
    let answered: BTreeSet<String> = r.backends.keys().cloned().collect();
    let expected: BTreeSet<String> = pods.iter().map(|n| pod_name(*n)).collect();
    assert_eq!(answered, expected, "backends that answered: {r:?}");
    for pod in &expected {
        assert!(
            r.share(pod) >= min_share,
            "{pod} got {:.1}% (< {:.0}%): {r:?}",
            100.0 * r.share(pod),
            100.0 * min_share
        );
    }
}

/// A sandbox with `backends` serving pods, a test apiserver listening in its node
/// namespace, a kubeconfig for it and (once started) the agent watching it.
struct Env(KubeEnv);

impl std::ops::Deref for Env {
    type Target = KubeEnv;
    fn deref(&self) -> &KubeEnv {
        &self.0
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut KubeEnv {
        &mut self.0
    }
}

impl Env {
    fn new(backends: u8) -> Env {
        let sb = Sandbox::with_backends(backends).unwrap();
        Env(KubeEnv::new(sb, "e2e-kube").unwrap())
    }

    /// The args every agent of these tests runs with.
    const AGENT_ARGS: [&str; 2] = ["--hostname-override", NODE_NAME];

    fn start_agent(&mut self) {
        self.0.start_agent(&Self::AGENT_ARGS).unwrap();
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.0.kubectl(args).unwrap()
    }

    fn kubectl_file(&self, verb: &str, name: &str, docs: &[String]) -> String {
        self.0.kubectl_file(verb, name, docs).unwrap()
    }

    /// Waits until the ClusterIP frontend has exactly `pods` as backends.
    fn wait_backends(&mut self, pods: &[u8]) -> Value {
        let want = addrs(pods);
        self.sb
            .agent()
            .wait_dump(&format!("web with backends {pods:?}"), WAIT, |d| {
                web_backends(d).as_ref() == Some(&want)
            })
            .unwrap()
    }

    /// `count` new TCP connections from the client pod to the ClusterIP.
    fn tcp(&self, count: u64) -> ProbeReport {
        self.sb
            .probe(
                self.sb.client_pod(),
                &[
                    "tcp",
                    "--target",
                    &format!("{WEB_IP}:{WEB_PORT}"),
                    "--count",
                    &count.to_string(),
                ],
            )
            .unwrap()
    }

    /// A request loop from the client pod to the ClusterIP for `deadline`: new
    /// connections one after the other. Finish it with [`finish_probe`].
    fn spawn_loop(&self, deadline: Duration) -> Process {
        self.sb
            .spawn_probe(
                self.sb.client_pod(),
                &[
                    "tcp",
                    "--target",
                    &format!("{WEB_IP}:{WEB_PORT}"),
                    "--count",
                    "100000",
                    "--deadline-ms",
                    &deadline.as_millis().to_string(),
                ],
            )
            .unwrap()
    }

    /// The running agent's /metrics (served inside the node namespace).
    fn metrics(&self) -> String {
        let addr: SocketAddr = METRICS.parse().unwrap();
        self.sb
            .topo
            .node
            .in_thread(move || http_get(addr, "/metrics"))
            .unwrap()
            .unwrap()
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        metric_value(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// Waits until the agent's log has a line containing `needle`; returns the log.
    fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.sb.agent().log();
            if log.contains(needle) {
                return log;
            }
            assert!(self.sb.agent().is_running(), "agent exited:\n{log}");
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the agent log within {WAIT:?}:\n{log}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `cond` holds for the apiserver's stats.
    fn wait_api(&self, what: &str, cond: impl Fn(&svclb_testapi::Stats) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(&self.api.stats()) {
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {WAIT:?}: {:?}",
                self.api.stats()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `GET path` with `Connection: close`: the body of a 200 answer.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP head")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    Ok(body.to_owned())
}

/// Env with the agent running and `web` created through kubectl with pods `pods`.
fn web_env(backends: u8, pods: &[u8]) -> Env {
    let mut env = Env::new(backends);
    env.start_agent();
    env.kubectl_file("create", "web.yaml", &[web_service(), web_slice(pods)]);
    env.wait_backends(pods);
    env
}

// ---- tests ----

/// `kubectl create -f` of a Service and its EndpointSlice makes traffic to the
/// ClusterIP flow, spread over the three pods; before it, nothing answers there.
#[test]
fn kubectl_create_makes_traffic_flow() {
    let mut env = Env::new(3);
    env.start_agent();
    env.wait_log("synced");
    let dump = env.sb.agent().dump_json().unwrap();
    assert!(frontends(&dump).is_empty(), "{dump:#}");
    let before = env
        .sb
        .probe(
            env.sb.client_pod(),
            &[
                "tcp",
                "--target",
                &format!("{WEB_IP}:{WEB_PORT}"),
                "--timeout-ms",
                "2000",
            ],
        )
        .unwrap();
    assert_eq!(
        before.ok, 0,
        "the ClusterIP answers before the Service exists: {before:?}"
    );

    let out = env.kubectl_file(
        "create",
        "web.yaml",
        &[web_service(), web_slice(&[1, 2, 3])],
    );
    assert!(out.contains("service/web created"), "{out}");
    assert!(
        out.contains(&format!("endpointslice.discovery.k8s.io/{SLICE} created")),
        "{out}"
    );
    let dump = env.wait_backends(&[1, 2, 3]);
    assert_eq!(
        frontend(&dump, WEB_IP, WEB_PORT, "TCP").unwrap()["kind"],
        "ClusterIP"
    );

    let r = env.tcp(300);
    // Expected 100 each (σ ≈ 8): 15% = 45 is never reached by chance.
    assert_spread(&r, &[1, 2, 3], 0.15);
    let ports: Vec<u16> = r.ports.keys().copied().collect();
    assert_eq!(ports, [POD_HTTP_PORT], "{r:?}");
}

/// `kubectl replace -f` of the EndpointSlice scales it 3 → 5 → 2: after each change
/// exactly the listed pods answer new connections, spread over all of them.
#[test]
fn scaling_the_endpoint_slice_moves_the_distribution() {
    let mut env = web_env(5, &[1, 2, 3]);
    // Expected 100 each (σ ≈ 8).
    assert_spread(&env.tcp(300), &[1, 2, 3], 0.15);

    env.kubectl_file("replace", "web-slice.yaml", &[web_slice(&[1, 2, 3, 4, 5])]);
    env.wait_backends(&[1, 2, 3, 4, 5]);
    // Expected 100 each of 500 (σ ≈ 9): 10% = 50 is more than 5σ below.
    assert_spread(&env.tcp(500), &[1, 2, 3, 4, 5], 0.10);

    let out = env.kubectl_file("replace", "web-slice.yaml", &[web_slice(&[2, 5])]);
    assert!(out.contains(&format!("{SLICE} replaced")), "{out}");
    env.wait_backends(&[2, 5]);
    // Expected 150 each of 300 (σ ≈ 9): 30% = 90 is more than 6σ below.
    assert_spread(&env.tcp(300), &[2, 5], 0.30);
}

/// An endpoint whose `conditions.ready` is patched to false (serving stays true, so
/// only `ready` excludes it) gets no new connections; set ready again, it gets them
/// back.
#[test]
fn not_ready_endpoint_gets_no_new_flows() {
    let mut env = web_env(3, &[1, 2, 3]);
    assert_spread(&env.tcp(150), &[1, 2, 3], 0.10);

    // The slice lists pods 1, 2, 3 in that order: endpoints[1] is pod2.
    let out = env.kubectl(&[
        "patch",
        "endpointslice",
        SLICE,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/endpoints/1/conditions/ready","value":false}]"#,
    ]);
    assert!(out.contains("patched"), "{out}");
    let json = env.kubectl(&["get", "endpointslice", SLICE, "-o", "json"]);
    let slice: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(slice["endpoints"][1]["addresses"][0], pod_ip(2).to_string());
    assert_eq!(
        slice["endpoints"][1]["conditions"]["ready"], false,
        "{slice:#}"
    );
    assert_eq!(
        slice["endpoints"][1]["conditions"]["serving"], true,
        "{slice:#}"
    );
    env.wait_backends(&[1, 3]);
    // 0 of 300 to pod2; expected 150 each for the others (σ ≈ 9).
    assert_spread(&env.tcp(300), &[1, 3], 0.30);

    env.kubectl_file("replace", "web-slice.yaml", &[web_slice(&[1, 2, 3])]);
    env.wait_backends(&[1, 2, 3]);
    assert_spread(&env.tcp(150), &[1, 2, 3], 0.10);
}

/// Cutting every watch stream and forcing 410 Gone (so the agent relists everything)
/// in the middle of a request loop: no request fails, the relist writes nothing to the
/// maps, and a later kubectl replace is still applied.
#[test]
fn watch_cut_and_410_relist_under_traffic() {
    let mut env = web_env(3, &[1, 2, 3]);
    let before = env.wait_log("synced");
    let syncs = writing_syncs(&before);
    assert!(syncs >= 1, "the create was written:\n{before}");
    let writes = env.metric("svclb_map_writes_total");
    assert!(writes > 0.0);
    let programmed_before = programmed(&env.sb.agent().dump_json().unwrap());
    let watch_errors = |env: &Env| {
        let text = env.metrics();
        ["services", "endpointslices"].map(|r| {
            let name = format!("svclb_watch_errors_total{{resource=\"{r}\"}}");
            metric_value(&text, &name).unwrap_or(0.0)
        })
    };
    let errors_before = watch_errors(&env);

    let started = Instant::now();
    let mut lp = env.spawn_loop(Duration::from_secs(8));
    thread::sleep(Duration::from_secs(1));

    let stats = env.api.stats();
    let watches = env.api.cut_watches();
    assert!(
        watches >= 3,
        "the agent watches services, slices and its node: {watches} cut"
    );
    env.wait_api("watches resumed", |s| {
        s.watches_started >= stats.watches_started + watches
    });
    // Relist: compact the history and cut again, so every re-watch gets 410 Expired. A
    // BOOKMARK that reaches a watcher between the two calls carries a version past the
    // compaction and spares it the 410: retry then (bounded).
    let mut expired = false;
    for _ in 0..3 {
        env.api.expire();
        env.api.cut_watches();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !expired {
            expired = env.api.stats().watch_expired >= stats.watch_expired + watches;
            thread::sleep(Duration::from_millis(20));
        }
        if expired {
            break;
        }
    }
    assert!(expired, "a 410 for every watch: {:?}", env.api.stats());
    env.wait_api("relisted", |s| s.lists >= stats.lists + watches);
    eprintln!("relist done {:?} into the request loop", started.elapsed());
    // Let the relisted state reach the run loop (paced in tens of milliseconds).
    thread::sleep(Duration::from_millis(500));
    assert!(
        lp.is_running(),
        "the request loop ended before the relist was over ({:?}): it must span it",
        started.elapsed()
    );

    let report = finish_probe(lp, Duration::from_secs(30)).unwrap();
    eprintln!(
        "relist loop: {} ok, {} failed over {:?}",
        report.ok,
        report.failed(),
        started.elapsed()
    );
    assert!(report.ok >= 100, "{report:?}");
    assert_spread(&report, &[1, 2, 3], 0.10);

    let log = env.sb.agent().log();
    // The agent itself saw the 410s (as watch errors) and relisted ...
    let errors_after = watch_errors(&env);
    for (before, after) in errors_before.iter().zip(&errors_after) {
        assert!(
            after > before,
            "410s not seen by the agent: {errors_after:?}\n{log}"
        );
    }
    // ... and wrote nothing for it.
    assert_eq!(
        writing_syncs(&log),
        syncs,
        "the relist wrote to the maps:\n{log}"
    );
    assert_eq!(
        env.metric("svclb_map_writes_total"),
        writes,
        "map writes after the relist:\n{log}"
    );
    assert_eq!(
        programmed(&env.sb.agent().dump_json().unwrap()),
        programmed_before
    );

    // Later changes still arrive: pod3 removed.
    env.kubectl_file("replace", "web-slice.yaml", &[web_slice(&[1, 2])]);
    env.wait_backends(&[1, 2]);
    assert_spread(&env.tcp(200), &[1, 2], 0.25);
    assert!(env.metric("svclb_map_writes_total") > writes);
    assert_eq!(writing_syncs(&env.sb.agent().log()), syncs + 1);
}

/// The agent is stopped and a new one started with the same args under a continuous
/// request loop and an open connection: no request fails, the new agent adopts the
/// pins without writing, and it applies later changes.
#[test]
fn agent_restart_under_traffic_fails_no_request() {
    let mut env = web_env(3, &[1, 2, 3]);
    env.wait_log("synced");
    let target = format!("{WEB_IP}:{WEB_PORT}");
    let hold = env
        .sb
        .spawn_probe(
            env.sb.client_pod(),
            &[
                "hold",
                "--target",
                &target,
                "--interval-ms",
                "50",
                "--duration-ms",
                "6000",
            ],
        )
        .unwrap();
    hold.wait_line("backend ", Duration::from_secs(5)).unwrap();
    let lp = env.spawn_loop(Duration::from_secs(5));

    thread::sleep(Duration::from_secs(1));
    env.sb.agent().stop();
    // No agent for a while: the pinned programs and maps keep serving.
    thread::sleep(Duration::from_secs(1));
    env.sb.restart_agent(&Env::AGENT_ARGS).unwrap();
    let log = env.wait_log("synced");
    assert!(
        log.contains("TC program replaced atomically"),
        "the new agent must reuse the pinned links:\n{log}"
    );
    assert!(
        log.contains("synced (no change)"),
        "adoption must not rewrite the maps:\n{log}"
    );
    assert_eq!(writing_syncs(&log), 0, "{log}");
    assert_eq!(env.metric("svclb_map_writes_total"), 0.0);

    let report = finish_probe(lp, Duration::from_secs(30)).unwrap();
    eprintln!("restart loop: {} ok, {} failed", report.ok, report.failed());
    assert!(report.ok >= 100, "{report:?}");
    assert_spread(&report, &[1, 2, 3], 0.10);
    let held = finish_probe(hold, Duration::from_secs(15)).unwrap();
    assert!(
        held.failures.is_empty(),
        "the open connection broke: {held:?}"
    );
    assert!(held.ok >= 80, "{held:?}");

    // The new agent follows the apiserver: pod1 removed.
    env.kubectl_file("replace", "web-slice.yaml", &[web_slice(&[2, 3])]);
    env.wait_backends(&[2, 3]);
    assert_spread(&env.tcp(200), &[2, 3], 0.25);
    let out = env.kubectl_file("delete", "web.yaml", &[web_service(), web_slice(&[2, 3])]);
    assert!(out.contains("service \"web\" deleted"), "{out}");
    env.sb
        .agent()
        .wait_dump("no frontends after kubectl delete", WAIT, |d| {
            frontends(d).is_empty()
        })
        .unwrap();
}

/// Seed 000 in kube mode: a Service without a selector and its Endpoints written by
/// hand, `kubectl apply -f`; the control plane's mirroring controller makes the slice
/// the agent reads, and the ClusterIP answers from both pods. Removing an address from
/// the Endpoints takes it out of the data path.
#[test]
fn hand_written_endpoints_of_a_selectorless_service_carry_traffic() {
    let mut env = Env::new(2);
    env.start_agent();
    const UNNAMED: SlicePort = SlicePort {
        name: "",
        protocol: "TCP",
        port: POD_HTTP_PORT,
    };
    let service = manifests::service(
        "web",
        WEB_IP,
        None,
        &[ServicePort::tcp(
            None,
            WEB_PORT,
            Target::Number(POD_HTTP_PORT),
        )],
    );
    let both = manifests::endpoints("web", &[UNNAMED], &[pod_ip(1), pod_ip(2)]);
    let out = env.kubectl_file("apply", "web.yaml", &[service.clone(), both]);
    assert!(out.contains("endpoints/web created"), "{out}");
    env.wait_backends(&[1, 2]);
    let slices = env.kubectl(&["get", "endpointslices", "-o", "name"]);
    assert_eq!(slices.trim(), "endpointslice.discovery.k8s.io/web-mirror-0");
    let r = env.tcp(60);
    assert_spread(&r, &[1, 2], 0.15);

    let one = manifests::endpoints("web", &[UNNAMED], &[pod_ip(2)]);
    env.kubectl_file("apply", "web.yaml", &[service, one]);
    env.wait_backends(&[2]);
    let r = env.tcp(20);
    assert_eq!((r.ok, r.backends.len()), (20, 1), "{r:?}");
    assert!(r.backends.contains_key(&pod_name(2)), "{r:?}");
}
