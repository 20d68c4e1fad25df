//! Mode selection for real: the agent with BPF denied falls back to iptables by itself,
//! `--mode ipvs` without IPVS in the kernel falls back to iptables, switching modes
//! removes what the other mode left, and `cleanup` removes every mode's state. Each test
//! builds its own sandbox; every iptables command runs inside its node namespace.

use std::{net::Ipv4Addr, time::Duration};

use serde_json::Value;
use svclb_tests::{
    agent::has_frontend,
    fixtures::{self, DNS_IP, WEB_IP, WEB_NODE_PORT},
    manifests,
    modes::{Mode, has_kube_chains, iptables_save},
    process,
    report::ProbeReport,
    sandbox::Sandbox,
    topology::NODE_IP,
};

const SYNC: Duration = Duration::from_secs(10);

/// web (ClusterIP + NodePort, TCP) over `web` and dns (ClusterIP, UDP) over `dns`.
fn services(web: &[Ipv4Addr], dns: &[Ipv4Addr]) -> String {
    manifests::documents(&[fixtures::web(web), fixtures::dns(dns)])
}

fn all_frontends(d: &Value) -> bool {
    has_frontend(d, WEB_IP, 80, "TCP", 3)
        && has_frontend(d, NODE_IP, WEB_NODE_PORT, "TCP", 3)
        && has_frontend(d, DNS_IP, 53, "UDP", 3)
}

fn sandbox() -> Sandbox {
    let sb = Sandbox::new().unwrap();
    let pods = sb.backend_ips();
    let text = services(&pods, &pods);
    sb.manifests.write("svc.yaml", &text).unwrap();
    sb
}

fn probe(
    sb: &Sandbox,
    ns: &svclb_tests::netns::NetNs,
    kind: &str,
    ip: Ipv4Addr,
    port: u16,
    count: u32,
) -> ProbeReport {
    sb.probe(
        ns,
        &[
            kind,
            "--target",
            &format!("{ip}:{port}"),
            "--count",
            &count.to_string(),
        ],
    )
    .unwrap()
}

/// ClusterIP (TCP and UDP) from a pod and the NodePort from the external client, every
/// request answered by the backend pods.
fn serves(sb: &Sandbox) {
    for (ns, kind, ip, port) in [
        (sb.client_pod(), "tcp", WEB_IP, 80),
        (sb.client(), "tcp", NODE_IP, WEB_NODE_PORT),
        (sb.client_pod(), "udp", DNS_IP, 53),
    ] {
        let r = probe(sb, ns, kind, ip, port, 30);
        assert_eq!(r.ok, 30, "{kind} {ip}:{port}: {r:?}");
        assert!(
            r.backends
                .keys()
                .all(|b| ["pod1", "pod2", "pod3"].contains(&b.as_str())),
            "{r:?}"
        );
    }
}

fn log_has(log: &str, needle: &[&str]) -> bool {
    log.lines().any(|l| needle.iter().all(|n| l.contains(n)))
}

