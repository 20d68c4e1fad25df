//! The server handle: runs the accept loop on its own thread and Tokio runtime, so it
//! works the same from sync tests, async tests on any runtime, and the binary.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::alloc::{DEFAULT_SERVICE_CIDR, Ipv4Cidr};
use crate::hooks::{RestartRequest, Stats};
use crate::http::{AppState, router};
use crate::kubeconfig;
use crate::objects::Objects;
use crate::store::Store;

/// Server settings; `Config::default()` suits tests.
#[derive(Debug, Clone)]
pub struct Config {
    /// Changes kept for watches to resume from; older versions get 410 Expired.
    pub history: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Range cluster IPs are allocated from when a Service leaves them unset.
    pub service_cidr: Ipv4Cidr,
    /// Tokio worker threads of the server's runtime.
    pub worker_threads: usize,
    /// Run the EndpointSlice mirroring controller (hand-written Endpoints of
    /// selectorless Services → EndpointSlices), as kube-controller-manager does.
    pub mirroring: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            history: 10_000,
            bookmark_interval: Duration::from_secs(1),
            service_cidr: DEFAULT_SERVICE_CIDR,
            worker_threads: 2,
            mirroring: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("building the server runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server thread ended before it was listening")]
    ThreadDied,
}

/// A running test apiserver. Dropping it stops the server and closes every connection.
pub struct TestApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    restart: mpsc::UnboundedSender<RestartRequest>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestApiServer {
    /// Starts a server on `bind` (port 0 picks a free port) with default settings.
    pub fn start(bind: SocketAddr) -> Result<Self, StartError> {
        Self::start_with(bind, Config::default())
    }

    pub fn start_with(bind: SocketAddr, config: Config) -> Result<Self, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("svclb-testapi")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        // Bound here with std so `start` works inside another runtime too; handed to
        // Tokio on the server's own thread.
        let bind_err = |source| StartError::Bind { addr: bind, source };
        let listener = std::net::TcpListener::bind(bind).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let store = Arc::new(Store::new(config.history, config.service_cidr));
        let (restart_tx, restart_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let state = AppState {
            store: store.clone(),
            addr,
            bookmark_interval: config.bookmark_interval,
            restart: restart_tx.clone(),
        };
        let mirror_store = config.mirroring.then(|| store.clone());
        let thread = std::thread::Builder::new()
            .name("svclb-testapi".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Some(store) = mirror_store {
                        tokio::spawn(crate::mirror::run(store));
                    }
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            accept_loop(listener, addr, state, restart_rx, shutdown_rx).await
                        }
                        Err(e) => tracing::error!("listening on {addr}: {e}"),
                    }
                });
                // Connection and watch tasks still running are dropped with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|_| StartError::ThreadDied)?;
        tracing::info!(%addr, "test apiserver listening");
        Ok(TestApiServer {
            addr,
            store,
            restart: restart_tx,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig (YAML) for this server: no TLS, no credentials, namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::render(&self.url())
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Ends every open watch stream now (cleanly, as an apiserver's watch timeout does);
    /// returns how many were open.
    pub fn cut_watches(&self) -> u64 {
        self.store.cut_watches()
    }

    /// Compacts the history: every later watch from a version before now gets a 410
    /// Expired ERROR event. Returns the new oldest version a watch may start from.
    pub fn expire(&self) -> u64 {
        self.store.expire()
    }

    /// Drops every connection and stops listening for `down`, then listens again on the
    /// same address with the same objects (an apiserver restart). Blocks until listening
    /// again (from async code, a multi-thread runtime or `spawn_blocking` is needed).
    pub fn restart(&self, down: Duration) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self
            .restart
            .send(RestartRequest {
                down,
                done: Some(done_tx),
            })
            .is_ok()
        {
            let _ = done_rx.recv_timeout(down + Duration::from_secs(10));
        }
    }

    pub fn stats(&self) -> Stats {
        Stats::collect(&self.store)
    }

    /// The latest resource version.
    pub fn resource_version(&self) -> u64 {
        self.store.resource_version()
    }

    /// Direct object access (no HTTP), e.g. to seed many objects fast.
    pub fn objects(&self) -> Objects<'_> {
        Objects::new(&self.store)
    }

    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    mut restart: mpsc::UnboundedReceiver<RestartRequest>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let app = router(state.clone());
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    conns.spawn(async move {
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = conn.await {
                            tracing::debug!("connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(req) = restart.recv() => {
                tracing::info!(down_ms = req.down.as_millis() as u64, "simulated restart: dropping connections");
                drop(listener.take());
                state.store.cut_watches();
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                tokio::time::sleep(req.down).await;
                listener = rebind(addr).await;
                if let Some(done) = req.done {
                    let _ = done.send(());
                }
            }
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    state.store.cut_watches();
    conns.abort_all();
}

/// Binds `addr` again after a simulated restart (retrying briefly: the old socket may
/// linger for a moment).
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::debug!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::error!("could not listen on {addr} again after the simulated restart");
    None
}
