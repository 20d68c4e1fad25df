//! A sandbox with the test apiserver listening in its node namespace, a kubeconfig for
//! it, and kubectl run against it: the setup of every end-to-end test that drives the
//! agent through an apiserver.
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use svclb_testapi::TestApiServer;

use crate::{manifests, netns::unique_name, sandbox::Sandbox};

pub struct KubeEnv {
    // Field order is drop order: the sandbox (agent first) before the apiserver.
    pub sb: Sandbox,
    pub api: TestApiServer,
    /// Holds the kubeconfig, written manifests and kubectl's discovery cache.
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl KubeEnv {
    /// Starts the apiserver in `sb`'s node namespace; `role` names the temp dir.
    pub fn new(sb: Sandbox, role: &str) -> Result<Self> {
        let api = sb
            .topo
            .node
            .in_thread(|| TestApiServer::start("127.0.0.1:0".parse().expect("address")))??;
        let dir = std::env::temp_dir().join(unique_name(role));
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let kubeconfig = dir.join("kubeconfig");
        api.kubeconfig(&kubeconfig)?;
        Ok(KubeEnv {
            sb,
            api,
            dir,
            kubeconfig,
        })
    }

    /// Starts the agent watching the apiserver, with `args`.
    pub fn start_agent(&mut self, args: &[&str]) -> Result<()> {
        self.sb.start_agent_kube(&self.kubeconfig, args)?;
        Ok(())
    }

    /// `kubectl --kubeconfig … ARGS` in the node namespace, with its discovery cache in
    /// the test's directory.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let cache = self.dir.join("kube-cache");
        let mut all = vec![
            "--kubeconfig",
            self.kubeconfig.to_str().context("kubeconfig path")?,
            "--cache-dir",
            cache.to_str().context("cache path")?,
        ];
        all.extend_from_slice(args);
        self.sb.topo.node.run("kubectl", &all)
    }

    /// Writes `docs` as one manifest file `name` and returns its path.
    pub fn write(&self, name: &str, docs: &[String]) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, manifests::documents(docs))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// `kubectl VERB -f FILE` (create, replace, delete) of `docs` written to `name`.
    pub fn kubectl_file(&self, verb: &str, name: &str, docs: &[String]) -> Result<String> {
        let path = self.write(name, docs)?;
        self.kubectl(&[verb, "-f", path.to_str().context("manifest path")?])
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
