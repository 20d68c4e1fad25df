//! Real kubectl against the test apiserver: create, get -o yaml, replace, patch, apply,
//! delete of seed-style manifests, checked by exit code, output and the stored objects.
//! kubectl is required (the project's setup installs it); without it this test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{Value, json};
use svclb_testapi::TestApiServer;

const SEED: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  labels:
    app: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  protocol: TCP
  port: 8080
endpoints:
- addresses: ["198.18.1.1"]
  conditions: {ready: true, serving: true, terminating: false}
- addresses: ["198.18.1.2"]
  conditions: {ready: true}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: web
  namespace: default
subsets:
- addresses:
  - ip: 198.18.1.1
  ports:
  - name: http
    port: 8080
"#;

fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("kubectl not found in PATH (set KUBECTL=/path/to/kubectl, or install it: apt-get install kubernetes-client)")
    })
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn new(server: &TestApiServer, dir: &Path) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        server.kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            bin: kubectl_path(),
            kubeconfig,
            cache: dir.join("cache"),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=20s")
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The client's minor version (`kubectl version --client -o json`).
    fn minor_version(&self) -> u32 {
        let v: Value =
            serde_json::from_str(&self.ok(&["version", "--client", "-o", "json"])).unwrap();
        let minor = v["clientVersion"]["minor"].as_str().unwrap();
        minor.trim_end_matches('+').parse().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

#[test]
fn kubectl_create_get_replace_patch_apply_delete() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let k = Kubectl::new(&s, dir.path());
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let seed = seed.to_str().unwrap();

    // create -f
    let out = k.ok(&["create", "-f", seed]);
    assert_eq!(
        lines(&out),
        [
            "service/web created",
            "endpointslice.discovery.k8s.io/web-abc created",
            "endpoints/web created"
        ]
    );
    let objects = s.objects();
    let svc = objects.get("Service", Some("default"), "web").unwrap();
    assert_eq!(svc["metadata"]["labels"]["app"], "web");

    // get svc,endpointslices -o yaml: a List of both, as stored.
    let out = k.ok(&["get", "svc,endpointslices", "-o", "yaml"]);
    let list: Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], svc);
    assert_eq!(items[1]["kind"], "EndpointSlice");
    assert_eq!(items[1]["endpoints"][1]["addresses"], json!(["198.18.1.2"]));
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&node_port));

    // Table output (kubectl asks the server to print).
    let out = k.ok(&["get", "svc", "web"]);
    let table = lines(&out);
    assert_eq!(
        table[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert!(table[1].contains(&format!("80:{node_port}/TCP")), "{out}");

    // replace -f: new port and endpoints; the allocated IP and node port are kept.
    let replaced_seed = SEED
        .replace("198.18.1.2", "198.18.1.3")
        .replace("port: 80\n", "port: 81\n");
    let seed2 = dir.path().join("seed2.yaml");
    std::fs::write(&seed2, &replaced_seed).unwrap();
    let out = k.ok(&["replace", "-f", seed2.to_str().unwrap()]);
    assert_eq!(
        lines(&out),
        [
            "service/web replaced",
            "endpointslice.discovery.k8s.io/web-abc replaced",
            "endpoints/web replaced"
        ]
    );
    let svc2 = objects.get("Service", Some("default"), "web").unwrap();
    assert_eq!(svc2["spec"]["ports"][0]["port"], 81);
    assert_eq!(svc2["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
    assert_eq!(svc2["spec"]["ports"][0]["nodePort"], node_port);
    let slice = objects
        .get("EndpointSlice", Some("default"), "web-abc")
        .unwrap();
    assert_eq!(slice["endpoints"][1]["addresses"], json!(["198.18.1.3"]));

    // patch --type merge, and of the status subresource.
    let out = k.ok(&[
        "patch",
        "svc",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"front"}}}"#,
    ]);
    assert_eq!(lines(&out), ["service/web patched"]);
    assert_eq!(
        objects.get("Service", Some("default"), "web").unwrap()["metadata"]["labels"]["tier"],
        "front"
    );
    let status_patch = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"198.18.2.1"}]}}}"#;
    if k.ok(&["patch", "--help"]).contains("--subresource") {
        k.ok(&[
            "patch",
            "svc",
            "web",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            status_patch,
        ]);
    } else {
        // kubectl before 1.24 has no --subresource: the status is set over HTTP instead.
        eprintln!("note: this kubectl has no `patch --subresource`; patching the status over HTTP");
        let r = patch(
            s.addr(),
            &format!("{SERVICES}/web/status"),
            "application/merge-patch+json",
            &serde_json::from_str(status_patch).unwrap(),
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        objects.get("Service", Some("default"), "web").unwrap()["status"]["loadBalancer"]["ingress"]
            [0]["ip"],
        "198.18.2.1"
    );
    let ip = k.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ]);
    assert_eq!(ip, "198.18.2.1");

    // Server-side strict field validation answers kubectl's --validate=strict (1.25+);
    // older kubectl does not ask for it and gets the server default, a warning.
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  bogus: 1\n  ports:\n  - port: 80\n";
    let out = k.run(&["create", "-f", "-"], Some(bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if k.minor_version() >= 25 {
        assert!(!out.status.success());
        assert!(stderr.contains("strict decoding error: unknown field \"spec.bogus\""));
    } else {
        assert!(out.status.success());
        assert!(
            stderr.contains("Warning: unknown field \"spec.bogus\""),
            "{stderr}"
        );
        k.ok(&["delete", "svc", "bad"]);
    }
    // An invalid object is refused with the field named.
    let invalid =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 70000\n";
    let out = k.run(&["create", "-f", "-"], Some(invalid));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.ports[0].port: Invalid value: 70000")
    );
    // Creating again: AlreadyExists.
    let out = k.run(&["create", "-f", seed], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(AlreadyExists)"));

    // delete -f (kubectl waits for the objects to be gone).
    let out = k.ok(&["delete", "-f", seed]);
    assert_eq!(
        lines(&out),
        [
            "service \"web\" deleted",
            "endpointslice.discovery.k8s.io \"web-abc\" deleted",
            "endpoints \"web\" deleted"
        ]
    );
    assert!(objects.list("Service", None).unwrap().is_empty());
    assert!(objects.list("EndpointSlice", None).unwrap().is_empty());
    let out = k.run(&["get", "svc,endpointslices"], None);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found in default namespace.")
    );

    // apply (client-side: last-applied annotation and strategic merge patches).
    let out = k.ok(&["apply", "-f", seed]);
    assert_eq!(
        lines(&out),
        [
            "service/web created",
            "endpointslice.discovery.k8s.io/web-abc created",
            "endpoints/web created"
        ]
    );
    let out = k.ok(&["apply", "-f", seed2.to_str().unwrap()]);
    assert_eq!(
        lines(&out),
        [
            "service/web configured",
            "endpointslice.discovery.k8s.io/web-abc configured",
            "endpoints/web configured"
        ]
    );
    let svc3 = objects.get("Service", Some("default"), "web").unwrap();
    let ports: Vec<u64> = svc3["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [81]);
    assert_eq!(
        objects
            .get("EndpointSlice", Some("default"), "web-abc")
            .unwrap()["endpoints"][1]["addresses"],
        json!(["198.18.1.3"])
    );
}

#[test]
fn kubectl_lists_cluster_scoped_and_uses_short_names() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let k = Kubectl::new(&s, dir.path());
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\n  labels:\n    node-role.kubernetes.io/worker: \"\"\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 198.18.5.1\n  conditions:\n  - type: Ready\n    status: \"True\"\n  nodeInfo:\n    kubeletVersion: v1.34.0\n    architecture: amd64\n    bootID: b\n    containerRuntimeVersion: c\n    kernelVersion: k\n    kubeProxyVersion: p\n    machineID: m\n    operatingSystem: linux\n    osImage: o\n    systemUUID: u\n";
    let out = k.run(&["create", "-f", "-"], Some(node));
    assert!(out.status.success());
    let out = k.ok(&["get", "no", "-o", "wide"]);
    let row: Vec<&str> = lines(&out)[1].split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[2], row[5]),
        ("node-a", "Ready", "worker", "198.18.5.1")
    );
    let out = k.ok(&["get", "ns", "-o", "name"]);
    assert!(lines(&out).contains(&"namespace/kube-system"));
    let out = k.run(&["apply", "-f", "-"], Some(SEED));
    assert!(out.status.success());
    assert_eq!(lines(&k.ok(&["get", "svc", "-o", "name"])), ["service/web"]);
    assert_eq!(
        lines(&k.ok(&["get", "ep", "-o", "name"])),
        ["endpoints/web"]
    );
    assert_eq!(
        lines(&k.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name"
        ])),
        ["endpointslice.discovery.k8s.io/web-abc"]
    );
    assert_eq!(
        lines(&k.ok(&[
            "get",
            "svc",
            "--field-selector",
            "metadata.name=web",
            "-o",
            "name"
        ])),
        ["service/web"]
    );
    k.ok(&["delete", "svc", "web"]);
    assert!(k.ok(&["get", "svc", "-o", "name"]).trim().is_empty());
}

