//! The planner: Kubernetes objects → [`DesiredState`], as a pure function. Same
//! objects in any order give an equal state; bad fields cost only what they touch.
//!
//! Backend sets are keyed `namespace/name:port/PROTO` where `port` is the Service
//! port's name, or its number when the port is unnamed (Kubernetes port names always
//! contain a letter, so the two cannot clash). The external-scope set of a port whose
//! traffic policies make it differ from the internal one gets `@ext` appended.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    ops::RangeInclusive,
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

use super::{
    conflicts::{Claim, Priority},
    endpoints::{self, SliceIndex},
    errors::{ErrorKind, Invalid, PlanError},
    health_check::HealthCheck,
    planner::Planner,
    service::{self, Outcome, PortView, ServiceView},
};
use crate::{
    model::{BackendSet, DesiredState, Frontend, FrontendKind, Scope, SetKey},
    source::objects::Objects,
};

/// The node the agent runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Kubernetes node name: endpoints whose `nodeName` equals it are local.
    pub name: Option<String>,
    /// IPv4 addresses NodePorts answer on.
    pub addresses: Vec<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// The apiserver's `--service-node-port-range`.
    pub node_port_range: RangeInclusive<u16>,
    /// Maglev for Services without the `svclb.io/lb-algorithm` annotation.
    pub maglev_default: bool,
    /// Plan host-scope frontends ([`crate::model::Scope::Host`]) for the eBPF mode's
    /// socket programs; the iptables and IPVS modes serve node-local clients with
    /// their own rules and leave this off.
    pub host_scope: bool,
    /// NodePorts also on `127.0.0.1` for node-local clients (kube-proxy's
    /// `--iptables-localhost-nodeports`, default true).
    pub localhost_node_ports: bool,
}

/// A backend set with more endpoints is rejected: its Service port is not programmed
/// (truncating would silently drop endpoints).
pub const MAX_ENDPOINTS_PER_SET: usize = svclb_common::MAX_BACKENDS_PER_SERVICE as usize;

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            node_port_range: 30000..=32767,
            maglev_default: false,
            host_scope: false,
            localhost_node_ports: true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub state: DesiredState,
    /// Sorted; each one log line.
    pub errors: Vec<PlanError>,
    /// Services that get no data path by design: (`namespace/name`, reason), where
    /// reason is "headless", "ExternalName", "no ports" or "no frontend address".
    pub ignored: Vec<(String, &'static str)>,
}

/// Plans `objects` from scratch; [`Planner`] does the same incrementally.
pub fn plan(objects: &Objects, node: &NodeInfo, opts: &PlanOptions) -> Plan {
    let mut planner = Planner::new(opts.clone());
    planner.update(objects, node);
    planner.into_plan()
}

/// What one Service (with its EndpointSlices) contributes, before frontend conflicts
/// between Services are resolved. A slice group whose Service does not exist
/// contributes only the errors of its slices.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServicePlan {
    /// Backend sets with no frontends yet: the claims say which they want.
    pub sets: Vec<(SetKey, BackendSet)>,
    pub claims: Vec<Claim>,
    pub errors: Vec<PlanError>,
    /// Why the Service gets no data path by design, if so.
    pub ignored: Option<&'static str>,
    /// Its `healthCheckNodePort` and local endpoint count, if it has one.
    pub health_check: Option<HealthCheck>,
}

/// Plans one Service and the slices labelled with its name (sorted by name).
pub(crate) fn plan_service(
    svc: Option<&Service>,
    slices: &[&EndpointSlice],
    node: &NodeInfo,
    node_addrs: &BTreeSet<Ipv4Addr>,
    opts: &PlanOptions,
) -> ServicePlan {
    let mut out = ServicePlan::default();
    let index = endpoints::index_slices(
        slices.iter().copied(),
        node.name.as_deref(),
        &mut out.errors,
    );
    let Some(svc) = svc else {
        return out;
    };
    let view = match service::parse(svc, opts, &mut out.errors) {
        Outcome::Plan(view) => view,
        Outcome::Ignored(reason) => {
            out.ignored = Some(reason);
            return out;
        }
        Outcome::Rejected => return out,
    };
    let errors_before = out.errors.len();
    let ctx = Ctx {
        view: &view,
        priority: Priority::of(&svc.metadata),
        slices: &index,
        node_addrs,
        opts,
    };
    let mut sets = BTreeMap::new();
    let claimed = ports_of(&ctx, &mut sets, &mut out.claims, &mut out.errors);
    if !claimed && out.errors.len() == errors_before {
        let no_ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_none_or(Vec::is_empty);
        out.ignored = Some(if no_ports {
            "no ports"
        } else {
            "no frontend address"
        });
    }
    out.sets = sets.into_iter().collect();
    out.health_check = health_check(&ctx);
    out
}

