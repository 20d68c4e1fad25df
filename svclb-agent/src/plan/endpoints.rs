//! EndpointSlices → the endpoints of one Service port, the way kube-proxy reads them:
//! slices found by the `kubernetes.io/service-name` label, ports resolved per slice by
//! name (this is how a named targetPort gets a different number per endpoint),
//! addresses deduplicated, then filtered by readiness and locality.
use std::{
    collections::{BTreeMap, btree_map::Entry},
    net::Ipv4Addr,
};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use tracing::debug;

use super::{
    errors::{ErrorKind, Invalid, PlanError},
    validate,
};
use crate::{
    model::{BackendAddr, Endpoint, Proto},
    source::objects::{self, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MIRRORING_CONTROLLER},
};

/// A validated slice: only what the planner uses.
#[derive(Debug)]
pub(crate) struct SliceView {
    name: String,
    /// (port name, protocol) → port number.
    ports: BTreeMap<(String, Proto), u16>,
    endpoints: Vec<SliceEndpoint>,
}

#[derive(Clone, Copy, Debug)]
struct SliceEndpoint {
    addr: Ipv4Addr,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// Slices grouped by the Service they belong to: `(namespace, service name)`, each
/// group sorted by slice name so the first-seen rule of [`endpoints_for_port`] is
/// deterministic.
pub(crate) type SliceIndex = BTreeMap<(String, String), Vec<SliceView>>;

/// Validates every slice once (so a bad field is reported once, not once per Service
/// port) and groups them by Service. Slices defined twice are dropped before (see
/// `Planner`).
pub(crate) fn index_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node_name: Option<&str>,
    errors: &mut Vec<PlanError>,
) -> SliceIndex {
    let mut index = SliceIndex::new();
    let mut sorted: Vec<&EndpointSlice> = slices.into_iter().collect();
    sorted.sort_by_key(|s| {
        (
            objects::namespace(&s.metadata),
            s.metadata.name.as_deref().unwrap_or(""),
        )
    });
    for slice in sorted {
        let object = describe(slice);
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
        else {
            debug!(%object, "no {LABEL_SERVICE_NAME} label: belongs to no Service");
            continue;
        };
        match slice.address_type.as_str() {
            "IPv4" => {}
            "IPv6" | "FQDN" => {
                debug!(%object, address_type = %slice.address_type, "skipped: svclb is IPv4 only");
                continue;
            }
            other => {
                let e = Invalid::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "unknown addressType {other:?} (expected IPv4, IPv6 or FQDN); slice skipped"
                    ),
                );
                errors.push(e.at(&object, "addressType"));
                continue;
            }
        }
        let view = SliceView {
            name: slice.metadata.name.clone().unwrap_or_default(),
            ports: slice_ports(slice, &object, errors),
            endpoints: slice_endpoints(slice, node_name, &object, errors),
        };
        index
            .entry((
                objects::namespace(&slice.metadata).to_string(),
                service.clone(),
            ))
            .or_default()
            .push(view);
    }
    index
}

/// `EndpointSlice ns/name`, plus where a mirrored slice came from, so a user who wrote
/// an Endpoints object recognises it.
pub(crate) fn describe(slice: &EndpointSlice) -> String {
    let mut s = format!("EndpointSlice {}", objects::key(&slice.metadata));
    let labels = slice.metadata.labels.as_ref();
    if labels
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|m| m == MIRRORING_CONTROLLER)
        && let Some(svc) = labels.and_then(|l| l.get(LABEL_SERVICE_NAME))
    {
        s += &format!(
            " (mirrored from Endpoints {}/{svc})",
            objects::namespace(&slice.metadata)
        );
    }
    s
}

fn slice_ports(
    slice: &EndpointSlice,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> BTreeMap<(String, Proto), u16> {
    let mut ports = BTreeMap::new();
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        let proto = match validate::protocol(p.protocol.as_deref()) {
            Ok(proto) => proto,
            // SCTP is a valid slice port; no Service port of ours can use it.
            Err(e) if e.kind == ErrorKind::UnsupportedProtocol => continue,
            Err(e) => {
                errors.push(e.at(object, format!("ports[{i}].protocol")));
                continue;
            }
        };
        // An unset port means "all ports"; kube-proxy cannot use that either.
        let Some(number) = p.port else {
            debug!(%object, port = i, "slice port without a number: skipped");
            continue;
        };
        let number = match validate::port(number) {
            Ok(n) => n,
            Err(e) => {
                errors.push(e.at(object, format!("ports[{i}].port")));
                continue;
            }
        };
        let name = p.name.clone().unwrap_or_default();
        if ports.contains_key(&(name.clone(), proto)) {
            let e = Invalid::new(
                ErrorKind::Duplicate,
                format!("port {name:?}/{proto} is defined twice; the first one is used"),
            );
            errors.push(e.at(object, format!("ports[{i}]")));
            continue;
        }
        ports.insert((name, proto), number);
    }
    ports
}

