//! The `spec.healthCheckNodePort` servers (kube-proxy's service health checks): one
//! listener per port on every node address, answering any path with the Service's
//! ready local endpoints, 200 when there is one (and the agent is healthy), 503
//! otherwise, so an external load balancer only sends to nodes that can serve it.
use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, Mutex},
};

use hyper::{StatusCode, header};
use serde::Serialize;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{error, info};

use crate::{health::Health, plan::health_check::HealthCheck};

/// kube-proxy's answer body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    service: ServiceRef<'a>,
    local_endpoints: usize,
    service_proxy_healthy: bool,
}

#[derive(Serialize)]
struct ServiceRef<'a> {
    namespace: &'a str,
    name: &'a str,
}

/// The answer for `check` given the agent's health.
pub fn answer(check: &HealthCheck, proxy_healthy: bool) -> (StatusCode, String) {
    let ok = check.local_endpoints > 0 && proxy_healthy;
    let body = serde_json::to_string(&Payload {
        service: ServiceRef {
            namespace: &check.namespace,
            name: &check.name,
        },
        local_endpoints: check.local_endpoints,
        service_proxy_healthy: proxy_healthy,
    })
    .unwrap_or_default();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

struct Served {
    check: Arc<Mutex<HealthCheck>>,
    task: JoinHandle<()>,
}

/// The listeners, kept equal to the planner's health checks by [`Self::update`].
pub struct HealthCheckServers {
    health: Arc<Health>,
    served: HashMap<u16, Served>,
}

impl HealthCheckServers {
    pub fn new(health: Arc<Health>) -> Self {
        HealthCheckServers {
            health,
            served: HashMap::new(),
        }
    }

    /// Serves exactly `checks`: closes ports no longer wanted, updates the counts, and
    /// binds new ports (a port that cannot be bound is logged and tried again on the
    /// next update). Needs a Tokio runtime.
    pub fn update(&mut self, checks: BTreeMap<u16, HealthCheck>) {
        self.served.retain(|port, s| {
            let keep = checks.contains_key(port);
            if !keep {
                s.task.abort();
                info!(port, "health check node port closed");
            }
            keep
        });
        for (port, check) in checks {
            if let Some(s) = self.served.get(&port) {
                *s.check.lock().unwrap_or_else(|e| e.into_inner()) = check;
                continue;
            }
            match self.bind(port, check.clone()) {
                Ok(served) => {
                    info!(port, service = %format!("{}/{}", check.namespace, check.name), "serving health check node port");
                    self.served.insert(port, served);
                }
                Err(e) => error!(
                    service = %format!("Service {}/{}", check.namespace, check.name),
                    field = "spec.healthCheckNodePort",
                    port,
                    error = %e,
                    "cannot serve the health check node port; retried on the next change"
                ),
            }
        }
    }

    fn bind(&self, port: u16, check: HealthCheck) -> std::io::Result<Served> {
        let std = std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
        std.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std)?;
        let check = Arc::new(Mutex::new(check));
        let (shared, health) = (check.clone(), self.health.clone());
        let task = crate::http::spawn(listener, move |_req| {
            let snapshot = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (status, body) = answer(&snapshot, health.healthz().0);
            let mut resp = crate::http::reply(status, "application/json", body);
            let h = resp.headers_mut();
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            h.insert(
                "x-load-balancing-endpoint-weight",
                snapshot.local_endpoints.into(),
            );
            resp
        });
        Ok(Served { check, task })
    }
}

impl Drop for HealthCheckServers {
    fn drop(&mut self) {
        for s in self.served.values() {
            s.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n: usize) -> HealthCheck {
        HealthCheck {
            namespace: "shop".into(),
            name: "web".into(),
            port: 32000,
            local_endpoints: n,
        }
    }

    #[test]
    fn answers_like_kube_proxy() {
        let (status, body) = answer(&check(2), true);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            r#"{"service":{"namespace":"shop","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}"#
        );
        assert_eq!(answer(&check(0), true).0, StatusCode::SERVICE_UNAVAILABLE);
        // An unhealthy agent sends the load balancer elsewhere even with endpoints.
        let (status, body) = answer(&check(2), false);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""serviceProxyHealthy":false"#), "{body}");
    }
}
