//! What the agent sets up on a stock node by itself: the sysctls its data path needs
//! (systemd's `rp_filter=2` and RHEL's `1`, `accept_local=0`), on the interfaces it
//! attaches to and on those it attaches to later, leaving every other interface as
//! strict as it was; `ip_forward=0` reported, not changed; `route_localnet` in iptables
//! mode; and a bpffs mounted where none is, so that `--mode auto` still chooses eBPF.
//! Real traffic through the real agent. Needs root.
use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use svclb_tests::{
    agent::has_frontend,
    fixtures::{WEB_IP, WEB_NODE_PORT, web},
    modes::Mode,
    process,
    sandbox::Sandbox,
    stock::StockNode,
    topology::{NODE_IP, pod_node_if},
};

const SYNC: Duration = Duration::from_secs(15);

fn sysctl(sb: &Sandbox, key: &str) -> String {
    sb.topo
        .node
        .run("sysctl", &["-n", key])
        .unwrap()
        .trim()
        .to_owned()
}

/// `net.ipv4.conf.<iface>.{rp_filter,accept_local}`.
fn conf(sb: &Sandbox, iface: &str) -> (String, String) {
    (
        sysctl(sb, &format!("net.ipv4.conf.{iface}.rp_filter")),
        sysctl(sb, &format!("net.ipv4.conf.{iface}.accept_local")),
    )
}

fn answered(sb: &Sandbox, from: &svclb_tests::netns::NetNs, target: &str, count: u64) -> u64 {
    sb.probe(
        from,
        &[
            "tcp",
            "--target",
            target,
            "--count",
            &count.to_string(),
            "--timeout-ms",
            "500",
        ],
    )
    .unwrap()
    .ok
}

fn web_sandbox(stock: StockNode) -> Sandbox {
    let sb = Sandbox::on(3, stock).unwrap();
    sb.manifests
        .write("web.yaml", &web(&sb.backend_ips()))
        .unwrap();
    sb
}

/// A node interface the agent does not attach to, created like the others (from
/// `default`): its effective `rp_filter` must not drop.
const OTHER_IF: &str = "other0";

fn stock_node_gets_its_sysctls(stock: StockNode) {
    let mut sb = web_sandbox(stock);
    let rp = stock.rp_filter();
    sb.topo
        .node
        .ip(&[
            "link", "add", OTHER_IF, "type", "veth", "peer", "name", "other1",
        ])
        .unwrap();
    assert_eq!(conf(&sb, OTHER_IF), (rp.to_owned(), "0".to_owned()));
    assert_eq!(conf(&sb, "ext0"), (rp.to_owned(), "0".to_owned()));
    // A pattern makes the interface set dynamic: links created later are attached.
    sb.start_agent(&Mode::Ebpf.args_with(&["--iface", "pod*"]))
        .unwrap();
    sb.agent()
        .wait_dump("web", SYNC, |d| {
            has_frontend(d, WEB_IP, 80, "TCP", 3)
                && has_frontend(d, NODE_IP, WEB_NODE_PORT, "TCP", 3)
        })
        .unwrap();
    let log = sb.agent().log();
    assert!(
        log.contains("node sysctls set for the eBPF data path"),
        "one line says what changed:\n{log}"
    );
    for iface in sb.topo.node_ifaces() {
        assert_eq!(conf(&sb, &iface), ("0".into(), "1".into()), "{iface}");
    }
    assert_eq!(sysctl(&sb, "net.ipv4.conf.all.rp_filter"), "0");
    // Every other interface keeps the effective value `all` gave it, and interfaces
    // created later still start from the node's own default.
    assert_eq!(conf(&sb, OTHER_IF), (rp.to_owned(), "0".to_owned()));
    assert_eq!(sysctl(&sb, "net.ipv4.conf.default.rp_filter"), rp);
    assert_eq!(sysctl(&sb, "net.ipv4.conf.lo.rp_filter"), rp);

    // NodePort replies leave the pod's veth reverse-translated to the node's address.
    let node_port = format!("{NODE_IP}:{WEB_NODE_PORT}");
    assert_eq!(answered(&sb, sb.client(), &node_port, 20), 20);
    assert_eq!(
        answered(&sb, sb.client_pod(), &format!("{WEB_IP}:80"), 20),
        20
    );

    // A pod link recreated: a new interface, from `default` again; the agent sets it.
    let client_pod = sb.topo.pods.last().unwrap().index;
    sb.topo.relink_pod(client_pod).unwrap();
    let iface = pod_node_if(client_pod);
    let deadline = Instant::now() + Duration::from_secs(10);
    while conf(&sb, &iface) != ("0".into(), "1".into()) {
        assert!(
            Instant::now() < deadline,
            "{iface} never got its sysctls: {:?}\n{}",
            conf(&sb, &iface),
            sb.agent().log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        sb.agent()
            .log()
            .contains("sysctls set on a newly attached interface"),
        "{}",
        sb.agent().log()
    );
    // Bounded wait for TC on the new link, then real traffic through it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered(&sb, sb.client_pod(), &format!("{WEB_IP}:80"), 3) < 3 {
        assert!(Instant::now() < deadline, "{}", sb.agent().log());
    }
    assert_eq!(
        answered(&sb, sb.client_pod(), &format!("{WEB_IP}:80"), 20),
        20
    );
    assert_eq!(answered(&sb, sb.client(), &node_port, 20), 20);
    assert_eq!(conf(&sb, OTHER_IF), (rp.to_owned(), "0".to_owned()));
}