/// The Service's health check, with its ready local endpoints over all its ports.
fn health_check(ctx: &Ctx) -> Option<HealthCheck> {
    let view = ctx.view;
    let port = view.health_check_node_port?;
    let no_slices = Vec::new();
    let slices = ctx
        .slices
        .get(&(view.namespace.clone(), view.name.clone()))
        .unwrap_or(&no_slices);
    let local_endpoints = view
        .ports
        .iter()
        .map(|p| endpoints::local_ready(&endpoints::endpoints_for_port(slices, &p.name, p.proto)))
        .sum();
    Some(HealthCheck {
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        port,
        local_endpoints,
    })
}

struct Ctx<'a> {
    view: &'a ServiceView,
    priority: Priority,
    slices: &'a SliceIndex,
    node_addrs: &'a BTreeSet<Ipv4Addr>,
    opts: &'a PlanOptions,
}

/// Plans every port of one Service; returns whether any frontend was claimed.
fn ports_of(
    ctx: &Ctx,
    sets: &mut BTreeMap<SetKey, BackendSet>,
    claims: &mut Vec<Claim>,
    errors: &mut Vec<PlanError>,
) -> bool {
    let view = ctx.view;
    let no_slices = Vec::new();
    let slices = ctx
        .slices
        .get(&(view.namespace.clone(), view.name.clone()))
        .unwrap_or(&no_slices);
    let mut claimed = false;
    for port in &view.ports {
        let label = if port.name.is_empty() {
            port.port.to_string()
        } else {
            port.name.clone()
        };
        let base = format!("{}/{}:{label}/{}", view.namespace, view.name, port.proto);
        let candidates = endpoints::endpoints_for_port(slices, &port.name, port.proto);
        let internal = endpoints::select(&candidates, view.internal_local);
        let external = endpoints::select(&candidates, view.external_local);
        let internal_fe = internal_frontends(view, port);
        let external_fe = external_frontends(view, port, ctx.node_addrs);
        let split = !external_fe.is_empty()
            && (external != internal || view.external_local != view.internal_local);

        // Local policy with no local endpoint while other nodes have some: drop.
        let elsewhere = !endpoints::select(&candidates, false).is_empty();
        let set = |endpoints: Vec<_>, local_policy| BackendSet {
            no_local_drop: local_policy && endpoints.is_empty() && elsewhere,
            // kube-proxy's allowFromNode: a range holding a node address lets it in.
            node_denied: view.source_ranges.as_ref().is_some_and(|ranges| {
                !ctx.node_addrs.iter().any(|a| {
                    ranges
                        .iter()
                        .any(|&(addr, prefix)| crate::cidr::Ipv4Cidr { addr, prefix }.contains(*a))
                })
            }),
            endpoints,
            affinity_timeout_s: view.affinity_timeout_s,
            local_policy,
            maglev: view.maglev,
            frontends: BTreeMap::new(),
            source_ranges: view.source_ranges.clone(),
        };
        let host_fe = if ctx.opts.host_scope {
            host_frontends(view, port, &external_fe, ctx.opts.localhost_node_ports)
        } else {
            Vec::new()
        };
        let internal_key = SetKey(base.clone());
        let mut planned = vec![(internal_key.clone(), set(internal, view.internal_local))];
        let external_key = if split {
            let key = SetKey(format!("{base}@ext"));
            planned.push((key.clone(), set(external, view.external_local)));
            key
        } else {
            internal_key.clone()
        };
        // Node-local clients get every endpoint: the set of the internal or external
        // scope that has no Local policy, else one of their own.
        let host_key = if host_fe.is_empty() || !view.internal_local {
            internal_key.clone()
        } else if split && !view.external_local {
            external_key.clone()
        } else {
            let key = SetKey(format!("{base}@node"));
            planned.push((
                key.clone(),
                set(endpoints::select(&candidates, false), false),
            ));
            key
        };
        if let Some(too_big) = planned
            .iter()
            .find(|(_, s)| s.endpoints.len() > MAX_ENDPOINTS_PER_SET)
        {
            let e = Invalid::new(
                ErrorKind::TooManyEndpoints,
                format!(
                    "{} endpoints exceed the limit of {} per backend set ({}); port not programmed",
                    too_big.1.endpoints.len(),
                    MAX_ENDPOINTS_PER_SET,
                    too_big.0
                ),
            );
            errors.push(e.at(&view.object, format!("spec.ports[{}]", port.index)));
            continue;
        }
        if let Some((key, _)) = planned.iter().find(|(k, _)| sets.contains_key(k)) {
            // Only possible with a port named like another port's number.
            let e = Invalid::new(
                ErrorKind::Duplicate,
                format!("backend set {key} is already used by another port; port skipped"),
            );
            errors.push(e.at(&view.object, format!("spec.ports[{}].name", port.index)));
            continue;
        }
        sets.extend(planned);
        let fronts = internal_fe
            .into_iter()
            .map(|f| (f, &internal_key))
            .chain(external_fe.into_iter().map(|f| (f, &external_key)))
            .chain(host_fe.into_iter().map(|f| (f, &host_key)));
        for ((frontend, kind, addr_field, port_field), key) in fronts {
            claimed = true;
            claims.push(Claim {
                frontend,
                kind,
                set: key.clone(),
                priority: ctx.priority.clone(),
                port_index: port.index,
                object: view.object.clone(),
                addr_field,
                port_field,
            });
        }
    }
    claimed
}

