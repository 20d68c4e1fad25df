//! `cargo xtask kind-e2e`: svclb in a kind cluster without kube-proxy (one control plane,
//! two workers). Builds and loads the image, applies deploy/, deploys the sample app
//! (deploy/kind/sample-app.yaml) and checks it from inside a pod (ClusterIP by name and
//! by address, ClientIP affinity) and from outside the nodes (the NodePort on every
//! node's address, from the host and from another node). The cluster is deleted on every
//! exit path, Ctrl-C included. Needs a Docker engine, kind and kubectl: checked first.
use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{cmd, docker};

const CLUSTER: &str = "svclb-e2e";
const NS: &str = "svclb-e2e";
const NODE_PORT: u16 = 30080;
/// Requests per check: enough that three replicas all answer (the chance that 30 random
/// picks miss one of three is 3·(2/3)^30 ≈ 1.6e-5).
const REQUESTS: usize = 30;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The kind cluster; deleted on drop.
struct Cluster {
    kubeconfig: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        println!("kind-e2e: deleting cluster {CLUSTER}");
        let _ = cmd::run(Command::new("kind").args(["delete", "cluster", "--name", CLUSTER]));
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

impl Cluster {
    fn kubectl(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig);
        c
    }

    fn kubectl_run(&self, args: &[&str]) -> Result<()> {
        check_interrupt()?;
        cmd::run(self.kubectl().args(args))
    }

