//! The small HTTP server for /metrics, /healthz and /livez (hyper, HTTP/1.1).
use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::CONTENT_TYPE,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, info};

use crate::{health::Health, metrics};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What one listener answers.
#[derive(Clone)]
pub struct Routes {
    /// Serve /metrics (only on the metrics address: kube-proxy keeps metrics off the
    /// network by default, health on it).
    pub registry: Option<Arc<Registry>>,
    pub health: Arc<Health>,
}

/// Binds `addr` (`host:port`; port 0 picks one), logs the bound address under `what`,
/// and serves in a task.
pub async fn serve(
    what: &'static str,
    addr: &str,
    routes: Routes,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))?;
    let local = listener.local_addr()?;
    info!(%local, "{what} server listening");
    Ok((local, spawn(listener, move |req| route(&routes, req))))
}

/// Serves HTTP/1.1 on `listener` in a task, every request answered by `answer`.
pub fn spawn<A>(listener: TcpListener, answer: A) -> JoinHandle<()>
where
    A: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    continue;
                }
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let resp = answer(&req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            });
        }
    })
}

fn route(routes: &Routes, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.uri().path(), &routes.registry) {
        ("/metrics", Some(registry)) => {
            reply(StatusCode::OK, OPENMETRICS, metrics::encode(registry))
        }
        ("/healthz", _) => health_reply(routes.health.healthz()),
        ("/livez", _) => health_reply(routes.health.livez()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn health_reply((ok, report): (bool, crate::health::Report)) -> Response<Full<Bytes>> {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&report).unwrap_or_default();
    reply(status, "application/json", body)
}

pub fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}