/// Waits (bounded) until the running agent has logged its first sync: by then the mode
/// is chosen and the other modes' state removed. (A dump alone could still read what
/// the previous mode left.)
fn wait_synced(sb: &mut Sandbox) -> String {
    let deadline = std::time::Instant::now() + SYNC;
    loop {
        let log = sb.agent().log();
        if log_has(&log, &["synced"]) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sync within {SYNC:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pins_exist(sb: &Sandbox) -> bool {
    sb.pins().join("maps").exists() || sb.pins().join("links").exists()
}

/// Our netlink TC filters (the baseline's, and what kernels before 6.6 get) on the
/// node's interfaces: `tc filter show` lines naming the program.
fn tc_filters(sb: &Sandbox) -> Vec<String> {
    let mut out = Vec::new();
    for iface in ["ext0", "pod1"] {
        let shown = sb
            .topo
            .node
            .run("tc", &["filter", "show", "dev", iface, "ingress"])
            .unwrap_or_default();
        out.extend(
            shown
                .lines()
                .filter(|l| l.contains("svclb_tc"))
                .map(|l| format!("{iface}: {l}")),
        );
    }
    out
}

fn cleanup(sb: &Sandbox) {
    let mut cmd = process::command(Some(sb.topo.node.name()), &sb.bins().agent).unwrap();
    cmd.arg("cleanup").arg("--bpffs").arg(sb.pins());
    process::run(cmd, Duration::from_secs(30)).unwrap();
}

/// The bounding set of a process (CapBnd in /proc/PID/status).
fn cap_bounding(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// BPF denied (CAP_BPF, CAP_SYS_ADMIN and CAP_PERFMON dropped from the bounding set by
/// capsh; with kernel.unprivileged_bpf_disabled set, bpf() then fails): the agent in
/// the default `auto` mode says why it passed over ebpf and ipvs, comes up in iptables
/// mode and serves.
#[test]
fn without_bpf_auto_mode_falls_back_to_iptables_and_serves() {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap();
    assert_ne!(
        disabled.trim(),
        "0",
        "this test needs bpf() to fail without CAP_BPF"
    );
    let mut sb = sandbox();
    sb.set_agent_wrapper(&[
        "capsh",
        "--drop=cap_bpf,cap_sys_admin,cap_perfmon",
        "--",
        "-c",
        "exec \"$0\" \"$@\"",
    ]);
    sb.start_agent(&[]).unwrap();
    let agent = sb.agent();
    let bnd = cap_bounding(agent.pid());
    for cap in [CAP_BPF, CAP_SYS_ADMIN, CAP_PERFMON] {
        assert_eq!(
            bnd & (1 << cap),
            0,
            "capability {cap} still in the agent's bounding set {bnd:#x}"
        );
    }
    agent
        .wait_dump("every frontend", SYNC, all_frontends)
        .unwrap();
    let log = agent.log();
    assert!(
        log_has(
            &log,
            &[
                "data path mode not used",
                "mode=\"ebpf\"",
                "loading the eBPF object"
            ]
        ),
        "{log}"
    );
    assert!(
        log_has(
            &log,
            &["data path mode not used", "mode=\"ipvs\"", "no IPVS"]
        ),
        "{log}"
    );
    assert!(
        log_has(
            &log,
            &[
                "data path mode chosen",
                "mode=\"iptables\"",
                "requested=Auto"
            ]
        ),
        "{log}"
    );
    assert!(!pins_exist(&sb), "the failed eBPF attempt left pins");
    assert!(
        iptables_save(&sb.topo.node, "nft", "nat")
            .unwrap()
            .contains(":KUBE-SERVICES")
    );
    serves(&sb);
}

/// `--proxy-mode ipvs` on a kernel without IPVS: the reason is logged and the agent runs
/// (and serves) in iptables mode, as kube-proxy did. On a kernel with IPVS (the VMs) it
/// runs IPVS mode and serves.
#[test]
fn ipvs_mode_without_ipvs_in_the_kernel_falls_back_to_iptables() {
    let mut sb = sandbox();
    sb.start_agent(&["--proxy-mode", "ipvs"]).unwrap();
    let agent = sb.agent();
    agent
        .wait_dump("every frontend", SYNC, all_frontends)
        .unwrap();
    let log = agent.log();
    if svclb_agent::dataplane::ipvs::probe().is_ok() {
        assert!(
            log_has(&log, &["data path mode chosen", "mode=\"ipvs\""]),
            "{log}"
        );
        assert!(!pins_exist(&sb));
        serves(&sb);
        return;
    }
    assert!(
        log_has(
            &log,
            &["data path mode not used", "mode=\"ipvs\"", "no IPVS"]
        ),
        "{log}"
    );
    assert!(
        !log_has(&log, &["mode=\"ebpf\""]),
        "ipvs mode must not try eBPF: {log}"
    );
    assert!(
        log_has(
            &log,
            &[
                "data path mode chosen",
                "mode=\"iptables\"",
                "requested=Ipvs"
            ]
        ),
        "{log}"
    );
    assert!(!pins_exist(&sb));
    serves(&sb);
}

/// ebpf → iptables → ebpf on the same node and bpffs: each start removes the other
/// mode's state and serves.
#[test]
fn switching_modes_removes_what_the_other_mode_left() {
    for ebpf in [Mode::Ebpf, Mode::EbpfBaseline] {
        switch_modes(ebpf);
    }
}

fn switch_modes(ebpf: Mode) {
    let mut sb = sandbox();
    sb.start_agent(ebpf.agent_args()).unwrap();
    sb.agent()
        .wait_dump("every frontend (ebpf)", SYNC, all_frontends)
        .unwrap();
    assert!(pins_exist(&sb));
    assert_eq!(
        tc_filters(&sb).is_empty(),
        ebpf == Mode::Ebpf,
        "netlink TC filters exactly in the baseline: {:?}",
        tc_filters(&sb)
    );
    assert!(!has_kube_chains(&sb.topo.node).unwrap());
    serves(&sb);

    sb.restart_agent(Mode::Iptables.agent_args()).unwrap();
    let log = wait_synced(&mut sb);
    sb.agent()
        .wait_dump("every frontend (iptables)", SYNC, all_frontends)
        .unwrap();
    assert!(
        log_has(
            &log,
            &["removed the eBPF programs and pins of an earlier run"]
        ),
        "{log}"
    );
    assert!(!pins_exist(&sb), "eBPF pins left in iptables mode");
    assert_eq!(tc_filters(&sb), Vec::<String>::new(), "TC filters left");
    assert!(has_kube_chains(&sb.topo.node).unwrap());
    serves(&sb);

    sb.restart_agent(ebpf.agent_args()).unwrap();
    let log = wait_synced(&mut sb);
    sb.agent()
        .wait_dump("every frontend (ebpf again)", SYNC, all_frontends)
        .unwrap();
    assert!(log_has(&log, &["removed iptables chains"]), "{log}");
    assert!(
        !has_kube_chains(&sb.topo.node).unwrap(),
        "KUBE-* chains left in ebpf mode"
    );
    let nat = iptables_save(&sb.topo.node, "nft", "nat").unwrap();
    assert!(
        !nat.contains("KUBE-"),
        "jumps into removed chains left:\n{nat}"
    );
    serves(&sb);
}

/// `cleanup` after either mode removes everything (pins and links; chains and jumps).
#[test]
fn cleanup_removes_every_modes_state() {
    for mode in [
        Mode::Iptables,
        Mode::IptablesLegacy,
        Mode::Ebpf,
        Mode::EbpfBaseline,
    ] {
        let mut sb = sandbox();
        sb.start_agent(mode.agent_args()).unwrap();
        sb.agent()
            .wait_dump("every frontend", SYNC, all_frontends)
            .unwrap();
        assert!(
            pins_exist(&sb) || has_kube_chains(&sb.topo.node).unwrap(),
            "{mode:?}: nothing programmed?"
        );
        sb.agent().stop();
        cleanup(&sb);
        assert!(!pins_exist(&sb), "{mode:?}: pins left");
        assert_eq!(
            tc_filters(&sb),
            Vec::<String>::new(),
            "{mode:?}: TC filters left"
        );
        assert!(
            !has_kube_chains(&sb.topo.node).unwrap(),
            "{mode:?}: KUBE-* chains left"
        );
        for backend in ["nft", "legacy"] {
            for table in ["nat", "filter"] {
                let t = iptables_save(&sb.topo.node, backend, table).unwrap();
                assert!(
                    !t.contains("KUBE-"),
                    "{mode:?}: {backend} {table} still mentions KUBE-:\n{t}"
                );
            }
        }
        // Nothing intercepts the Service address any more.
        let r = sb
            .probe(
                sb.client_pod(),
                &[
                    "tcp",
                    "--target",
                    &format!("{WEB_IP}:80"),
                    "--count",
                    "2",
                    "--timeout-ms",
                    "1000",
                ],
            )
            .unwrap();
        assert_eq!(r.ok, 0, "{mode:?}: {r:?}");
    }
}

/// In iptables mode a sync rewrites only the chains that changed: one endpoint leaving
/// web rewrites its KUBE-SVC chain and deletes its KUBE-SEP chain (2 writes), nothing
/// else; re-reading unchanged manifests writes nothing.
#[test]
fn iptables_sync_rewrites_only_changed_chains() {
    let mut sb = sandbox();
    sb.start_agent(Mode::Iptables.agent_args()).unwrap();
    sb.agent()
        .wait_dump("every frontend", SYNC, all_frontends)
        .unwrap();
    let before = iptables_save(&sb.topo.node, "nft", "nat").unwrap();
    let pods = sb.backend_ips();
    sb.manifests
        .write("svc.yaml", &services(&pods[..2], &pods))
        .unwrap();
    sb.agent()
        .wait_dump("web with 2 backends", SYNC, |d| {
            has_frontend(d, WEB_IP, 80, "TCP", 2) && has_frontend(d, DNS_IP, 53, "UDP", 3)
        })
        .unwrap();
    let log = sb.agent().log();
    let last = log.lines().rev().find(|l| l.contains(" synced ")).unwrap();
    assert!(last.contains("writes=2 "), "{last}");
    let after = iptables_save(&sb.topo.node, "nft", "nat").unwrap();
    let chains = |t: &str| -> std::collections::BTreeSet<String> {
        t.lines()
            .filter(|l| l.starts_with(":KUBE-"))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect()
    };
    let gone: Vec<_> = chains(&before)
        .difference(&chains(&after))
        .cloned()
        .collect();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(gone[0].starts_with(":KUBE-SEP-"), "{gone:?}");
    serves_web_after_removal(&sb);
}

fn serves_web_after_removal(sb: &Sandbox) {
    let r = probe(sb, sb.client_pod(), "tcp", WEB_IP, 80, 40);
    assert_eq!(r.ok, 40, "{r:?}");
    assert!(!r.backends.contains_key("pod3"), "{r:?}");
}

/// Hairpin in iptables mode: pod1, the only backend of web, reaches itself through the
/// ClusterIP (its KUBE-SEP chain masquerades traffic from the endpoint itself, so the
/// reply comes back through the node). iptables mode only: the eBPF data path does not
/// do hairpin SNAT yet (issue #4).
#[test]
fn iptables_hairpin_pod_reaches_itself_through_its_service() {
    let mut sb = Sandbox::new().unwrap();
    let pod1 = sb.backend_ips()[0];
    sb.manifests
        .write("svc.yaml", &services(&[pod1], &[pod1]))
        .unwrap();
    sb.start_agent(Mode::Iptables.agent_args()).unwrap();
    sb.agent()
        .wait_dump("web on pod1", SYNC, |d| {
            has_frontend(d, WEB_IP, 80, "TCP", 1)
        })
        .unwrap();
    let r = probe(&sb, &sb.topo.pod(1).ns, "tcp", WEB_IP, 80, 10);
    assert_eq!(r.ok, 10, "{r:?}");
    assert_eq!(r.backends.keys().collect::<Vec<_>>(), ["pod1"], "{r:?}");
}

/// `dump --mode` reads the named mode and fails clearly when that mode holds nothing.
#[test]
fn dump_reads_the_mode_it_is_told() {
    let mut sb = sandbox();
    sb.start_agent(Mode::Iptables.agent_args()).unwrap();
    let auto = sb
        .agent()
        .wait_dump("every frontend", SYNC, all_frontends)
        .unwrap();
    let dump = |mode: &str| {
        let mut cmd = process::command(Some(sb.topo.node.name()), &sb.bins().agent).unwrap();
        cmd.args(["dump", "--json", "--mode", mode, "--bpffs"])
            .arg(sb.pins());
        process::run(cmd, Duration::from_secs(30))
    };
    let explicit: Value = serde_json::from_str(&dump("iptables").unwrap()).unwrap();
    assert_eq!(explicit["frontends"], auto["frontends"]);
    let err = format!("{:#}", dump("ebpf").unwrap_err());
    assert!(err.contains("exit status"), "{err}");
}