#[test]
fn systemd_node_gets_its_sysctls_and_serves() {
    stock_node_gets_its_sysctls(StockNode::Systemd);
}

#[test]
fn rhel_node_gets_its_sysctls_and_serves() {
    stock_node_gets_its_sysctls(StockNode::Rhel);
}

#[test]
fn ip_forward_off_is_reported_and_left_alone() {
    let mut sb = web_sandbox(StockNode::Systemd);
    sb.topo.node.sysctl("net.ipv4.ip_forward", "0").unwrap();
    sb.start_agent(Mode::Ebpf.agent_args()).unwrap();
    sb.agent()
        .wait_dump("web", SYNC, |d| has_frontend(d, WEB_IP, 80, "TCP", 3))
        .unwrap();
    let log = sb.agent().log();
    assert!(log.contains("net.ipv4.ip_forward is 0"), "{log}");
    assert_eq!(sysctl(&sb, "net.ipv4.ip_forward"), "0");
}

#[test]
fn iptables_mode_sets_route_localnet_for_localhost_node_ports() {
    for (flag, want) in [
        ("--iptables-localhost-nodeports=false", "0"),
        ("--iptables-localhost-nodeports=true", "1"),
    ] {
        let mut sb = web_sandbox(StockNode::Systemd);
        sb.start_agent(&Mode::Iptables.args_with(&[flag])).unwrap();
        sb.agent()
            .wait_dump("web", SYNC, |d| has_frontend(d, WEB_IP, 80, "TCP", 3))
            .unwrap();
        assert_eq!(
            sysctl(&sb, "net.ipv4.conf.all.route_localnet"),
            want,
            "{flag}"
        );
        // The eBPF mode's sysctls are not the rule-based modes' business.
        assert_eq!(sysctl(&sb, "net.ipv4.conf.all.rp_filter"), "2", "{flag}");
    }
}

/// A directory of the test's own for `--bpffs`, off any bpffs; on drop the agent's
/// pins are cleaned, whatever was mounted there is unmounted and the directory removed.
struct ScratchPins {
    path: PathBuf,
    agent: PathBuf,
    netns: String,
}

impl Drop for ScratchPins {
    fn drop(&mut self) {
        if let Ok(mut cmd) = process::command(Some(&self.netns), &self.agent) {
            cmd.arg("cleanup").arg("--bpffs").arg(&self.path);
            if let Err(e) = process::run(cmd, Duration::from_secs(30)) {
                eprintln!("cleanup --bpffs {}: {e:#}", self.path.display());
            }
        }
        umount(&self.path);
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

fn umount(path: &Path) {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: umount2(2) with a NUL-terminated path; EINVAL when nothing is mounted.
    unsafe {
        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
    }
}

#[test]
fn auto_mounts_a_bpffs_where_none_is_and_chooses_ebpf() {
    let mut sb = web_sandbox(StockNode::Systemd);
    let dir = std::env::temp_dir().join(format!("svclb-test-bpffs-{}", std::process::id()));
    let scratch = ScratchPins {
        path: dir.join("pins"),
        agent: sb.bins().agent.clone(),
        netns: sb.topo.node.name().to_owned(),
    };
    std::fs::create_dir_all(&scratch.path).unwrap();
    sb.set_agent_bpffs(Some(scratch.path.clone()));
    sb.start_agent(&["--mode", "auto"]).unwrap();
    sb.agent()
        .wait_dump("web", SYNC, |d| has_frontend(d, WEB_IP, 80, "TCP", 3))
        .unwrap();
    let log = sb.agent().log();
    assert!(log.contains("mounted bpffs"), "{log}");
    assert!(log.contains("data path mode chosen mode=\"ebpf\""), "{log}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&format!(" {} ", scratch.path.display())) && l.contains(" - bpf ")),
        "no bpffs at {}",
        scratch.path.display()
    );
    assert_eq!(
        answered(&sb, sb.client_pod(), &format!("{WEB_IP}:80"), 10),
        10
    );
    sb.agent().stop();
    drop(scratch);
}
