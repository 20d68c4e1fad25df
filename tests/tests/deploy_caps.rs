//! The DaemonSet's capabilities are enough: the real agent, started with only the
//! capabilities deploy/ grants (as its bounding set, the way a container runtime
//! restricts root; no SYS_ADMIN) and no_new_privs (`allowPrivilegeEscalation: false`),
//! loads and attaches TC and XDP, programs the maps, serves real TCP from a pod and from
//! the external client, and `dump` works under the same capabilities. Needs root.

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use svclb_tests::{
    agent::has_frontend,
    fixtures::{WEB_IP, WEB_NODE_PORT, web},
    sandbox::{Sandbox, TempDir},
    topology::NODE_IP,
};

/// Capability bit numbers (linux/capability.h) of the names deploy/ may use.
fn cap_bit(name: &str) -> u32 {
    match name {
        "NET_ADMIN" => 12,
        "SYS_ADMIN" => 21,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other} is not known to this test"),
    }
}

fn status_mask(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// The `add` capabilities of the base DaemonSet's container.
fn daemonset_caps() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let ds = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde_json::to_value(
                <serde_yaml_ng::Value as serde::Deserialize>::deserialize(d).unwrap(),
            )
            .unwrap()
        })
        .find(|d| d["kind"] == "DaemonSet")
        .unwrap();
    // What the data path needs from the host besides capabilities: the host's cgroup v2
    // root and a writable /proc/sys/net, named in the agent's config.
    let pod = &ds["spec"]["template"]["spec"];
    let host_path = |volume: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == volume)
            .and_then(|v| v["hostPath"]["path"].as_str())
            .map(str::to_owned)
    };
    let mount = |volume: &str| {
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .cloned()
            .unwrap_or_else(|| panic!("no mount of {volume}"))
    };
    assert_eq!(host_path("cgroup2").as_deref(), Some("/sys/fs/cgroup"));
    assert_eq!(mount("cgroup2")["mountPath"], "/run/svclb/cgroupv2");
    assert_eq!(host_path("proc-sys-net").as_deref(), Some("/proc/sys/net"));
    assert_eq!(mount("proc-sys-net")["mountPath"], "/host/proc/sys/net");
    assert_ne!(mount("proc-sys-net")["readOnly"], true);
    let config = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <serde_yaml_ng::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| {
            d["kind"].as_str() == Some("ConfigMap")
                && d["metadata"]["name"].as_str() == Some("svclb-agent")
        })
        .unwrap();
    let config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(config["data"]["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(config["cgroup-root"].as_str(), Some("/run/svclb/cgroupv2"));
    assert_eq!(config["proc-sys"].as_str(), Some("/host/proc/sys"));
    let sc = &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn agent_serves_with_only_the_daemonsets_capabilities() {
    let caps = daemonset_caps();
    assert!(!caps.contains("SYS_ADMIN"));
    // What this machine can grant at all: a capability outside our own bounding set
    // (SYS_RESOURCE in some CI sandboxes) cannot be given, and running without it only
    // makes the check stricter. BPF and NET_ADMIN must be there, or nothing can load.
    let here = status_mask(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapBnd:",
    );
    let granted: BTreeSet<&str> = caps
        .iter()
        .map(String::as_str)
        .filter(|c| here & (1 << cap_bit(c)) != 0)
        .collect();
    for missing in caps.iter().filter(|c| !granted.contains(c.as_str())) {
        eprintln!("note: this machine cannot grant {missing}; the agent runs without it");
    }
    assert!(
        granted.contains("BPF") && granted.contains("NET_ADMIN"),
        "{granted:?}"
    );
    let want: u64 = granted.iter().map(|c| 1u64 << cap_bit(c)).sum();

    let dir = TempDir::named("caps").unwrap();
    let caps_file = dir.path().join("caps");
    let agent = svclb_tests::process::bin_path("svclb-agent").unwrap();
    let setpriv_caps: Vec<String> = granted
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let wrapper = dir.path().join("svclb-agent");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# The agent with the DaemonSet's capabilities only.\n\
             exec setpriv --bounding-set -all,{caps} --inh-caps -all --no-new-privs -- \
             sh -c 'grep ^Cap /proc/self/status > {file}; exec {agent} \"$@\"' svclb-agent \"$@\"\n",
            caps = setpriv_caps.join(","),
            file = caps_file.display(),
            agent = agent.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let mut sb = Sandbox::new().unwrap();
    sb.set_agent_bin(wrapper);
    let web = web(&sb.backend_ips());
    sb.manifests.write("web.yaml", &web).unwrap();
    // XDP on the external link too, so its attach runs under these capabilities.
    sb.topo.client_like_nic().unwrap();
    sb.start_agent(&["--xdp-iface", "ext0"]).unwrap();
    sb.agent()
        .wait_dump(
            "web frontends with 3 backends",
            Duration::from_secs(10),
            |d| {
                has_frontend(d, WEB_IP, 80, "TCP", 3)
                    && has_frontend(d, NODE_IP, WEB_NODE_PORT, "TCP", 3)
            },
        )
        .unwrap();

    let status = std::fs::read_to_string(&caps_file).unwrap();
    assert_eq!(status_mask(&status, "CapEff:"), want, "{status}");
    assert_eq!(status_mask(&status, "CapBnd:"), want, "{status}");

    for (ns, target) in [
        (sb.client_pod(), format!("{WEB_IP}:80")),
        (sb.client(), format!("{NODE_IP}:{WEB_NODE_PORT}")),
    ] {
        let r = sb
            .probe(ns, &["tcp", "--target", &target, "--count", "20"])
            .unwrap();
        assert_eq!(r.ok, r.attempts, "{target}: {r:?}");
        assert!(
            r.attempts == 20 && !r.backends.is_empty(),
            "{target}: {r:?}"
        );
        for b in r.backends.keys() {
            assert!(
                ["pod1", "pod2", "pod3"].contains(&b.as_str()),
                "{target}: {r:?}"
            );
        }
    }
    // The node's own clients, through the socket programs attached under these
    // capabilities; and the sysctls the agent set itself (the external client's
    // NodePort replies above depend on them).
    let r = sb
        .probe_node(&["tcp", "--target", &format!("{WEB_IP}:80"), "--count", "20"])
        .unwrap();
    assert_eq!(r.ok, 20, "node-local: {r:?}");
    let log = sb.agent().log();
    assert!(log.contains("socket programs attached"), "{log}");
    assert!(
        log.contains("node sysctls set for the eBPF data path"),
        "{log}"
    );
    // `dump` under the same capabilities, as `kubectl exec` into the agent's pod runs
    // it (its text is what docs/operating.md shows).
    let text = sb.agent().dump_text().unwrap();
    for frontend in [
        format!("TCP  {WEB_IP}:80 "),
        format!("TCP  {NODE_IP}:{WEB_NODE_PORT} "),
    ] {
        assert!(text.contains(&frontend), "{frontend:?} in {text}");
    }
    println!("{text}");
}
