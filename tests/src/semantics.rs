//! Manifest pieces for the Service-semantics tests (session affinity, terminating
//! endpoints, external and LoadBalancer addresses, Maglev), layered on the builders in
//! [`crate::manifests`], plus the `dump --flow` call.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{manifests::SlicePort, process};

/// `spec.sessionAffinity: ClientIP`, with `timeoutSeconds` when given (else the
/// Kubernetes default applies). Appended to a [`crate::manifests::service`] document,
/// whose last key is `spec.ports`.
pub fn with_affinity(service: &str, timeout_s: Option<u32>) -> String {
    let mut y = format!("{service}  sessionAffinity: ClientIP\n");
    if let Some(t) = timeout_s {
        let _ = write!(
            y,
            "  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: {t}\n"
        );
    }
    y
}

/// `spec.externalIPs`.
pub fn with_external_ips(service: &str, ips: &[Ipv4Addr]) -> String {
    let mut y = format!("{service}  externalIPs:\n");
    for ip in ips {
        let _ = writeln!(y, "  - \"{ip}\"");
    }
    y
}

/// Turns a NodePort Service into `type: LoadBalancer` whose cloud controller assigned
/// `ips` (`status.loadBalancer.ingress[].ip`).
pub fn as_load_balancer(service: &str, ips: &[Ipv4Addr]) -> String {
    assert!(
        service.contains("  type: NodePort\n"),
        "needs a NodePort Service: {service}"
    );
    let mut y = service.replace("  type: NodePort\n", "  type: LoadBalancer\n");
    y.push_str("status:\n  loadBalancer:\n    ingress:\n");
    for ip in ips {
        let _ = writeln!(y, "    - ip: \"{ip}\"\n      ipMode: VIP");
    }
    y
}

/// `metadata.annotations: svclb.io/lb-algorithm: maglev`.
pub fn with_maglev(service: &str) -> String {
    service.replacen(
        "  namespace: default\n",
        "  namespace: default\n  annotations:\n    svclb.io/lb-algorithm: maglev\n",
        1,
    )
}

/// One endpoint and its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ep {
    pub addr: Ipv4Addr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl Ep {
    pub fn ready(addr: Ipv4Addr) -> Self {
        Self {
            addr,
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    /// A pod being deleted that still serves (KEP-1669): not ready, serving, terminating.
    pub fn terminating(addr: Ipv4Addr) -> Self {
        Self {
            addr,
            ready: false,
            serving: true,
            terminating: true,
        }
    }
}

/// An EndpointSlice as the controller writes it, with each endpoint's conditions
/// (pods named `pod<third octet>`).
pub fn endpoint_slice(service: &str, slice: &str, ports: &[SlicePort], eps: &[Ep]) -> String {
    let mut y = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {slice}\n  \
         namespace: default\n  labels:\n    kubernetes.io/service-name: {service}\n    \
         endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\n\
         addressType: IPv4\nports:\n"
    );
    for p in ports {
        let _ = write!(
            y,
            "- name: \"{}\"\n  protocol: {}\n  port: {}\n",
            p.name, p.protocol, p.port
        );
    }
    if eps.is_empty() {
        y.push_str("endpoints: []\n");
    } else {
        y.push_str("endpoints:\n");
    }
    for e in eps {
        let _ = write!(
            y,
            "- addresses:\n  - \"{}\"\n  conditions:\n    ready: {}\n    serving: {}\n    \
             terminating: {}\n  nodeName: node\n  targetRef:\n    kind: Pod\n    \
             namespace: default\n    name: pod{}\n",
            e.addr,
            e.ready,
            e.serving,
            e.terminating,
            e.addr.octets()[2]
        );
    }
    y
}

/// `svclb-agent dump --flow FLOW --json` of the pins under `bpffs`, run in `netns`.
pub fn dump_flow(bin: &Path, netns: &str, bpffs: &Path, flow: &str) -> Result<Value> {
    let mut cmd = process::command(Some(netns), bin)?;
    cmd.arg("dump")
        .arg("--json")
        .arg("--bpffs")
        .arg(bpffs)
        .arg("--flow")
        .arg(flow);
    let out = process::run(cmd, Duration::from_secs(30))?;
    serde_json::from_str(&out).with_context(|| format!("dump --flow --json is not JSON: {out}"))
}

/// The `backend` of a `dump --flow` answer as `ip:port`, if it names one.
pub fn flow_backend(view: &Value) -> Option<String> {
    let b = view.get("backend")?;
    Some(format!("{}:{}", b["address"].as_str()?, b["port"]))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{core::v1, discovery::v1 as discovery};

    use super::*;
    use crate::manifests::{self, ServicePort, Target};

    #[test]
    fn pieces_parse_as_kubernetes_objects() {
        let base = manifests::service(
            "web",
            Ipv4Addr::new(198, 18, 0, 10),
            Some("web"),
            &[ServicePort::tcp(Some("http"), 80, Target::Number(8080)).with_node_port(30080)],
        );
        let y = as_load_balancer(
            &with_external_ips(
                &with_affinity(&with_maglev(&base), Some(3)),
                &[Ipv4Addr::new(198, 18, 60, 1)],
            ),
            &[Ipv4Addr::new(198, 18, 60, 2)],
        );
        let svc: v1::Service = serde_yaml_ng::from_str(&y).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        assert_eq!(
            spec.session_affinity_config
                .unwrap()
                .client_ip
                .unwrap()
                .timeout_seconds,
            Some(3)
        );
        assert_eq!(spec.external_ips.unwrap(), vec!["198.18.60.1".to_string()]);
        assert_eq!(
            svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
                .ip
                .as_deref(),
            Some("198.18.60.2")
        );
        assert_eq!(
            svc.metadata.annotations.unwrap()["svclb.io/lb-algorithm"],
            "maglev"
        );

        let port = SlicePort {
            name: "http",
            protocol: "TCP",
            port: 8080,
        };
        let eps = [
            Ep::ready(Ipv4Addr::new(198, 19, 1, 2)),
            Ep::terminating(Ipv4Addr::new(198, 19, 2, 2)),
        ];
        let slice: discovery::EndpointSlice =
            serde_yaml_ng::from_str(&endpoint_slice("web", "web-1", &[port], &eps)).unwrap();
        let c = slice.endpoints[1].conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }
}
