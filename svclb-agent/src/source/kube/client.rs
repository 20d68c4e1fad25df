//! The apiserver client, with a record of whether the apiserver answers at all.
use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};
use kube::{
    Client, Config,
    client::ClientBuilder,
    config::{KubeConfigOptions, Kubeconfig},
};
use tokio::time::Instant;
use tower::util::MapResultLayer;

/// Whether the last request to the apiserver got an HTTP answer. Watch errors alone
/// cannot tell: a watch that resumes after an outage emits no event.
#[derive(Debug, Default)]
pub struct ApiReachability {
    /// Since when requests fail without an answer (connection refused, TLS, timeout).
    down_since: Mutex<Option<Instant>>,
}

impl ApiReachability {
    pub fn down_since(&self) -> Option<Instant> {
        *self.down_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, answered: bool) {
        let mut down = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        if answered {
            *down = None;
        } else {
            down.get_or_insert_with(Instant::now);
        }
    }
}

/// A client from `kubeconfig`, or else from `$KUBECONFIG`, `~/.kube/config` or the
/// in-cluster service account (kube's inference order). No request is made yet.
pub async fn connect(kubeconfig: Option<&Path>, reach: Arc<ApiReachability>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => Config::infer().await.context(
            "no apiserver configuration: pass --kubeconfig or --manifests, set KUBECONFIG, \
             or run in a pod with a service account",
        )?,
    };
    let cluster = config.cluster_url.to_string();
    let client = ClientBuilder::try_from(config)
        .context("building the apiserver client")?
        .with_layer(&MapResultLayer::new(observe(reach)))
        .build();
    tracing::info!(apiserver = %cluster, "apiserver client ready");
    Ok(client)
}

fn observe<R, E>(reach: Arc<ApiReachability>) -> impl Fn(Result<R, E>) -> Result<R, E> + Clone {
    move |result| {
        reach.record(result.is_ok());
        result
    }
}