    fn kubectl_out(&self, args: &[&str]) -> Result<String> {
        check_interrupt()?;
        let mut c = self.kubectl();
        c.args(args);
        let out = c
            .output()
            .with_context(|| format!("running {}", cmd::describe(&c)))?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                cmd::describe(&c),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Stdout of `docker ARGS`, trimmed.
fn docker(args: &[&str]) -> Result<String> {
    let mut c = Command::new("docker");
    c.args(args);
    let out = c
        .output()
        .with_context(|| format!("running {}", cmd::describe(&c)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            cmd::describe(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn run() -> Result<()> {
    docker::require(
        "cargo xtask kind-e2e",
        &[
            ("kind", "https://kind.sigs.k8s.io"),
            (
                "kubectl",
                "`cargo xtask setup` installs Debian's kubernetes-client",
            ),
        ],
    )?;
    let clusters = cmd::output(Command::new("kind").args(["get", "clusters"])).unwrap_or_default();
    if clusters.lines().any(|l| l.trim() == CLUSTER) {
        bail!(
            "a kind cluster named {CLUSTER} exists already; delete it first (kind delete cluster --name {CLUSTER})"
        );
    }
    // A handler, not SIG_IGN: children (kind, kubectl, docker) still die on Ctrl-C, the
    // step fails, and the cluster guard deletes the cluster.
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };

    let root = cmd::workspace_root();
    docker::build_image()?;
    let kubeconfig =
        std::env::temp_dir().join(format!("svclb-kind-e2e-{}.kubeconfig", std::process::id()));
    let cluster = Cluster {
        kubeconfig: kubeconfig.clone(),
    };
    cmd::run(
        Command::new("kind")
            .args(["create", "cluster", "--name", CLUSTER, "--config"])
            .arg(root.join("deploy/kind/cluster.yaml"))
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    )?;
    check_interrupt()?;
    cmd::run(Command::new("kind").args([
        "load",
        "docker-image",
        docker::IMAGE,
        "--name",
        CLUSTER,
    ]))?;

    let nodes: Vec<String> = cluster
        .kubectl_out(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"])?
        .split_whitespace()
        .map(String::from)
        .collect();
    if nodes.len() != 3 {
        bail!("expected 3 nodes, got {nodes:?}");
    }
    let mut node_ips = Vec::new();
    for node in &nodes {
        // The agent pins under /sys/fs/bpf: make sure bpffs is mounted in the node.
        docker(&[
            "exec",
            node,
            "sh",
            "-c",
            "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf",
        ])?;
        node_ips.push(docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            node,
        ])?);
    }
    let control_plane = format!("{CLUSTER}-control-plane");
    let cp_ip = node_ips[nodes
        .iter()
        .position(|n| *n == control_plane)
        .context("no control-plane node")?]
    .clone();

    // With no kube-proxy, the agent cannot reach the apiserver through the `kubernetes`
    // Service before it has programmed that Service itself: point it at the real
    // apiserver (docs/operating.md, "Replacing kube-proxy").
    cluster.kubectl_run(&["create", "namespace", "svclb-system"])?;
    cluster.kubectl_run(&[
        "-n",
        "svclb-system",
        "create",
        "configmap",
        "svclb-apiserver",
        &format!("--from-literal=KUBERNETES_SERVICE_HOST={cp_ip}"),
        "--from-literal=KUBERNETES_SERVICE_PORT=6443",
    ])?;
    let deploy = root.join("deploy");
    cluster.kubectl_run(&["apply", "-k", deploy.to_str().context("path")?])?;
    cluster.kubectl_run(&[
        "-n",
        "svclb-system",
        "rollout",
        "status",
        "ds/svclb-agent",
        "--timeout=300s",
    ])?;

    let app = root.join("deploy/kind/sample-app.yaml");
    cluster.kubectl_run(&["apply", "-f", app.to_str().context("path")?])?;
    cluster.kubectl_run(&[
        "-n",
        NS,
        "rollout",
        "status",
        "deploy/web",
        "--timeout=300s",
    ])?;
    cluster.kubectl_run(&[
        "-n",
        NS,
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=300s",
    ])?;
    // The pods' links are new: the agents (`iface: auto`) attach TC to them within a
    // second; the checks below retry for a few seconds anyway.

    let mut results: Vec<(String, Result<String>)> = Vec::new();
    let cluster_ip = cluster.kubectl_out(&[
        "-n",
        NS,
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?;
    let in_pod = |url: &str| -> Result<String> {
        cluster.kubectl_out(&[
            "-n",
            NS,
            "exec",
            "client",
            "--",
            "curl",
            "-sS",
            "--max-time",
            "5",
            url,
        ])
    };
    results.push((
        format!("pod → ClusterIP {cluster_ip}:80 reaches all 3 replicas"),
        spread(REQUESTS, || in_pod(&format!("http://{cluster_ip}/")))
            .and_then(|names| expect_count(names, 3)),
    ));
    results.push((
        "pod → web.svclb-e2e.svc (DNS through the kube-dns ClusterIP)".into(),
        in_pod(&format!("http://web.{NS}.svc.cluster.local/")).map(|s| s.trim().to_string()),
    ));
    results.push((
        "pod → web-affinity (ClientIP): one replica for every request".into(),
        spread(REQUESTS, || {
            in_pod(&format!("http://web-affinity.{NS}.svc.cluster.local/"))
        })
        .and_then(|names| expect_count(names, 1)),
    ));
    for (node, ip) in nodes.iter().zip(&node_ips) {
        let url = format!("http://{ip}:{NODE_PORT}/");
        if cmd::succeeds(Command::new("sh").args(["-c", "command -v curl"])) {
            results.push((
                format!("host → NodePort {ip}:{NODE_PORT} ({node})"),
                curl_host(&url),
            ));
        }
        let from = nodes.iter().find(|n| *n != node).context("another node")?;
        results.push((
            format!("{from} → NodePort {ip}:{NODE_PORT} ({node})"),
            docker(&["exec", from, "curl", "-sS", "--max-time", "5", &url]),
        ));
    }
    let dump = cluster.kubectl_out(&[
        "-n",
        "svclb-system",
        "exec",
        "ds/svclb-agent",
        "--",
        "svclb-agent",
        "dump",
    ]);

    println!("\nkind-e2e results:");
    let mut failed = 0;
    for (what, r) in &results {
        match r {
            Ok(detail) => println!("  ok    {what}: {}", detail.trim()),
            Err(e) => {
                failed += 1;
                println!("  FAIL  {what}: {e:#}");
            }
        }
    }
    match dump {
        Ok(text) => println!("\nsvclb-agent dump on one node:\n{text}"),
        Err(e) => println!("\nsvclb-agent dump failed: {e:#}"),
    }
    drop(cluster);
    if failed > 0 {
        bail!("{failed} of {} checks failed", results.len());
    }
    println!("kind-e2e: all {} checks passed", results.len());
    Ok(())
}

/// The distinct answers (pod names) of `n` requests.
fn spread(n: usize, mut request: impl FnMut() -> Result<String>) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for _ in 0..n {
        check_interrupt()?;
        names.insert(request()?.trim().to_string());
    }
    Ok(names)
}

fn expect_count(names: BTreeSet<String>, want: usize) -> Result<String> {
    let list = names.iter().cloned().collect::<Vec<_>>().join(", ");
    if names.len() != want {
        bail!(
            "{} distinct replicas answered ({list}), expected {want}",
            names.len()
        );
    }
    Ok(list)
}

/// `curl URL` from the host, retried for a few seconds (the first packets may race the
/// agent's attachment to new pod links).
fn curl_host(url: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = cmd::output(Command::new("curl").args(["-sS", "--max-time", "5", url]));
        match r {
            Some(body) => return Ok(body),
            None if Instant::now() < deadline => thread::sleep(Duration::from_secs(1)),
            None => bail!("no answer from {url}"),
        }
    }
}
