//! deploy/: the manifests `kubectl kustomize` renders parse into the k8s-openapi types
//! and hold what the DaemonSet needs; the ClusterRole grants exactly the requests the
//! agent's own watches make (recorded against the test apiserver); every flag and config
//! key is accepted by the real binary (`run --check-config`); and kubectl creates the
//! whole of deploy/ against the test apiserver, which checks DaemonSets and RBAC objects
//! as the real one does. No root needed: the apiserver listens on 127.0.0.1 and nothing
//! touches the network or the data path.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{ConfigMap, Namespace, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use svclb_testapi::TestApiServer;
use svclb_tests::process::bin_path;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn kubectl_bin() -> &'static str {
    "kubectl"
}

/// `kubectl kustomize deploy/<sub>` as JSON documents.
fn render(sub: &str) -> Vec<Value> {
    let out = Command::new(kubectl_bin())
        .arg("kustomize")
        .arg(repo().join("deploy").join(sub))
        .output()
        .expect("running kubectl (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {docs:#?}");
    found[0]
}

/// Decodes `doc` as `T` and checks that nothing was dropped (no unknown field, no typo).
fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let t: T = serde_path_to_error::deserialize(doc)
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    assert_eq!(
        &serde_json::to_value(&t).unwrap(),
        doc,
        "{} survives a typed round trip",
        doc["kind"]
    );
    t
}

struct Rendered {
    ns: Namespace,
    sa: ServiceAccount,
    role: ClusterRole,
    binding: ClusterRoleBinding,
    config: ConfigMap,
    ds: DaemonSet,
}

fn rendered(sub: &str) -> Rendered {
    let docs = render(sub);
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "Namespace",
            "ServiceAccount"
        ]
        .into()
    );
    assert_eq!(docs.len(), 6);
    Rendered {
        ns: typed(one(&docs, "Namespace")),
        sa: typed(one(&docs, "ServiceAccount")),
        role: typed(one(&docs, "ClusterRole")),
        binding: typed(one(&docs, "ClusterRoleBinding")),
        config: typed(one(&docs, "ConfigMap")),
        ds: typed(one(&docs, "DaemonSet")),
    }
}

fn agent_container(ds: &DaemonSet) -> &k8s_openapi::api::core::v1::Container {
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

#[test]
fn daemonset_runs_everywhere_with_four_capabilities() {
    let r = rendered("");
    let ns = r.ns.metadata.name.as_deref().unwrap();
    assert_eq!(ns, "svclb-system");
    assert_eq!(r.sa.metadata.namespace.as_deref(), Some(ns));
    assert_eq!(r.ds.metadata.namespace.as_deref(), Some(ns));
    assert_eq!(r.config.metadata.namespace.as_deref(), Some(ns));

    let spec = r.ds.spec.as_ref().unwrap();
    let strategy = spec.update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        strategy.rolling_update.as_ref().unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.dns_policy.as_deref(),
        Some("Default"),
        "cluster DNS is a ClusterIP the node cannot use"
    );
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.service_account_name, r.sa.metadata.name);
    // One toleration of everything: control-plane and tainted nodes too.
    let tol = pod.tolerations.as_ref().unwrap();
    assert_eq!(tol.len(), 1);
    assert_eq!(
        (
            tol[0].operator.as_deref(),
            tol[0].key.as_deref(),
            tol[0].effect.as_deref()
        ),
        (Some("Exists"), None, None)
    );

    let c = agent_container(&r.ds);
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, None, "no privileged flag in the base");
    let caps = sc.capabilities.as_ref().unwrap();
    let add: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(add, ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"].into());
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));

    let env = c.env.as_ref().unwrap();
    let node = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(
        node.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );

    // Probes on the healthz port the config file sets.
    let cfg: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&r.config.data.as_ref().unwrap()["config.yaml"]).unwrap();
    let healthz = cfg["healthz-bind-address"].as_str().unwrap();
    let port: i32 = healthz.rsplit_once(':').unwrap().1.parse().unwrap();
    for (probe, path) in [
        (&c.liveness_probe, "/livez"),
        (&c.readiness_probe, "/healthz"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port)
        );
    }

    // bpffs from the host; the config file from the ConfigMap, at the path --config names.
    let mounts = c.volume_mounts.as_ref().unwrap();
    let volumes = pod.volumes.as_ref().unwrap();
    let bpffs = mounts
        .iter()
        .find(|m| m.mount_path == "/sys/fs/bpf")
        .unwrap();
    assert_eq!(bpffs.mount_propagation.as_deref(), Some("HostToContainer"));
    let vol = volumes.iter().find(|v| v.name == bpffs.name).unwrap();
    assert_eq!(vol.host_path.as_ref().unwrap().path, "/sys/fs/bpf");
    let config_arg = c
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--config="))
        .unwrap();
    let (dir, file) = config_arg.rsplit_once('/').unwrap();
    let mount = mounts.iter().find(|m| m.mount_path == dir).unwrap();
    let vol = volumes.iter().find(|v| v.name == mount.name).unwrap();
    assert_eq!(
        vol.config_map.as_ref().unwrap().name,
        r.config.metadata.name.clone().unwrap()
    );
    assert!(r.config.data.as_ref().unwrap().contains_key(file));

    // The binding gives the role to the DaemonSet's service account.
    assert_eq!(
        r.binding.role_ref.name,
        r.role.metadata.name.clone().unwrap()
    );
    let subjects = r.binding.subjects.as_ref().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), r.sa.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace.as_deref(), Some(ns));
}