/// Seed 000: a Service without a selector and its Endpoints written by hand.
const SEED_000: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: default
spec:
  ports:
  - port: 5432
    targetPort: 5432
---
apiVersion: v1
kind: Endpoints
metadata:
  name: db
  namespace: default
subsets:
- addresses:
  - ip: 198.18.1.1
  - ip: 198.18.1.2
  ports:
  - port: 5432
"#;

/// The mirrored slices of `name` as JSON, once `ready` holds (bounded: 10 s).
fn wait_slices(k: &Kubectl, name: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let selector = format!("kubernetes.io/service-name={name}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = k.ok(&["get", "endpointslices", "-l", &selector, "-o", "json"]);
        let items = serde_json::from_str::<Value>(&out).unwrap()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ready(&items) {
            return items;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mirrored slices of {name} not as expected: {items:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn addresses(slices: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["addresses"][0].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

#[test]
fn hand_written_endpoints_of_a_selectorless_service_are_mirrored_and_described() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let k = Kubectl::new(&s, dir.path());
    assert!(
        k.run(&["apply", "-f", "-"], Some(SEED_000))
            .status
            .success()
    );
    let slices = wait_slices(&k, "db", |s| s.len() == 1);
    assert_eq!(
        slices[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(addresses(&slices), ["198.18.1.1", "198.18.1.2"]);
    // The real apiserver's defaults, which kubectl describe dereferences.
    assert_eq!(
        slices[0]["ports"],
        json!([{"name": "", "port": 5432, "protocol": "TCP"}])
    );
    let get = k.ok(&["get", "endpoints", "db"]);
    assert!(get.contains("198.18.1.1:5432,198.18.1.2:5432"), "{get}");
    let describe = k.ok(&["describe", "svc", "db"]);
    assert!(
        lines(&describe)
            .iter()
            .any(|l| l.starts_with("Endpoints:") && l.ends_with(" 198.18.1.1:5432,198.18.1.2:5432")),
        "{describe}"
    );
    let describe = k.ok(&["describe", "endpoints", "db"]);
    assert!(describe.contains("198.18.1.1,198.18.1.2"), "{describe}");

    // An address leaves the Endpoints: the slice follows.
    let fewer = SEED_000.replace("  - ip: 198.18.1.2\n", "");
    assert!(k.run(&["apply", "-f", "-"], Some(&fewer)).status.success());
    wait_slices(&k, "db", |s| addresses(s) == ["198.18.1.1"]);
    // skip-mirror: the slice goes; taking the label off brings it back.
    k.ok(&[
        "label",
        "endpoints",
        "db",
        "endpointslice.kubernetes.io/skip-mirror=true",
    ]);
    wait_slices(&k, "db", <[Value]>::is_empty);
    k.ok(&[
        "label",
        "endpoints",
        "db",
        "endpointslice.kubernetes.io/skip-mirror-",
    ]);
    wait_slices(&k, "db", |s| s.len() == 1);
    // A selector makes the Service the EndpointSlice controller's: no mirror.
    k.ok(&[
        "patch",
        "svc",
        "db",
        "-p",
        r#"{"spec":{"selector":{"app":"db"}}}"#,
    ]);
    wait_slices(&k, "db", <[Value]>::is_empty);
    k.ok(&[
        "patch",
        "svc",
        "db",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/selector"}]"#,
    ]);
    wait_slices(&k, "db", |s| s.len() == 1);
    // The Endpoints deleted: the mirror too.
    k.ok(&["delete", "endpoints", "db"]);
    wait_slices(&k, "db", <[Value]>::is_empty);
}

#[test]
fn without_mirroring_hand_written_endpoints_stay_alone() {
    let s = svclb_testapi::TestApiServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        svclb_testapi::Config {
            mirroring: false,
            ..Default::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let k = Kubectl::new(&s, dir.path());
    assert!(
        k.run(&["apply", "-f", "-"], Some(SEED_000))
            .status
            .success()
    );
    // The controller would have written within milliseconds; give it a second.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(wait_slices(&k, "db", |_| true).is_empty());
}
