//! [`Planner`]: the planner kept between reconciles, so that one changed object costs
//! about one Service's planning, not a re-plan of every Service.
//!
//! Each Service is planned together with the EndpointSlices labelled with its name
//! ([`plan_service`]) and the result is cached under the uids and resourceVersions it
//! was planned from. An update compares versions (a scan without allocation per
//! object), re-plans only the groups whose versions moved, and re-resolves only the
//! frontends their claims touch. Objects without a resourceVersion (read from
//! manifests) cannot be compared cheaply and are re-planned every time. The result
//! equals [`super::plan`] of the same objects, which is built on this type; the
//! equivalence after arbitrary change sequences is unit-tested.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt::Write as _,
    net::Ipv4Addr,
};

use k8s_openapi::{
    api::{core::v1::Service, discovery::v1::EndpointSlice},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use tracing::debug;

use super::{
    conflicts::{Claim, Losses, Priority},
    desired::{NodeInfo, Plan, PlanOptions, ServicePlan, plan_service},
    endpoints,
    errors::{ErrorKind, Invalid, PlanError},
    health_check::HealthCheck,
};
use crate::{
    model::{BackendSet, DesiredState, Frontend, SetKey},
    source::objects::{self, LABEL_SERVICE_NAME, Objects},
};

pub struct Planner {
    opts: PlanOptions,
    /// The node the cache was planned for; a different one invalidates it all.
    node: Option<NodeInfo>,
    node_addrs: BTreeSet<Ipv4Addr>,
    /// Per `namespace/name`: a Service and its slices, or slices without a Service.
    units: HashMap<String, Unit>,
    /// Every claim on each frontend, sorted by [`Claim::order`] (the first wins).
    claims: BTreeMap<Frontend, Vec<Claim>>,
    /// The set each frontend was given to.
    winners: HashMap<Frontend, SetKey>,
    /// Frontends claimed by more than one backend set: the conflict errors.
    contested: BTreeSet<Frontend>,
    /// Objects defined twice (only possible with manifests).
    duplicates: Vec<PlanError>,
    /// Slice `namespace/name` → the unit it was planned in.
    slice_units: HashMap<String, String>,
    state: DesiredState,
    /// Sets that may differ from what [`Planner::take_changed`] last reported; None
    /// when unknown (nothing reported yet, or the node changed).
    changed: Option<BTreeSet<SetKey>>,
    /// Units with errors, and units ignored by design: the report walks only these.
    with_errors: BTreeSet<String>,
    ignored: BTreeSet<String>,
    /// Sets in the state per Service (`namespace/name`), and endpoints over all sets.
    sets_per_service: HashMap<String, usize>,
    endpoints: usize,
    generation: u64,
    /// Per unit key: its Service's health check (`spec.healthCheckNodePort`).
    health_checks: BTreeMap<String, HealthCheck>,
    /// A unit with a health check was planned again since the last
    /// [`Planner::take_health_changed`].
    health_changed: bool,
}

struct Unit {
    /// None: cannot be compared (no resourceVersion, or duplicated objects).
    versions: Option<Versions>,
    /// `namespace/name` of the slices planned with it.
    slices: Vec<String>,
    plan: ServicePlan,
    /// The last update that saw this unit's objects.
    seen: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct Version {
    uid: Option<String>,
    resource_version: String,
}

impl Version {
    fn of(meta: &ObjectMeta) -> Option<Self> {
        Some(Version {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone()?,
        })
    }

    fn same(&self, meta: &ObjectMeta) -> bool {
        meta.resource_version.as_deref() == Some(self.resource_version.as_str())
            && meta.uid == self.uid
    }
}

/// What a unit was planned from: its Service and its slices (sorted by name).
#[derive(Debug, PartialEq, Eq)]
struct Versions {
    service: Option<Version>,
    slices: Vec<(String, Version)>,
}

impl Versions {
    fn of(group: &Group) -> Option<Self> {
        if group.services.len() > 1 {
            return None;
        }
        let service = match group.services.first() {
            Some(s) => Some(Version::of(&s.metadata)?),
            None => None,
        };
        let slices = group
            .slices
            .iter()
            .map(|s| Some((s.metadata.name.clone()?, Version::of(&s.metadata)?)))
            .collect::<Option<_>>()?;
        Some(Versions { service, slices })
    }

    fn matches(&self, group: &Group) -> bool {
        let service_same = match (&self.service, group.services.as_slice()) {
            (None, []) => true,
            (Some(v), [s]) => v.same(&s.metadata),
            _ => false,
        };
        service_same
            && self.slices.len() == group.slices.len()
            && self.slices.iter().zip(&group.slices).all(|((name, v), s)| {
                s.metadata.name.as_deref() == Some(name.as_str()) && v.same(&s.metadata)
            })
    }
}

/// The objects of one `namespace/name` in this update.
#[derive(Default)]
struct Group<'a> {
    services: Vec<&'a Service>,
    slices: Vec<&'a EndpointSlice>,
}

/// Objects by `namespace/name`, as the source holds them now.
pub trait Lookup {
    fn service(&self, key: &str) -> Option<&Service>;
    fn slice(&self, key: &str) -> Option<&EndpointSlice>;
}

/// `namespace/name` of the objects changed (or deleted) since the last update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub services: Vec<String>,
    pub slices: Vec<String>,
}