#[test]
fn privileged_overlay_differs_only_in_privilege() {
    let base = rendered("");
    let over = rendered("overlays/privileged");
    let c = agent_container(&over.ds);
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(true));
    assert_eq!(
        sc.allow_privilege_escalation,
        Some(true),
        "false is invalid with privileged"
    );
    let bpffs = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/sys/fs/bpf")
        .unwrap();
    assert_eq!(bpffs.mount_propagation.as_deref(), Some("Bidirectional"));

    // Everything else is the base's.
    let mut a = serde_json::to_value(&base.ds).unwrap();
    let mut b = serde_json::to_value(&over.ds).unwrap();
    for v in [&mut a, &mut b] {
        let c = &mut v["spec"]["template"]["spec"]["containers"][0];
        c.as_object_mut().unwrap().remove("securityContext");
        c["volumeMounts"][0]
            .as_object_mut()
            .unwrap()
            .remove("mountPropagation");
    }
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_value(&base.role).unwrap(),
        serde_json::to_value(&over.role).unwrap()
    );
}

/// (API group, resource, verb) of one apiserver request, as the apiserver's authorizer
/// sees it.
fn access_of(req: &http::Request<kube::client::Body>) -> (String, String, String) {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest),
        _ => panic!("unexpected request path {path}"),
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (req.method().as_str(), rest.len(), watch) {
        ("GET", 1, true) => "watch",
        ("GET", 1, false) => "list",
        ("GET", 2, _) => "get",
        (m, _, _) => panic!("unexpected {m} {path}"),
    };
    (group, rest[0].to_string(), verb.to_string())
}

#[test]
fn cluster_role_is_exactly_what_the_agent_requests() {
    let r = rendered("");
    let mut granted = BTreeSet::new();
    for rule in r.role.rules.iter().flatten() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for g in rule.api_groups.iter().flatten() {
            for res in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    granted.insert((g.clone(), res.clone(), verb.clone()));
                }
            }
        }
    }

    // The agent's own watches (KubeSource, as `run` starts them) against the test
    // apiserver, every request recorded, until they have listed and are watching.
    let server = TestApiServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let seen: Arc<Mutex<BTreeSet<(String, String, String)>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let record = seen.clone();
        let client = kube::client::ClientBuilder::try_from(config)
            .unwrap()
            .with_layer(&tower::util::MapRequestLayer::new(
                move |req: http::Request<kube::client::Body>| {
                    record.lock().unwrap().insert(access_of(&req));
                    req
                },
            ))
            .build();
        let (metrics, _registry) = svclb_agent::metrics::Metrics::new();
        let opts = svclb_agent::source::kube::KubeOptions {
            node_name: Some("node-1".into()),
            min_sync_period: Duration::from_millis(20),
        };
        let mut source = svclb_agent::source::kube::KubeSource::start(client, opts, metrics);
        tokio::time::timeout(Duration::from_secs(20), source.next())
            .await
            .expect("the watches list within 20 s");
        // The watch requests follow the lists; wait (bounded) until every one is open.
        for _ in 0..200 {
            if seen
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.2 == "watch")
                .count()
                >= 3
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen, granted,
        "the ClusterRole grants exactly the requests the agent makes (left: made, right: granted)"
    );
}

