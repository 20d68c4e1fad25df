//! Terminating endpoints (KEP-1669) through the test apiserver and the real kubectl:
//! `serving && terminating` endpoints get no new flows while a ready one exists and take
//! them when none is left; an open connection to an endpoint that becomes terminating
//! and is then removed keeps working; a rolling replacement (new pod ready, old pod
//! terminating, old pod removed and gone, one by one, as a Deployment rollout does)
//! fails no request of a continuous loop. Needs root.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use svclb_tests::{
    agent::frontend,
    in_mode,
    kube_env::KubeEnv,
    manifests::{self, ServicePort, SlicePort, Target},
    modes::Mode,
    report::ProbeReport,
    sandbox::{POD_HTTP_PORT, finish_probe},
    semantics::{Ep, endpoint_slice},
    topology::{INNER_IF, pod_ip},
};

const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const SLICE: &str = "web-r8d2k";
const NODE_NAME: &str = "node";
const WAIT: Duration = Duration::from_secs(15);
/// The request loop of the rolling replacement runs this long (the rollout takes a few
/// seconds; the test checks it ended inside the loop).
const LOOP: Duration = Duration::from_secs(20);

fn web_service() -> String {
    manifests::service(
        "web",
        WEB_IP,
        Some("web"),
        &[ServicePort::tcp(
            Some("http"),
            80,
            Target::Number(POD_HTTP_PORT),
        )],
    )
}

fn web_slice(eps: &[Ep]) -> String {
    endpoint_slice(
        "web",
        SLICE,
        &[SlicePort {
            name: "http",
            protocol: "TCP",
            port: POD_HTTP_PORT,
        }],
        eps,
    )
}

fn ready(pods: &[u8]) -> Vec<Ep> {
    pods.iter().map(|n| Ep::ready(pod_ip(*n))).collect()
}

/// The sandbox, a test apiserver in its node namespace and the agent watching it.
struct Env {
    k: KubeEnv,
}

impl Env {
    fn new(m: Mode, backends: u8, first: &[Ep]) -> Env {
        let mut k = KubeEnv::new(m.sandbox_with(backends).unwrap(), "rolling").unwrap();
        k.start_agent(&m.args_with(&["--hostname-override", NODE_NAME]))
            .unwrap();
        let env = Env { k };
        env.kubectl_file("create", &[web_service(), web_slice(first)]);
        env
    }

    fn kubectl_file(&self, verb: &str, docs: &[String]) -> String {
        self.k
            .kubectl_file(verb, &format!("{verb}.yaml"), docs)
            .unwrap()
    }

    /// `kubectl replace` of the slice with `eps`.
    fn replace(&self, eps: &[Ep]) {
        let out = self.kubectl_file("replace", &[web_slice(eps)]);
        assert!(out.contains("replaced"), "{out}");
    }

    /// Waits until the ClusterIP's backends are exactly `pods`, with `terminating` flags.
    fn wait_backends(&mut self, pods: &[u8], terminating: bool) -> Value {
        let want: BTreeSet<(String, bool)> = pods
            .iter()
            .map(|n| (pod_ip(*n).to_string(), terminating))
            .collect();
        self.k
            .sb
            .agent()
            .wait_dump(
                &format!("web with backends {pods:?} (terminating: {terminating})"),
                WAIT,
                |d| backends(d) == want,
            )
            .unwrap()
    }

    fn tcp(&self, count: u64) -> ProbeReport {
        self.k
            .sb
            .probe(
                self.k.sb.client_pod(),
                &[
                    "tcp",
                    "--target",
                    &format!("{WEB_IP}:80"),
                    "--count",
                    &count.to_string(),
                ],
            )
            .unwrap()
    }
}