/// The unit (`namespace/service`) a slice belongs to, by its Service label.
fn slice_unit(slice: &EndpointSlice) -> Option<String> {
    let service = slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?;
    Some(format!("{}/{service}", objects::namespace(&slice.metadata)))
}

/// `namespace/name` of a set key (`namespace/name:port/PROTO`).
fn service_of(key: &SetKey) -> &str {
    key.0.split_once(':').map_or(key.0.as_str(), |(svc, _)| svc)
}

/// What one update did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Services (or slice groups) planned again.
    pub replanned: usize,
    /// Services (or slice groups) gone.
    pub removed: usize,
}

impl Planner {
    pub fn new(opts: PlanOptions) -> Self {
        Planner {
            opts,
            node: None,
            node_addrs: BTreeSet::new(),
            units: HashMap::new(),
            claims: BTreeMap::new(),
            winners: HashMap::new(),
            contested: BTreeSet::new(),
            duplicates: Vec::new(),
            slice_units: HashMap::new(),
            state: DesiredState::default(),
            changed: None,
            with_errors: BTreeSet::new(),
            ignored: BTreeSet::new(),
            sets_per_service: HashMap::new(),
            endpoints: 0,
            generation: 0,
            health_checks: BTreeMap::new(),
            health_changed: true,
        }
    }

    /// The desired state for the objects of the last update.
    pub fn state(&self) -> &DesiredState {
        &self.state
    }

    /// Keys of the sets that may have changed since the last call (a superset); None
    /// when unknown, i.e. compare them all.
    pub fn take_changed(&mut self) -> Option<BTreeSet<SetKey>> {
        self.changed.replace(BTreeSet::new())
    }

    fn mark(&mut self, set: &SetKey) {
        if let Some(changed) = &mut self.changed {
            changed.insert(set.clone());
        }
    }