/// `svclb-agent <args> --check-config` with the DaemonSet's args and environment and the
/// ConfigMap's file: the effective configuration, as YAML.
fn check_config(r: &Rendered, dir: &Path) -> BTreeMap<String, serde_yaml_ng::Value> {
    let c = agent_container(&r.ds);
    let mut args: Vec<String> = c.command.iter().flatten().skip(1).cloned().collect();
    for a in c.args.iter().flatten() {
        // The ConfigMap's file, where the test can put it.
        args.push(match a.strip_prefix("--config=") {
            Some(path) => {
                let key = path.rsplit('/').next().unwrap();
                let local = dir.join(key);
                std::fs::write(&local, &r.config.data.as_ref().unwrap()[key]).unwrap();
                format!("--config={}", local.display())
            }
            None => a.clone(),
        });
    }
    args.push("--check-config".into());
    let mut cmd = Command::new(bin_path("svclb-agent").expect("cargo build --bins first"));
    cmd.args(&args).env_remove("SVCLB_LOG");
    for e in c.env.iter().flatten() {
        cmd.env(
            &e.name,
            e.value
                .clone()
                .unwrap_or_else(|| "node-from-downward-api".into()),
        );
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "svclb-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_flag_and_config_key_is_accepted_by_the_agent() {
    let dir = std::env::temp_dir().join(format!("svclb-deploy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = rendered("");
    let effective = check_config(&r, &dir);
    let file: BTreeMap<String, serde_yaml_ng::Value> =
        serde_yaml_ng::from_str(&r.config.data.as_ref().unwrap()["config.yaml"]).unwrap();
    for (key, value) in &file {
        let got = &effective[key];
        let as_text = |v: &serde_yaml_ng::Value| match v {
            serde_yaml_ng::Value::Sequence(s) => s
                .iter()
                .map(|x| serde_yaml_ng::to_string(x).unwrap())
                .collect::<Vec<_>>(),
            other => vec![serde_yaml_ng::to_string(other).unwrap()],
        };
        let norm = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().trim_matches('\'').to_string())
                .collect()
        };
        assert_eq!(norm(as_text(got)), norm(as_text(value)), "config key {key}");
    }
    assert_eq!(
        effective["hostname-override"].as_str(),
        Some("node-from-downward-api")
    );
    let over = rendered("overlays/privileged");
    assert_eq!(check_config(&over, &dir), effective);
    std::fs::remove_dir_all(&dir).unwrap();
}

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn new(server: &TestApiServer, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server.kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            kubeconfig,
            cache: dir.join("cache"),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=20s")
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

#[test]
fn kubectl_creates_deploy_against_the_test_apiserver() {
    let dir = std::env::temp_dir().join(format!("svclb-deploy-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = repo().join("deploy");
    let overlay = base.join("overlays/privileged");
    let (base, overlay) = (base.to_str().unwrap(), overlay.to_str().unwrap());

    // Server-side dry run on a cluster that has only the namespace: everything is
    // validated and stamped, nothing stored.
    let server = TestApiServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let k = Kubectl::new(&server, &dir);
    // (`kubectl create namespace` would send protobuf, which the test apiserver does
    // not speak.)
    let ns = dir.join("ns.json");
    std::fs::write(
        &ns,
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"svclb-system"}}"#,
    )
    .unwrap();
    k.run(&["create", "-f", ns.to_str().unwrap()]).unwrap();
    let out = k.run(&["apply", "--dry-run=server", "-k", base]).unwrap();
    assert!(
        out.contains("daemonset.apps/svclb-agent created (server dry run)"),
        "{out}"
    );
    assert!(
        k.run(&["-n", "svclb-system", "get", "daemonset", "svclb-agent"])
            .is_err(),
        "dry run stored nothing"
    );
    k.run(&["apply", "--dry-run=server", "-k", overlay])
        .unwrap();
    drop(server);

    // The real thing on a fresh cluster: every object created, as rendered.
    let server = TestApiServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let k = Kubectl::new(&server, &dir.join("2"));
    let out = k.run(&["create", "-k", base]).unwrap();
    for line in [
        "namespace/svclb-system created",
        "serviceaccount/svclb-agent created",
        "clusterrole.rbac.authorization.k8s.io/svclb-agent created",
        "clusterrolebinding.rbac.authorization.k8s.io/svclb-agent created",
        "configmap/svclb-agent created",
        "daemonset.apps/svclb-agent created",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    let o = server.objects();
    let ds: DaemonSet = serde_json::from_value(
        o.get("DaemonSet", Some("svclb-system"), "svclb-agent")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        agent_container(&ds).image.as_deref(),
        Some("svclb/svclb-agent:0.1.0")
    );
    o.get("ClusterRole", None, "svclb-agent").unwrap();

    // The overlay over it, dry run: accepted (privileged may use Bidirectional), and the
    // stored DaemonSet is still the unprivileged one.
    let out = k
        .run(&["apply", "--dry-run=server", "-k", overlay])
        .unwrap();
    assert!(
        out.contains("daemonset.apps/svclb-agent configured (server dry run)"),
        "{out}"
    );
    let ds: DaemonSet = serde_json::from_value(
        o.get("DaemonSet", Some("svclb-system"), "svclb-agent")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        agent_container(&ds)
            .security_context
            .as_ref()
            .unwrap()
            .privileged,
        None
    );

    // And the apiserver refuses what the base avoids: Bidirectional without privileged.
    let broken = serde_json::to_string(&serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "broken", "namespace": "svclb-system"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i",
                "volumeMounts": [{"name": "bpffs", "mountPath": "/sys/fs/bpf", "mountPropagation": "Bidirectional"}]}],
                "volumes": [{"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf"}}]}}}
    }))
    .unwrap();
    let path = dir.join("broken.json");
    std::fs::write(&path, broken).unwrap();
    let err = k
        .run(&["create", "--dry-run=server", "-f", path.to_str().unwrap()])
        .unwrap_err();
    assert!(
        err.contains("Bidirectional mount propagation is available only to privileged containers"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// deploy/kind: the cluster has no kube-proxy and two workers; the sample app parses
/// into the k8s-openapi types and has what `cargo xtask kind-e2e` checks.
#[test]
fn kind_files_are_what_the_e2e_expects() {
    use k8s_openapi::api::{
        apps::v1::Deployment,
        core::v1::{Pod, Service},
    };
    let kind_dir = repo().join("deploy/kind");
    let cluster: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(kind_dir.join("cluster.yaml")).unwrap())
            .unwrap();
    assert_eq!(cluster["kind"].as_str(), Some("Cluster"));
    assert_eq!(
        cluster["networking"]["kubeProxyMode"].as_str(),
        Some("none")
    );
    let roles: Vec<&str> = cluster["nodes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["control-plane", "worker", "worker"]);

    let text = std::fs::read_to_string(kind_dir.join("sample-app.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            serde_json::to_value(
                <serde_yaml_ng::Value as serde::Deserialize>::deserialize(d).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let mut services = BTreeMap::new();
    for d in &docs {
        match d["kind"].as_str().unwrap() {
            "Namespace" => drop(typed::<Namespace>(d)),
            "ConfigMap" => drop(typed::<ConfigMap>(d)),
            "Pod" => drop(typed::<Pod>(d)),
            "Deployment" => {
                let dep: Deployment = typed(d);
                assert_eq!(dep.spec.unwrap().replicas, Some(3));
            }
            "Service" => {
                let s: Service = typed(d);
                services.insert(s.metadata.name.clone().unwrap(), s.spec.unwrap());
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(services["web"].type_, None, "ClusterIP");
    assert_eq!(services["web-nodeport"].type_.as_deref(), Some("NodePort"));
    assert_eq!(
        services["web-nodeport"].ports.as_ref().unwrap()[0].node_port,
        Some(30080)
    );
    assert_eq!(
        services["web-affinity"].session_affinity.as_deref(),
        Some("ClientIP")
    );
}
