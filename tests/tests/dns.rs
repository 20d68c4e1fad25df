//! Real DNS behind a ClusterIP: dnsmasq in each backend pod, each answering `svc.test`
//! with its own address (198.18.50.N from podN), on UDP and TCP port 53; real `dig`
//! queries in a loop from the client pod while backends are removed (then their dnsmasq
//! stops, as a deleted pod's would) and added back. Every query sent after a removal
//! has been applied (dump shows the backend gone) must be answered, by a live pod.
//! Needs root.

use std::{
    net::Ipv4Addr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use svclb_tests::{
    agent::{backend_addrs, frontend, has_frontend},
    in_mode,
    manifests::{self, ServicePort, SlicePort, Target},
    modes::Mode,
    netns::NetNs,
    process::{self, Process},
    sandbox::TempDir,
    topology::{Pod, pod_ip},
};

const DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);
const SYNC: Duration = Duration::from_secs(10);
/// Bound on the queries of one loop.
const MAX_QUERIES: usize = 5_000;

/// The address podN's dnsmasq answers for `svc.test`.
fn answer_of(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 50, n)
}

fn manifests(pods: &[Ipv4Addr]) -> String {
    let ports = [
        ServicePort::udp(Some("dns"), 53, Target::Number(53)),
        ServicePort::tcp(Some("dns-tcp"), 53, Target::Number(53)),
    ];
    let slice_ports = [
        SlicePort {
            name: "dns",
            protocol: "UDP",
            port: 53,
        },
        SlicePort {
            name: "dns-tcp",
            protocol: "TCP",
            port: 53,
        },
    ];
    manifests::documents(&[
        manifests::service("dns", DNS_IP, Some("dns"), &ports),
        manifests::endpoint_slice("dns", "dns-1", &slice_ports, pods),
    ])
}

/// dnsmasq in `pod`, in the foreground (killed with its [`Process`] on every exit path),
/// reading no system configuration.
fn dnsmasq(pod: &Pod, dir: &Path) -> Process {
    let n = pod.index;
    let mut cmd = pod.ns.command("/usr/sbin/dnsmasq").unwrap();
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--port=53",
        "--bind-interfaces",
        &format!("--listen-address={}", pod.ip()),
        &format!("--address=/svc.test/{}", answer_of(n)),
        &format!(
            "--pid-file={}",
            dir.join(format!("dnsmasq-{n}.pid")).display()
        ),
        "--log-facility=-",
    ]);
    Process::spawn(
        format!("dnsmasq pod{n}"),
        cmd,
        &dir.join(format!("dnsmasq-{n}.log")),
    )
    .unwrap()
}