/// (address, terminating) of the ClusterIP's backends.
fn backends(dump: &Value) -> BTreeSet<(String, bool)> {
    frontend(dump, WEB_IP, 80, "TCP")
        .and_then(|f| f["backends"].as_array())
        .map(|bs| {
            bs.iter()
                .map(|b| {
                    (
                        b["address"].as_str().unwrap_or("?").to_owned(),
                        b["terminating"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn names(r: &ProbeReport) -> BTreeSet<String> {
    r.backends.keys().cloned().collect()
}

fn pods(list: &[u8]) -> BTreeSet<String> {
    list.iter().map(|n| format!("pod{n}")).collect()
}

fn terminating_endpoints_serve_only_when_no_ready_one_is_left(m: Mode) {
    let mut env = Env::new(m, 3, &ready(&[1, 2, 3]));
    env.wait_backends(&[1, 2, 3], false);
    let conn = env
        .k
        .sb
        .hold(Some(env.k.sb.client_pod()), &format!("{WEB_IP}:80"), 6000)
        .unwrap();
    let held = conn.pod();
    let hold = conn.probe;
    let others: Vec<u8> = (1..=3).filter(|n| *n != held).collect();

    // The held pod starts terminating: new connections go to the ready ones only.
    let eps: Vec<Ep> = (1..=3)
        .map(|n| {
            if n == held {
                Ep::terminating(pod_ip(n))
            } else {
                Ep::ready(pod_ip(n))
            }
        })
        .collect();
    env.replace(&eps);
    env.wait_backends(&others, false);
    let r = env.tcp(120);
    eprintln!("pod{held} terminating, 2 ready: {:?}", r.backends);
    assert_eq!(r.ok, 120, "{r:?}");
    assert_eq!(names(&r), pods(&others), "{r:?}");

    // Then removed: the open connection still works (checked when the hold ends).
    env.replace(&ready(&others));
    env.wait_backends(&others, false);
    thread::sleep(Duration::from_millis(500));

    // Only terminating endpoints left: they take the new connections.
    env.replace(&[
        Ep::terminating(pod_ip(others[0])),
        Ep::terminating(pod_ip(others[1])),
    ]);
    env.wait_backends(&others, true);
    let r = env.tcp(60);
    eprintln!("only terminating endpoints: {:?}", r.backends);
    assert_eq!(r.ok, 60, "{r:?}");
    assert_eq!(names(&r), pods(&others), "{r:?}");

    // A ready endpoint appears: the terminating ones get nothing new.
    env.replace(&[
        Ep::terminating(pod_ip(others[0])),
        Ep::ready(pod_ip(held)),
        Ep::terminating(pod_ip(others[1])),
    ]);
    env.wait_backends(&[held], false);
    let r = env.tcp(40);
    assert_eq!((r.ok, names(&r)), (40, pods(&[held])), "{r:?}");

    let held_report = finish_probe(hold, Duration::from_secs(15)).unwrap();
    eprintln!(
        "held connection to pod{held}: {} requests ok, {} failed",
        held_report.ok,
        held_report.failed()
    );
    assert!(
        held_report.failures.is_empty(),
        "the open connection broke: {held_report:?}"
    );
    assert_eq!(names(&held_report), pods(&[held]), "{held_report:?}");
    assert!(held_report.ok >= 40, "{held_report:?}");
}

fn rolling_replacement_fails_no_request(m: Mode) {
    // Old pods 1-3 are replaced by new pods 4-6; pod7 is the client.
    let mut env = Env::new(m, 6, &ready(&[1, 2, 3]));
    env.wait_backends(&[1, 2, 3], false);
    let lp = env
        .k
        .sb
        .spawn_probe(
            env.k.sb.client_pod(),
            &[
                "tcp",
                "--target",
                &format!("{WEB_IP}:80"),
                "--count",
                "100000",
                "--deadline-ms",
                &LOOP.as_millis().to_string(),
            ],
        )
        .unwrap();
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (mut old, mut new): (Vec<u8>, Vec<u8>) = (vec![1, 2, 3], vec![]);
    for step in 0..3u8 {
        let (gone, added) = (1 + step, 4 + step);
        // The new pod becomes ready.
        new.push(added);
        env.replace(&ready(&[old.as_slice(), new.as_slice()].concat()));
        env.wait_backends(&[old.as_slice(), new.as_slice()].concat(), false);
        thread::sleep(Duration::from_millis(300));
        // The old pod is deleted: terminating (still serving during its grace period).
        old.retain(|n| *n != gone);
        let mut eps = ready(&[old.as_slice(), new.as_slice()].concat());
        eps.push(Ep::terminating(pod_ip(gone)));
        env.replace(&eps);
        env.wait_backends(&[old.as_slice(), new.as_slice()].concat(), false);
        thread::sleep(Duration::from_millis(300));
        // Its grace period ends: out of the slice, then the pod is gone (link down, so a
        // request still sent there would fail).
        env.replace(&ready(&[old.as_slice(), new.as_slice()].concat()));
        env.wait_backends(&[old.as_slice(), new.as_slice()].concat(), false);
        thread::sleep(Duration::from_millis(200));
        env.k
            .sb
            .topo
            .pod(gone)
            .ns
            .ip(&["link", "set", INNER_IF, "down"])
            .unwrap();
        thread::sleep(Duration::from_millis(300));
    }
    let rollout = started.elapsed();
    let report = finish_probe(lp, Duration::from_secs(60)).unwrap();
    eprintln!(
        "rolling replacement of 3 pods ({rollout:?}) under a request loop: {} requests, {} ok, {} failed, answers {:?}",
        report.attempts,
        report.ok,
        report.failed(),
        report.backends
    );
    assert!(
        rollout + Duration::from_secs(1) < LOOP,
        "the loop ended before the rollout did ({rollout:?})"
    );
    assert!(report.ok >= 200, "{report:?}");
    assert!(
        report.failures.is_empty(),
        "requests failed during the rollout: {report:?}"
    );
    assert_eq!(names(&report), pods(&[1, 2, 3, 4, 5, 6]), "{report:?}");
    let after = env.tcp(60);
    assert_eq!(after.ok, 60, "{after:?}");
    assert_eq!(names(&after), pods(&[4, 5, 6]), "{after:?}");
}

// Once per data-path mode (svclb_tests::in_mode): kube-proxy's iptables mode supports
// these scenarios too.

in_mode!(
    ebpf,
    svclb_tests::modes::Mode::Ebpf,
    [
        terminating_endpoints_serve_only_when_no_ready_one_is_left,
        rolling_replacement_fails_no_request
    ]
);
in_mode!(
    iptables,
    svclb_tests::modes::Mode::Iptables,
    [
        terminating_endpoints_serve_only_when_no_ready_one_is_left,
        rolling_replacement_fails_no_request
    ]
);
