//! The Kubernetes objects the planner reads, whatever their source, and the
//! Endpoints → EndpointSlice mirroring that a cluster's control plane would do.
use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{EndpointAddress, EndpointSubset, Endpoints, Service},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use tracing::debug;

use crate::plan::{errors::PlanError, validate};

/// Label that ties an EndpointSlice to its Service (same namespace).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages an EndpointSlice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// `managed-by` value of the EndpointSlice mirroring controller.
pub const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints label with value "true" that opts out of mirroring.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Annotation of leader-election Endpoints, which the mirroring controller skips.
const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";

/// Everything the planner needs: Services and the EndpointSlices that feed them.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
}

impl Objects {
    /// Adds Endpoints objects the way a cluster presents them: mirrored into
    /// EndpointSlices when their Service has no selector (see [`should_mirror`]).
    /// Addresses or ports the mirroring cannot use are returned as errors and skipped.
    pub fn add_endpoints<'a>(
        &mut self,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
    ) -> Vec<PlanError> {
        let services: BTreeMap<String, &Service> = self
            .services
            .iter()
            .map(|s| (key(&s.metadata), s))
            .collect();
        let mut errors = Vec::new();
        let mut slices = Vec::new();
        for ep in endpoints {
            if !should_mirror(ep, services.get(&key(&ep.metadata)).copied()) {
                debug!(endpoints = %key(&ep.metadata), "not mirrored: its Service has a selector or it opts out");
                continue;
            }
            let (mirrored, errs) = mirror_endpoints(ep);
            slices.extend(mirrored);
            errors.extend(errs);
        }
        self.slices.extend(slices);
        errors
    }
}

/// The object's namespace; objects written without one live in "default", as
/// `kubectl apply` would put them.
pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
}

/// `namespace/name` of an object.
pub fn key(meta: &ObjectMeta) -> String {
    format!("{}/{}", namespace(meta), meta.name.as_deref().unwrap_or(""))
}

/// Whether the mirroring controller would mirror these Endpoints. A Service with a
/// selector gets its slices from the EndpointSlice controller instead. Without an
/// apiserver a missing Service is not a reason to skip: the slices are harmless and
/// start working when the Service appears.
pub fn should_mirror(ep: &Endpoints, service: Option<&Service>) -> bool {
    let labels = ep.metadata.labels.as_ref();
    if labels
        .and_then(|l| l.get(LABEL_SKIP_MIRROR))
        .is_some_and(|v| v == "true")
    {
        return false;
    }
    if ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_LEADER))
    {
        return false;
    }
    let has_selector = service
        .and_then(|s| s.spec.as_ref())
        .and_then(|spec| spec.selector.as_ref())
        .is_some_and(|sel| !sel.is_empty());
    !has_selector
}

/// Mirrors one Endpoints object: one IPv4 EndpointSlice per subset (named
/// `<name>-mirror-<subset index>`), `addresses` ready, `notReadyAddresses` not ready,
/// ports and nodeName copied. IPv6 addresses are skipped (IPv4 only data path);
/// unusable addresses and ports are skipped with an error naming the Endpoints field.
pub fn mirror_endpoints(ep: &Endpoints) -> (Vec<EndpointSlice>, Vec<PlanError>) {
    let object = format!("Endpoints {}", key(&ep.metadata));
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut errors = Vec::new();
    let mut slices = Vec::new();
    for (si, subset) in ep.subsets.iter().flatten().enumerate() {
        let ports = mirror_ports(subset, si, &object, &mut errors);
        let mut endpoints = Vec::new();
        for (field, addrs, ready) in [
            ("addresses", &subset.addresses, true),
            ("notReadyAddresses", &subset.not_ready_addresses, false),
        ] {
            for (ai, addr) in addrs.iter().flatten().enumerate() {
                match validate::unicast_ip(&addr.ip) {
                    Ok(Some(_)) => endpoints.push(mirror_address(addr, ready)),
                    Ok(None) => debug!(%object, ip = %addr.ip, "IPv6 address not mirrored"),
                    Err(mut e) => {
                        e.message += "; address not mirrored";
                        errors.push(e.at(&object, format!("subsets[{si}].{field}[{ai}].ip")));
                    }
                }
            }
        }
        if endpoints.is_empty() {
            continue;
        }
        let mut labels = ep.metadata.labels.clone().unwrap_or_default();
        labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
        labels.insert(LABEL_MANAGED_BY.into(), MIRRORING_CONTROLLER.into());
        slices.push(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{name}-mirror-{si}")),
                namespace: Some(namespace(&ep.metadata).to_string()),
                labels: Some(labels),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(ports),
        });
    }
    (slices, errors)
}

fn mirror_ports(
    subset: &EndpointSubset,
    si: usize,
    object: &str,
    errors: &mut Vec<PlanError>,
) -> Vec<EndpointPort> {
    let mut ports = Vec::new();
    for (pi, p) in subset.ports.iter().flatten().enumerate() {
        if let Err(mut e) = validate::port(p.port) {
            e.message += "; port not mirrored";
            errors.push(e.at(object, format!("subsets[{si}].ports[{pi}].port")));
            continue;
        }
        // SCTP is valid Kubernetes: mirror it; the planner has no use for it.
        if let Err(mut e) = validate::protocol(p.protocol.as_deref())
            && p.protocol.as_deref() != Some("SCTP")
        {
            e.message += "; port not mirrored";
            errors.push(e.at(object, format!("subsets[{si}].ports[{pi}].protocol")));
            continue;
        }
        ports.push(EndpointPort {
            name: p.name.clone(),
            port: Some(p.port),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            app_protocol: p.app_protocol.clone(),
        });
    }
    ports
}

fn mirror_address(addr: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![addr.ip.clone()],
        // Like the real controller: only `ready` is set; serving/terminating keep
        // their API defaults (true/false).
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: addr.hostname.clone(),
        node_name: addr.node_name.clone(),
        target_ref: addr.target_ref.clone(),
        ..Default::default()
    }
}
