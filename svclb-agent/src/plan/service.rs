//! One Service object → a validated view: its frontend addresses, ports and options.
//! Bad fields are reported and dropped here, each at the smallest unit it affects.
use std::{collections::BTreeSet, net::Ipv4Addr};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use tracing::debug;

use super::{
    desired::PlanOptions,
    errors::{ErrorKind, Invalid, PlanError},
    validate,
};
use crate::{model::Proto, source::objects};

/// Annotation choosing the backend selection: `maglev` or `random`.
pub const ANNOTATION_LB_ALGORITHM: &str = "svclb.io/lb-algorithm";
/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;
/// Kubernetes' upper bound for the affinity timeout (1 day).
pub const MAX_AFFINITY_TIMEOUT_S: u32 = 86_400;

/// An address and the field it came from (for conflict errors).
pub(crate) type Addr = (Ipv4Addr, String);

#[derive(Debug)]
pub(crate) struct ServiceView {
    pub namespace: String,
    pub name: String,
    /// `Service ns/name`.
    pub object: String,
    pub cluster_ips: Vec<Addr>,
    pub external_ips: Vec<Addr>,
    pub lb_ips: Vec<Addr>,
    pub ports: Vec<PortView>,
    pub affinity_timeout_s: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    pub maglev: bool,
    /// `spec.loadBalancerSourceRanges` of a LoadBalancer Service (see
    /// [`super::source_ranges`]).
    pub source_ranges: Option<Vec<(Ipv4Addr, u8)>>,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with externalTrafficPolicy
    /// Local (see [`super::health_check`]).
    pub health_check_node_port: Option<u16>,
}

#[derive(Debug)]
pub(crate) struct PortView {
    /// Index in `spec.ports`, for field paths.
    pub index: usize,
    pub name: String,
    pub port: u16,
    pub proto: Proto,
    pub node_port: Option<u16>,
}

pub(crate) enum Outcome {
    Plan(ServiceView),
    /// Gets no data path by design (headless, ExternalName): not an error.
    Ignored(&'static str),
    /// Unusable as a whole; the reason is already in the errors.
    Rejected,
}

pub(crate) fn parse(svc: &Service, opts: &PlanOptions, errors: &mut Vec<PlanError>) -> Outcome {
    let object = format!("Service {}", objects::key(&svc.metadata));
    let default_spec = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&default_spec);
    let node_ports_allowed = match spec.type_.as_deref() {
        None | Some("ClusterIP") => false,
        Some("NodePort" | "LoadBalancer") => true,
        Some("ExternalName") => return Outcome::Ignored("ExternalName"),
        Some(other) => {
            let e = Invalid::new(
                ErrorKind::InvalidValue,
                format!(
                    "unknown type {other:?} (expected ClusterIP, NodePort, LoadBalancer or ExternalName); Service skipped"
                ),
            );
            errors.push(e.at(&object, "spec.type"));
            return Outcome::Rejected;
        }
    };
    let headless = spec.cluster_ip.as_deref() == Some("None")
        || spec
            .cluster_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .is_some_and(|ip| ip == "None");
    if headless {
        return Outcome::Ignored("headless");
    }
    let is_lb = spec.type_.as_deref() == Some("LoadBalancer");
    let external_local = traffic_policy(
        spec.external_traffic_policy.as_deref(),
        "spec.externalTrafficPolicy",
        &object,
        errors,
    );
    Outcome::Plan(ServiceView {
        namespace: objects::namespace(&svc.metadata).to_string(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        cluster_ips: cluster_ips(spec, &object, errors),
        external_ips: addresses(
            spec.external_ips.iter().flatten().map(String::as_str),
            "spec.externalIPs",
            &object,
            errors,
        ),
        lb_ips: if is_lb {
            lb_ips(svc, &object, errors)
        } else {
            Vec::new()
        },
        ports: ports(spec, node_ports_allowed, opts, &object, errors),
        affinity_timeout_s: affinity(spec, &object, errors),
        external_local,
        internal_local: traffic_policy(
            spec.internal_traffic_policy.as_deref(),
            "spec.internalTrafficPolicy",
            &object,
            errors,
        ),
        maglev: maglev(svc, opts, &object, errors),
        source_ranges: if is_lb {
            super::source_ranges::parse(spec, &object, errors)
        } else {
            None
        },
        health_check_node_port: health_check_port(spec, is_lb && external_local, &object, errors),
        object,
    })
}

/// `spec.healthCheckNodePort`: served only for LoadBalancer + Local (the apiserver
/// allocates it for nothing else; a stray one is reported and not served).
fn health_check_port(
    spec: &ServiceSpec,
    lb_local: bool,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> Option<u16> {
    let port = spec.health_check_node_port?;
    let field = "spec.healthCheckNodePort";
    if !lb_local {
        let e = Invalid::new(
            ErrorKind::InvalidValue,
            format!(
                "{port} is only served for type LoadBalancer with externalTrafficPolicy Local; not served"
            ),
        );
        errors.push(e.at(object, field));
        return None;
    }
    match u16::try_from(port) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            let e = Invalid::new(
                ErrorKind::InvalidValue,
                format!("{port} is not a port (1-65535); no health check served"),
            );
            errors.push(e.at(object, field));
            None
        }
    }
}