/// (frontend, kind, address field, port field).
type FrontendSpec = (Frontend, FrontendKind, String, String);

fn internal_frontends(view: &ServiceView, port: &PortView) -> Vec<FrontendSpec> {
    let port_field = format!("spec.ports[{}].port", port.index);
    view.cluster_ips
        .iter()
        .map(|(ip, f)| {
            (
                Frontend {
                    addr: *ip,
                    port: port.port,
                    proto: port.proto,
                    scope: Default::default(),
                },
                FrontendKind::ClusterIp,
                f.clone(),
                port_field.clone(),
            )
        })
        .collect()
}

/// What only node-local sockets look up: `127.0.0.1:<NodePort>` (when enabled), and
/// under `externalTrafficPolicy: Local` a twin of every external frontend, because
/// kube-proxy sends locally originated traffic to those through the cluster-wide
/// chain (every endpoint), not the local one.
fn host_frontends(
    view: &ServiceView,
    port: &PortView,
    external: &[FrontendSpec],
    localhost_node_ports: bool,
) -> Vec<FrontendSpec> {
    let mut out = Vec::new();
    if let (Some(np), true) = (port.node_port, localhost_node_ports) {
        let field = format!("spec.ports[{}].nodePort", port.index);
        let mut fe = Frontend::new(Ipv4Addr::LOCALHOST, np, port.proto);
        fe.scope = Scope::Host;
        out.push((fe, FrontendKind::NodePort, field.clone(), field));
    }
    if view.external_local {
        for (fe, kind, addr_field, port_field) in external {
            let mut fe = *fe;
            fe.scope = Scope::Host;
            out.push((fe, *kind, addr_field.clone(), port_field.clone()));
        }
    }
    out
}

/// NodePort on every node address, then externalIPs and load-balancer ingress IPs.
fn external_frontends(
    view: &ServiceView,
    port: &PortView,
    node_addrs: &BTreeSet<Ipv4Addr>,
) -> Vec<FrontendSpec> {
    let port_field = format!("spec.ports[{}].port", port.index);
    let mut out = Vec::new();
    if let Some(np) = port.node_port {
        let field = format!("spec.ports[{}].nodePort", port.index);
        for addr in node_addrs {
            out.push((
                Frontend {
                    addr: *addr,
                    port: np,
                    proto: port.proto,
                    scope: Default::default(),
                },
                FrontendKind::NodePort,
                field.clone(),
                field.clone(),
            ));
        }
    }
    for (ips, kind) in [
        (&view.external_ips, FrontendKind::ExternalIp),
        (&view.lb_ips, FrontendKind::LoadBalancer),
    ] {
        for (ip, f) in ips {
            out.push((
                Frontend {
                    addr: *ip,
                    port: port.port,
                    proto: port.proto,
                    scope: Default::default(),
                },
                kind,
                f.clone(),
                port_field.clone(),
            ));
        }
    }
    out
}