/// One `dig` for `svc.test` at `server`: the answer, or `None` when nothing (valid)
/// came back within the 1 s dig waits.
fn dig(ns: &str, server: Ipv4Addr, tcp: bool) -> Option<Ipv4Addr> {
    let mut cmd = process::command(Some(ns), "dig").ok()?;
    cmd.args([
        &format!("@{server}"),
        "svc.test",
        "A",
        "+short",
        "+tries=1",
        "+time=1",
    ]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = process::run(cmd, Duration::from_secs(5)).ok()?;
    out.lines().next()?.trim().parse().ok()
}

/// Waits until `pod`'s dnsmasq answers on its own address.
fn wait_answers(client: &NetNs, pod: &Pod) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while dig(client.name(), pod.ip(), false) != Some(answer_of(pod.index)) {
        assert!(
            Instant::now() < deadline,
            "dnsmasq in pod{} does not answer",
            pod.index
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Clone, Copy, Debug)]
struct Query {
    sent: Instant,
    tcp: bool,
    answer: Option<Ipv4Addr>,
}

/// `dig` one query after the other (UDP or TCP) until `stop`, bounded.
fn query_loop(
    ns: String,
    tcp: bool,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Query>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..MAX_QUERIES {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let sent = Instant::now();
            let answer = dig(&ns, DNS_IP, tcp);
            log.lock().unwrap().push(Query { sent, tcp, answer });
            thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Stops the loops on every exit path (a failed assertion included).
struct StopOnDrop(Arc<AtomicBool>, Vec<thread::JoinHandle<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

fn dig_loses_no_query_while_backends_are_removed_and_added(m: Mode) {
    let mut sb = m.sandbox().unwrap();
    let dir = TempDir::named("dns").unwrap();
    // Declared after the sandbox: dropped (killed) before its namespaces go.
    let mut servers: Vec<Option<Process>> = sb
        .backend_pods()
        .iter()
        .map(|p| Some(dnsmasq(p, dir.path())))
        .collect();
    for pod in sb.backend_pods() {
        wait_answers(sb.client_pod(), pod);
    }
    sb.manifests
        .write("dns.yaml", &manifests(&sb.backend_ips()))
        .unwrap();
    sb.start_agent(&m.args_with(&[])).unwrap();
    sb.agent()
        .wait_dump("dns frontends", SYNC, |d| {
            has_frontend(d, DNS_IP, 53, "UDP", 3) && has_frontend(d, DNS_IP, 53, "TCP", 3)
        })
        .unwrap();

    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ns = sb.client_pod().name().to_owned();
    let loops = StopOnDrop(
        stop.clone(),
        vec![
            query_loop(ns.clone(), false, stop.clone(), log.clone()),
            query_loop(ns, true, stop.clone(), log.clone()),
        ],
    );
    thread::sleep(Duration::from_millis(1500));

    // (removed pod, applied at, re-added at)
    let mut windows = Vec::new();
    for n in [1u8, 2, 3] {
        let live: Vec<Ipv4Addr> = (1..=3).filter(|m| *m != n).map(pod_ip).collect();
        sb.manifests.write("dns.yaml", &manifests(&live)).unwrap();
        // Applied: exactly the live pods in both frontends' slots (not just two of them).
        let want: Vec<String> = live.iter().map(|ip| format!("{ip}:53")).collect();
        sb.agent()
            .wait_dump(&format!("dns without pod{n}"), SYNC, |d| {
                ["UDP", "TCP"].into_iter().all(|proto| {
                    frontend(d, DNS_IP, 53, proto).is_some_and(|f| backend_addrs(f) == want)
                })
            })
            .unwrap();
        let applied = Instant::now();
        // The removed pod's server goes away, as a deleted pod's would.
        servers[usize::from(n) - 1].take();
        thread::sleep(Duration::from_millis(2500));

        servers[usize::from(n) - 1] = Some(dnsmasq(sb.topo.pod(n), dir.path()));
        wait_answers(sb.client_pod(), sb.topo.pod(n));
        let readded = Instant::now();
        sb.manifests
            .write("dns.yaml", &manifests(&sb.backend_ips()))
            .unwrap();
        sb.agent()
            .wait_dump(&format!("dns with pod{n} back"), SYNC, |d| {
                has_frontend(d, DNS_IP, 53, "UDP", 3) && has_frontend(d, DNS_IP, 53, "TCP", 3)
            })
            .unwrap();
        windows.push((n, applied, readded));
        thread::sleep(Duration::from_millis(1000));
    }
    drop(loops);

    let log = log.lock().unwrap();
    let mut failures = Vec::new();
    for (n, applied, readded) in &windows {
        for tcp in [false, true] {
            let after: Vec<&Query> = log
                .iter()
                .filter(|q| q.tcp == tcp && q.sent >= *applied && q.sent < *readded)
                .collect();
            let lost = after.iter().filter(|q| q.answer.is_none()).count();
            let to_removed = after
                .iter()
                .filter(|q| q.answer == Some(answer_of(*n)))
                .count();
            let proto = if tcp { "TCP" } else { "UDP" };
            eprintln!(
                "removal of pod{n}, {proto}: {} queries after it was applied, {lost} lost, {to_removed} answered by the removed pod",
                after.len()
            );
            if after.len() < 5 || lost > 0 || to_removed > 0 {
                failures.push(format!(
                    "pod{n} {proto}: {} queries, {lost} lost, {to_removed} to the removed pod",
                    after.len()
                ));
            }
        }
    }
    let total = log.len();
    let lost_total = log.iter().filter(|q| q.answer.is_none()).count();
    let spread: Vec<usize> = (1..=3)
        .map(|n| {
            log.iter()
                .filter(|q| q.answer == Some(answer_of(n)))
                .count()
        })
        .collect();
    eprintln!("all queries: {total}, unanswered {lost_total}, answers per pod {spread:?}");
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        spread.iter().all(|c| *c > 0),
        "every pod answered some queries: {spread:?}"
    );
}

// Once per data-path mode (svclb_tests::in_mode): kube-proxy's iptables mode supports
// these scenarios too.

in_mode!(
    ebpf,
    svclb_tests::modes::Mode::Ebpf,
    [dig_loses_no_query_while_backends_are_removed_and_added]
);
in_mode!(
    iptables,
    svclb_tests::modes::Mode::Iptables,
    [dig_loses_no_query_while_backends_are_removed_and_added]
);