/// `spec.clusterIPs` when set (it supersedes `spec.clusterIP`), IPv4 entries only.
fn cluster_ips(spec: &ServiceSpec, object: &str, errors: &mut Vec<PlanError>) -> Vec<Addr> {
    match spec.cluster_ips.as_ref().filter(|ips| !ips.is_empty()) {
        Some(ips) => addresses(
            ips.iter().map(String::as_str),
            "spec.clusterIPs",
            object,
            errors,
        ),
        None => match spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
            Some(ip) => parse_addr(ip, "spec.clusterIP".to_string(), object, errors)
                .into_iter()
                .collect(),
            None => {
                debug!(object, "no clusterIP: no ClusterIP frontend");
                Vec::new()
            }
        },
    }
}

fn lb_ips(svc: &Service, object: &str, errors: &mut Vec<PlanError>) -> Vec<Addr> {
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let mut out = Vec::new();
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        // ipMode Proxy: the load balancer proxies to the nodes itself; kube-proxy then
        // must not capture the address either.
        if ing.ip_mode.as_deref() == Some("Proxy") {
            debug!(
                object,
                ingress = i,
                "ipMode Proxy: no LoadBalancer frontend"
            );
            continue;
        }
        if let Some(ip) = ing.ip.as_deref() {
            out.extend(parse_addr(
                ip,
                format!("status.loadBalancer.ingress[{i}].ip"),
                object,
                errors,
            ));
        }
    }
    out
}

fn addresses<'a>(
    texts: impl Iterator<Item = &'a str>,
    field: &str,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> Vec<Addr> {
    texts
        .enumerate()
        .filter_map(|(i, t)| parse_addr(t, format!("{field}[{i}]"), object, errors))
        .collect()
}