fn slice_endpoints(
    slice: &EndpointSlice,
    node_name: Option<&str>,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> Vec<SliceEndpoint> {
    let mut out = Vec::new();
    for (i, ep) in slice.endpoints.iter().enumerate() {
        // Consumers use the first address only (EndpointSlice API contract).
        let Some(text) = ep.addresses.first() else {
            errors.push(
                Invalid::new(
                    ErrorKind::InvalidAddress,
                    "endpoint has no address; skipped",
                )
                .at(object, format!("endpoints[{i}].addresses")),
            );
            continue;
        };
        let addr = match validate::unicast_ip(text) {
            Ok(Some(a)) => a,
            Ok(None) => {
                let e = Invalid::new(
                    ErrorKind::InvalidAddress,
                    format!("{text} is IPv6 in an IPv4 slice; endpoint skipped"),
                );
                errors.push(e.at(object, format!("endpoints[{i}].addresses[0]")));
                continue;
            }
            Err(mut e) => {
                e.message += "; endpoint skipped";
                errors.push(e.at(object, format!("endpoints[{i}].addresses[0]")));
                continue;
            }
        };
        let c = ep.conditions.clone().unwrap_or_default();
        // API defaults: ready and serving unset mean true, terminating unset means false.
        out.push(SliceEndpoint {
            addr,
            ready: c.ready.unwrap_or(true),
            serving: c.serving.unwrap_or(true),
            terminating: c.terminating.unwrap_or(false),
            local: node_name.is_some() && ep.node_name.as_deref() == node_name,
        });
    }
    out
}

/// One endpoint of one Service port before readiness filtering.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    backend: BackendAddr,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// The endpoints of the Service port named `port_name` (may be empty) with protocol
/// `proto`: each slice's port of the same name and protocol gives the target port for
/// that slice's endpoints; a slice without it contributes nothing. An address:port
/// listed in several slices counts once: the first slice (by name) wins, except that
/// a local copy is preferred (kube-proxy's rule).
pub(crate) fn endpoints_for_port(
    slices: &[SliceView],
    port_name: &str,
    proto: Proto,
) -> Vec<Candidate> {
    let mut by_backend: BTreeMap<BackendAddr, Candidate> = BTreeMap::new();
    for slice in slices {
        let Some(&port) = slice.ports.get(&(port_name.to_string(), proto)) else {
            if !slice.endpoints.is_empty() {
                debug!(slice = %slice.name, port_name, %proto, "slice has no such port: its endpoints are skipped");
            }
            continue;
        };
        for ep in &slice.endpoints {
            let backend = BackendAddr {
                addr: ep.addr,
                port,
                proto,
            };
            let cand = Candidate {
                backend,
                ready: ep.ready,
                serving: ep.serving,
                terminating: ep.terminating,
                local: ep.local,
            };
            match by_backend.entry(backend) {
                Entry::Vacant(v) => {
                    v.insert(cand);
                }
                Entry::Occupied(mut o) if cand.local && !o.get().local => {
                    o.insert(cand);
                }
                Entry::Occupied(_) => {}
            }
        }
    }
    by_backend.into_values().collect()
}

/// The endpoints that take new flows: the ready ones; when none is ready, the
/// `serving && terminating` ones (marked terminating). `local_only` applies a Local
/// traffic policy first, so the fallback is also among local endpoints only.
/// Sorted, since the candidates are sorted by backend.
/// Ready endpoints on this node among one port's candidates (for health checks).
pub(crate) fn local_ready(cands: &[Candidate]) -> usize {
    cands.iter().filter(|c| c.local && c.ready).count()
}

pub(crate) fn select(cands: &[Candidate], local_only: bool) -> Vec<Endpoint> {
    let pool = || cands.iter().filter(move |c| !local_only || c.local);
    let ready: Vec<Endpoint> = pool()
        .filter(|c| c.ready)
        .map(|c| Endpoint {
            backend: c.backend,
            terminating: false,
            local: c.local,
        })
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    pool()
        .filter(|c| c.serving && c.terminating)
        .map(|c| Endpoint {
            backend: c.backend,
            terminating: true,
            local: c.local,
        })
        .collect()
}
