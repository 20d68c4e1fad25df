//! The ingress scenario: nginx in a pod, as an ingress controller would run it, behind a
//! NodePort Service, routing by Host header to two ClusterIP Services of two pods each.
//! The external client's curl goes NodePort → nginx pod → ClusterIP → backend pod, and
//! each Host reaches exactly its Service's pods. Needs root.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use svclb_tests::{
    agent::has_frontend,
    in_mode,
    manifests::{self, ServicePort, SlicePort, Target},
    modes::Mode,
    netns::NetNs,
    process::{self, Process},
    sandbox::{POD_HTTP_PORT, TempDir},
    topology::{NODE_IP, Pod, pod_ip},
};

const ALPHA_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 41);
const BETA_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 42);
const INGRESS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 40);
const INGRESS_NODE_PORT: u16 = 30100;
/// nginx's port in its pod.
const NGINX_PORT: u16 = 8088;
const SYNC: Duration = Duration::from_secs(10);
const REQUESTS: usize = 20;

fn http() -> SlicePort<'static> {
    SlicePort {
        name: "http",
        protocol: "TCP",
        port: POD_HTTP_PORT,
    }
}

/// alpha → pods 1, 2; beta → pods 3, 4; ingress (NodePort) → nginx in pod 5.
fn manifests() -> String {
    let web = |name, ip| {
        manifests::service(
            name,
            ip,
            Some(name),
            &[ServicePort::tcp(
                Some("http"),
                80,
                Target::Number(POD_HTTP_PORT),
            )],
        )
    };
    let nginx = SlicePort {
        name: "http",
        protocol: "TCP",
        port: NGINX_PORT,
    };
    manifests::documents(&[
        web("alpha", ALPHA_IP),
        manifests::endpoint_slice("alpha", "alpha-1", &[http()], &[pod_ip(1), pod_ip(2)]),
        web("beta", BETA_IP),
        manifests::endpoint_slice("beta", "beta-1", &[http()], &[pod_ip(3), pod_ip(4)]),
        manifests::service(
            "ingress",
            INGRESS_IP,
            Some("ingress"),
            &[
                ServicePort::tcp(Some("http"), 80, Target::Number(NGINX_PORT))
                    .with_node_port(INGRESS_NODE_PORT),
            ],
        ),
        manifests::endpoint_slice("ingress", "ingress-1", &[nginx], &[pod_ip(5)]),
    ])
}

/// An ingress controller's generated configuration: one server per Host, proxying to
/// the Service's ClusterIP; everything under `dir`, nothing in root-owned paths.
fn nginx_conf(dir: &Path, listen: Ipv4Addr) -> String {
    let d = dir.display();
    let server = |host: &str, upstream: Ipv4Addr| {
        format!(
            "  server {{\n    listen {listen}:{NGINX_PORT};\n    server_name {host};\n    \
             location / {{ proxy_pass http://{upstream}:80; }}\n  }}\n"
        )
    };
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         {}{}  server {{\n    listen {listen}:{NGINX_PORT} default_server;\n    return 404;\n  }}\n}}\n",
        server("alpha.test", ALPHA_IP),
        server("beta.test", BETA_IP),
    )
}

/// nginx in the foreground in `pod`: killed with its [`Process`] on every exit path.
fn nginx(pod: &Pod, dir: &Path) -> Process {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, pod.ip())).unwrap();
    let mut cmd = pod.ns.command("/usr/sbin/nginx").unwrap();
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr"]);
    Process::spawn("nginx", cmd, &dir.join("nginx.log")).unwrap()
}

/// `curl -H "Host: HOST" http://ADDR:PORT/`: (status, body).
fn curl(ns: &NetNs, host: &str, addr: Ipv4Addr, port: u16) -> (u16, String) {
    try_curl(ns, host, addr, port).unwrap()
}

/// Like [`curl`]; an error when nothing answers (curl fails).
fn try_curl(ns: &NetNs, host: &str, addr: Ipv4Addr, port: u16) -> anyhow::Result<(u16, String)> {
    let mut cmd = process::command(Some(ns.name()), "curl").unwrap();
    cmd.args([
        "-sS",
        "--max-time",
        "3",
        "-w",
        "\n%{http_code}",
        "-H",
        &format!("Host: {host}"),
    ])
    .arg(format!("http://{addr}:{port}/"));
    let out = process::run(cmd, Duration::from_secs(10))?;
    let (body, code) = out.rsplit_once('\n').unwrap();
    Ok((code.trim().parse()?, body.trim().to_owned()))
}

fn nodeport_to_nginx_to_clusterip_routes_by_host(m: Mode) {
    let mut sb = m.sandbox_with(4).unwrap();
    let dir = TempDir::named("nginx").unwrap();
    // The client pod (pod5) is nobody's backend: it becomes the ingress controller.
    let nginx_pod = sb.topo.pod(5);
    let proc = nginx(nginx_pod, dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    // Not listening yet: curl fails; listening: the unknown Host gets 404.
    while try_curl(sb.client(), "nothing.test", nginx_pod.ip(), NGINX_PORT)
        .map(|r| r.0)
        .ok()
        != Some(404)
    {
        assert!(
            Instant::now() < deadline,
            "nginx does not answer:\n{}",
            proc.stderr()
        );
        thread::sleep(Duration::from_millis(100));
    }

    sb.manifests.write("ingress.yaml", &manifests()).unwrap();
    sb.topo.client_like_nic().unwrap();
    sb.start_agent(&m.args_with(&["--xdp-iface", "ext0"]))
        .unwrap();
    sb.agent()
        .wait_dump("ingress frontends", SYNC, |d| {
            has_frontend(d, ALPHA_IP, 80, "TCP", 2)
                && has_frontend(d, BETA_IP, 80, "TCP", 2)
                && has_frontend(d, NODE_IP, INGRESS_NODE_PORT, "TCP", 1)
        })
        .unwrap();

    for (host, want) in [
        ("alpha.test", ["pod1", "pod2"]),
        ("beta.test", ["pod3", "pod4"]),
    ] {
        let mut answers: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..REQUESTS {
            let (code, body) = curl(sb.client(), host, NODE_IP, INGRESS_NODE_PORT);
            assert_eq!(code, 200, "{host}: {body}\nnginx:\n{}", proc.stderr());
            *answers.entry(body).or_default() += 1;
        }
        eprintln!("Host {host} through NodePort → nginx → ClusterIP: {answers:?}");
        let got: BTreeSet<&str> = answers.keys().map(String::as_str).collect();
        assert_eq!(got, BTreeSet::from(want), "Host {host} reached {answers:?}");
    }
    // A Host no rule names gets nginx's own answer.
    assert_eq!(
        curl(sb.client(), "other.test", NODE_IP, INGRESS_NODE_PORT).0,
        404
    );
}

// Once per data-path mode (svclb_tests::in_mode): kube-proxy's iptables mode supports
// these scenarios too.

in_mode!(
    ebpf,
    svclb_tests::modes::Mode::Ebpf,
    [nodeport_to_nginx_to_clusterip_routes_by_host]
);
in_mode!(
    iptables,
    svclb_tests::modes::Mode::Iptables,
    [nodeport_to_nginx_to_clusterip_routes_by_host]
);