fn parse_addr(
    text: &str,
    field: String,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> Option<Addr> {
    match validate::unicast_ip(text) {
        Ok(Some(ip)) => Some((ip, field)),
        Ok(None) => {
            debug!(object, field, "IPv6 address skipped");
            None
        }
        Err(mut e) => {
            e.message += "; frontend skipped";
            errors.push(e.at(object, field));
            None
        }
    }
}

fn ports(
    spec: &ServiceSpec,
    node_ports_allowed: bool,
    opts: &PlanOptions,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> Vec<PortView> {
    let mut out: Vec<PortView> = Vec::new();
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (index, p) in spec.ports.iter().flatten().enumerate() {
        let field = |f: &str| format!("spec.ports[{index}]{f}");
        let proto = match validate::protocol(p.protocol.as_deref()) {
            Ok(proto) => proto,
            Err(mut e) => {
                e.message += "; port skipped";
                errors.push(e.at(object, field(".protocol")));
                continue;
            }
        };
        let port = match validate::port(p.port) {
            Ok(port) => port,
            Err(mut e) => {
                e.message += "; port skipped";
                errors.push(e.at(object, field(".port")));
                continue;
            }
        };
        let name = p.name.clone().unwrap_or_default();
        if !name.is_empty() && !names.insert(name.clone()) {
            let e = Invalid::new(
                ErrorKind::Duplicate,
                format!("port name {name:?} is already used by another port; port skipped"),
            );
            errors.push(e.at(object, field(".name")));
            continue;
        }
        if !numbers.insert((port, proto)) {
            let e = Invalid::new(
                ErrorKind::Duplicate,
                format!("port {port}/{proto} is defined twice; port skipped"),
            );
            errors.push(e.at(object, field("")));
            continue;
        }
        let node_port = node_port(
            p.node_port,
            node_ports_allowed,
            opts,
            object,
            &field(".nodePort"),
            errors,
        );
        out.push(PortView {
            index,
            name,
            port,
            proto,
            node_port,
        });
    }
    out
}

/// A bad nodePort drops only the NodePort frontends of that port.
fn node_port(
    value: Option<i32>,
    allowed: bool,
    opts: &PlanOptions,
    object: &str,
    field: &str,
    errors: &mut Vec<PlanError>,
) -> Option<u16> {
    // 0 is how the API spells "not allocated".
    let n = value.filter(|&n| n != 0)?;
    if !allowed {
        let e = Invalid::new(
            ErrorKind::InvalidValue,
            "nodePort is only used by type NodePort or LoadBalancer; ignored",
        );
        errors.push(e.at(object, field));
        return None;
    }
    let result = validate::port(n).and_then(|n| {
        if opts.node_port_range.contains(&n) {
            Ok(n)
        } else {
            let (lo, hi) = (opts.node_port_range.start(), opts.node_port_range.end());
            Err(Invalid::new(
                ErrorKind::NodePortRange,
                format!("nodePort {n} is outside the node port range {lo}-{hi}"),
            ))
        }
    });
    match result {
        Ok(n) => Some(n),
        Err(mut e) => {
            e.message += "; NodePort frontends skipped";
            errors.push(e.at(object, field));
            None
        }
    }
}

fn affinity(spec: &ServiceSpec, object: &str, errors: &mut Vec<PlanError>) -> Option<u32> {
    match spec.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => Some(DEFAULT_AFFINITY_TIMEOUT_S),
                Some(t) if (1..=MAX_AFFINITY_TIMEOUT_S as i32).contains(&t) => Some(t as u32),
                Some(t) => {
                    let e = Invalid::new(
                        ErrorKind::InvalidValue,
                        format!(
                            "timeoutSeconds {t} is outside 1-{MAX_AFFINITY_TIMEOUT_S}; session affinity disabled"
                        ),
                    );
                    errors.push(e.at(object, "spec.sessionAffinityConfig.clientIP.timeoutSeconds"));
                    None
                }
            }
        }
        Some(other) => {
            let e = Invalid::new(
                ErrorKind::InvalidValue,
                format!(
                    "unknown sessionAffinity {other:?} (expected None or ClientIP); no affinity"
                ),
            );
            errors.push(e.at(object, "spec.sessionAffinity"));
            None
        }
    }
}

/// Whether the policy is Local; unset means Cluster.
fn traffic_policy(
    value: Option<&str>,
    field: &str,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> bool {
    match value {
        None | Some("Cluster") => false,
        Some("Local") => true,
        Some(other) => {
            let e = Invalid::new(
                ErrorKind::InvalidValue,
                format!("unknown policy {other:?} (expected Cluster or Local); Cluster used"),
            );
            errors.push(e.at(object, field));
            false
        }
    }
}

fn maglev(svc: &Service, opts: &PlanOptions, object: &str, errors: &mut Vec<PlanError>) -> bool {
    match svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_LB_ALGORITHM))
        .map(String::as_str)
    {
        None => opts.maglev_default,
        Some("maglev") => true,
        Some("random") => false,
        Some(other) => {
            let default = if opts.maglev_default {
                "maglev"
            } else {
                "random"
            };
            let e = Invalid::new(
                ErrorKind::InvalidValue,
                format!("unknown algorithm {other:?} (expected maglev or random); {default} used"),
            );
            errors.push(e.at(
                object,
                format!("metadata.annotations[{ANNOTATION_LB_ALGORITHM}]"),
            ));
            opts.maglev_default
        }
    }
}