    /// Brings the plan up to `objects` on `node`.
    pub fn update(&mut self, objects: &Objects, node: &NodeInfo) -> Update {
        if self.node.as_ref() != Some(node) {
            // Locality and NodePort addresses of every Service depend on the node.
            *self = Planner::new(self.opts.clone());
            self.node_addrs = node.addresses.iter().copied().collect();
            self.node = Some(node.clone());
        }
        self.generation += 1;
        let generation = self.generation;
        let groups = self.group(objects);

        let mut changes: Vec<(String, Option<Unit>)> = Vec::new();
        let mut key = String::new();
        let mut seen = 0;
        for ((namespace, name), group) in &groups {
            key.clear();
            let _ = write!(key, "{namespace}/{name}");
            if let Some(unit) = self.units.get_mut(key.as_str()) {
                // Seen either way: replaced below, not removed.
                unit.seen = generation;
                seen += 1;
                if unit.versions.as_ref().is_some_and(|v| v.matches(group)) {
                    continue;
                }
            }
            changes.push((key.clone(), Some(self.plan_unit(group, generation))));
        }
        let replanned = changes.len();
        if self.units.len() > seen {
            changes.extend(
                self.units
                    .iter()
                    .filter(|(_, u)| u.seen != generation)
                    .map(|(k, _)| (k.clone(), None)),
            );
        }
        let removed = changes.len() - replanned;
        drop(groups);
        self.apply(changes);
        Update { replanned, removed }
    }

    /// Like [`Planner::update`], looking at only the objects in `touched` (everything
    /// else is as in the last update). None when that cannot be done: nothing was
    /// planned yet, or the node changed; then use [`Planner::update`].
    pub fn update_touched(
        &mut self,
        lookup: &dyn Lookup,
        node: &NodeInfo,
        touched: &Touched,
    ) -> Option<Update> {
        if self.node.as_ref() != Some(node) {
            return None;
        }
        self.generation += 1;
        let generation = self.generation;
        // Units whose objects may have changed, with slices that may now belong to them.
        let mut affected: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for key in &touched.services {
            affected.entry(key.clone()).or_default();
        }
        for key in &touched.slices {
            if let Some(old) = self.slice_units.get(key.as_str()) {
                affected.entry(old.clone()).or_default();
            }
            if let Some(unit) = lookup.slice(key).and_then(slice_unit) {
                affected.entry(unit).or_default().insert(key);
            }
        }
        let mut changes = Vec::new();
        let mut removed = 0;
        for (key, mut slice_keys) in affected {
            let old = self.units.get(&key);
            slice_keys.extend(old.iter().flat_map(|u| u.slices.iter().map(String::as_str)));
            let mut group = Group::default();
            group.services.extend(lookup.service(&key));
            for sk in slice_keys {
                if let Some(slice) = lookup.slice(sk)
                    && slice_unit(slice).as_deref() == Some(key.as_str())
                {
                    group.slices.push(slice);
                }
            }
            group.slices.sort_by_key(|s| s.metadata.name.as_deref());
            if group.services.is_empty() && group.slices.is_empty() {
                if old.is_some() {
                    removed += 1;
                    changes.push((key, None));
                }
                continue;
            }
            if old.is_some_and(|u| u.versions.as_ref().is_some_and(|v| v.matches(&group))) {
                continue;
            }
            let unit = self.plan_unit(&group, generation);
            changes.push((key, Some(unit)));
        }
        let replanned = changes.len() - removed;
        self.apply(changes);
        Some(Update { replanned, removed })
    }

    fn plan_unit(&self, group: &Group, generation: u64) -> Unit {
        Unit {
            versions: Versions::of(group),
            slices: group
                .slices
                .iter()
                .map(|s| objects::key(&s.metadata))
                .collect(),
            plan: self.plan_group(group),
            seen: generation,
        }
    }

    /// Replaces (None: removes) units and gives every frontend they touch to its winner.
    fn apply(&mut self, changes: Vec<(String, Option<Unit>)>) {
        let mut touched = BTreeSet::new();
        for (key, unit) in changes {
            let check_before = match self.units.remove(&key) {
                Some(old) => self.retract(&key, &old, &mut touched),
                None => None,
            };
            if check_before.as_ref() != unit.as_ref().and_then(|u| u.plan.health_check.as_ref()) {
                self.health_changed = true;
            }
            if let Some(unit) = unit {
                self.install(&key, &unit, &mut touched);
                self.units.insert(key, unit);
            }
        }
        for fe in touched {
            self.resolve(fe);
        }
    }

    /// Groups the objects by `namespace/name` (slices by their Service label) and notes
    /// objects defined twice.
    fn group<'a>(&mut self, objects: &'a Objects) -> HashMap<(&'a str, &'a str), Group<'a>> {
        self.duplicates.clear();
        let mut groups: HashMap<(&str, &str), Group> =
            HashMap::with_capacity(objects.services.len());
        for svc in &objects.services {
            let name = svc.metadata.name.as_deref().unwrap_or("");
            let group = groups
                .entry((objects::namespace(&svc.metadata), name))
                .or_default();
            group.services.push(svc);
        }
        let mut seen_slices = HashSet::with_capacity(objects.slices.len());
        for slice in &objects.slices {
            let namespace = objects::namespace(&slice.metadata);
            let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
            else {
                debug!(slice = %objects::key(&slice.metadata), "no {LABEL_SERVICE_NAME} label: belongs to no Service");
                continue;
            };
            let name = slice.metadata.name.as_deref().unwrap_or("");
            if !seen_slices.insert((namespace, name)) {
                let e = Invalid::new(
                    ErrorKind::Duplicate,
                    "defined more than once; the first definition is used",
                );
                self.duplicates
                    .push(e.at(&endpoints::describe(slice), "metadata.name"));
                continue;
            }
            groups
                .entry((namespace, service.as_str()))
                .or_default()
                .slices
                .push(slice);
        }
        for group in groups.values_mut() {
            if group.slices.len() > 1 {
                group.slices.sort_by_key(|s| s.metadata.name.as_deref());
            }
            if group.services.len() > 1 {
                group
                    .services
                    .sort_by_cached_key(|s| Priority::of(&s.metadata));
                for _ in &group.services[1..] {
                    let key = objects::key(&group.services[0].metadata);
                    let e = Invalid::new(
                        ErrorKind::Duplicate,
                        "Service defined more than once; the older definition is used",
                    );
                    self.duplicates
                        .push(e.at(&format!("Service {key}"), "metadata.name"));
                }
            }
        }
        groups
    }

    fn plan_group(&self, group: &Group) -> ServicePlan {
        let node = self.node.as_ref().expect("set by update");
        plan_service(
            group.services.first().copied(),
            &group.slices,
            node,
            &self.node_addrs,
            &self.opts,
        )
    }

    /// Takes `unit` out of the indexes; returns the health check it had.
    fn retract(
        &mut self,
        key: &str,
        unit: &Unit,
        touched: &mut BTreeSet<Frontend>,
    ) -> Option<HealthCheck> {
        for claim in &unit.plan.claims {
            if let Some(group) = self.claims.get_mut(&claim.frontend) {
                group.retain(|c| c.priority.key != key);
                if group.is_empty() {
                    self.claims.remove(&claim.frontend);
                }
            }
            touched.insert(claim.frontend);
        }
        for (set, _) in &unit.plan.sets {
            self.remove_set(set);
            self.mark(set);
        }
        for slice in &unit.slices {
            if self.slice_units.get(slice).is_some_and(|u| u == key) {
                self.slice_units.remove(slice);
            }
        }
        self.with_errors.remove(key);
        self.ignored.remove(key);
        self.health_checks.remove(key)
    }

    fn install(&mut self, key: &str, unit: &Unit, touched: &mut BTreeSet<Frontend>) {
        for claim in &unit.plan.claims {
            let group = self.claims.entry(claim.frontend).or_default();
            let at = group.partition_point(|c| c.order(claim).is_le());
            group.insert(at, claim.clone());
            touched.insert(claim.frontend);
        }
        for slice in &unit.slices {
            self.slice_units.insert(slice.clone(), key.to_string());
        }
        for (set, _) in &unit.plan.sets {
            self.mark(set);
        }
        if !unit.plan.errors.is_empty() {
            self.with_errors.insert(key.to_string());
        }
        if unit.plan.ignored.is_some() {
            self.ignored.insert(key.to_string());
        }
        if let Some(hc) = &unit.plan.health_check {
            self.health_checks.insert(key.to_string(), hc.clone());
        }
    }

    /// Every Service's health check (`spec.healthCheckNodePort`), by `namespace/name`.
    pub fn health_checks(&self) -> impl Iterator<Item = &HealthCheck> {
        self.health_checks.values()
    }

    /// Whether [`Planner::health_checks`] may differ from when this was last called.
    pub fn take_health_changed(&mut self) -> bool {
        std::mem::take(&mut self.health_changed)
    }

    fn remove_set(&mut self, key: &SetKey) {
        let Some(set) = self.state.sets.remove(key) else {
            return;
        };
        self.endpoints -= set.endpoints.len();
        let service = service_of(key);
        if let Some(n) = self.sets_per_service.get_mut(service) {
            *n -= 1;
            if *n == 0 {
                self.sets_per_service.remove(service);
            }
        }
    }

    /// (Services, frontends, endpoints) in the state, counted as it changes.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.sets_per_service.len(),
            self.winners.len(),
            self.endpoints,
        )
    }

    /// Gives `fe` to its winning claim, if any is left.
    fn resolve(&mut self, fe: Frontend) {
        if let Some(old) = self.winners.remove(&fe) {
            self.mark(&old);
            if let Some(set) = self.state.sets.get_mut(&old) {
                set.frontends.remove(&fe);
                if set.frontends.is_empty() {
                    self.remove_set(&old);
                }
            }
        }
        let Some(group) = self.claims.get(&fe) else {
            self.contested.remove(&fe);
            return;
        };
        let winner = &group[0];
        if group.iter().any(|c| c.set != winner.set) {
            self.contested.insert(fe);
        } else {
            self.contested.remove(&fe);
        }
        let set = match self.state.sets.get_mut(&winner.set) {
            Some(set) => set,
            None => {
                let planned = self
                    .units
                    .get(&winner.priority.key)
                    .and_then(|u| u.plan.sets.iter().find(|(k, _)| *k == winner.set))
                    .map(|(_, s)| s.clone())
                    .expect("a claim's set is planned by its Service");
                self.endpoints += planned.endpoints.len();
                *self
                    .sets_per_service
                    .entry(service_of(&winner.set).to_string())
                    .or_default() += 1;
                self.state
                    .sets
                    .entry(winner.set.clone())
                    .or_insert(BackendSet {
                        frontends: BTreeMap::new(),
                        ..planned
                    })
            }
        };
        set.frontends.insert(fe, winner.kind);
        let key = winner.set.clone();
        self.mark(&key);
        self.winners.insert(fe, key);
    }

    /// Every problem found, sorted: each one log line.
    pub fn errors(&self) -> Vec<PlanError> {
        let mut losses = Losses::default();
        for fe in &self.contested {
            losses.add(&self.claims[fe]);
        }
        let mut errors: Vec<PlanError> = self
            .with_errors
            .iter()
            .flat_map(|k| self.units[k].plan.errors.iter().cloned())
            .chain(self.duplicates.iter().cloned())
            .chain(losses.errors())
            .collect();
        errors.sort();
        errors.dedup();
        errors
    }

    /// Services that get no data path by design, sorted.
    pub fn ignored(&self) -> Vec<(String, &'static str)> {
        // Sorted already: a BTreeSet walk.
        self.ignored
            .iter()
            .filter_map(|k| Some((k.clone(), self.units[k].plan.ignored?)))
            .collect()
    }

    pub fn into_plan(self) -> Plan {
        let errors = self.errors();
        let ignored = self.ignored();
        Plan {
            state: self.state,
            errors,
            ignored,
        }
    }
}
