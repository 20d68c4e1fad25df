//! The resource types this apiserver serves: one static table that discovery, routing,
//! storage and validation all read, so they cannot disagree.

/// One served resource type (a GroupVersionResource plus what discovery says about it).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural name, as in URLs.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Whether a `/status` subresource exists (and so the main resource ignores status).
    pub has_status: bool,
    /// PUT of a missing object creates it (true for Endpoints in the real apiserver).
    pub create_on_update: bool,
    /// Field selector labels accepted besides `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
}

/// Verbs of every main resource here.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of a `/status` subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

pub static SERVICES: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "services",
    singular: "service",
    kind: "Service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    has_status: true,
    create_on_update: false,
    field_labels: &["spec.clusterIP", "spec.type"],
};

pub static ENDPOINTS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "endpoints",
    singular: "endpoints",
    kind: "Endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    has_status: false,
    create_on_update: true,
    field_labels: &[],
};

pub static NODES: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    has_status: true,
    create_on_update: false,
    field_labels: &["spec.unschedulable"],
};

pub static NAMESPACES: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    has_status: true,
    create_on_update: false,
    field_labels: &["status.phase"],
};

pub static ENDPOINT_SLICES: ResourceType = ResourceType {
    group: "discovery.k8s.io",
    version: "v1",
    plural: "endpointslices",
    singular: "endpointslice",
    kind: "EndpointSlice",
    namespaced: true,
    short_names: &[],
    categories: &[],
    has_status: false,
    create_on_update: false,
    field_labels: &["addressType"],
};

// The kinds svclb's deploy/ manifests create (stored as they are, with the checks in
// validate_deploy.rs): what `kubectl create -k deploy/` needs.

pub static SERVICE_ACCOUNTS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    has_status: false,
    create_on_update: false,
    field_labels: &[],
};

pub static CONFIG_MAPS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    has_status: false,
    create_on_update: false,
    field_labels: &[],
};

pub static DAEMON_SETS: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    plural: "daemonsets",
    singular: "daemonset",
    kind: "DaemonSet",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    has_status: true,
    create_on_update: false,
    field_labels: &[],
};

pub static CLUSTER_ROLES: ResourceType = ResourceType {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "clusterroles",
    singular: "clusterrole",
    kind: "ClusterRole",
    namespaced: false,
    short_names: &[],
    categories: &[],
    has_status: false,
    create_on_update: false,
    field_labels: &[],
};

pub static CLUSTER_ROLE_BINDINGS: ResourceType = ResourceType {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    kind: "ClusterRoleBinding",
    namespaced: false,
    short_names: &[],
    categories: &[],
    has_status: false,
    create_on_update: false,
    field_labels: &[],
};

/// Every served type; the index in this table is the storage key's first part.
pub static ALL: &[&ResourceType] = &[
    &SERVICES,
    &ENDPOINTS,
    &NODES,
    &NAMESPACES,
    &ENDPOINT_SLICES,
    &SERVICE_ACCOUNTS,
    &CONFIG_MAPS,
    &DAEMON_SETS,
    &CLUSTER_ROLES,
    &CLUSTER_ROLE_BINDINGS,
];

/// Group versions served, in discovery order: (group, version).
pub const GROUP_VERSIONS: &[(&str, &str)] = &[
    ("", "v1"),
    ("discovery.k8s.io", "v1"),
    ("apps", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
];

impl ResourceType {
    /// `v1` or `discovery.k8s.io/v1`, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Index in [`ALL`].
    pub fn index(&self) -> usize {
        ALL.iter()
            .position(|r| std::ptr::eq(*r, self) || *r == self)
            .expect("resource type is in ALL")
    }

    /// The `kind` of this type's list (`ServiceList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether `label` may be used in a field selector on this type.
    pub fn supports_field_label(&self, label: &str) -> bool {
        matches!(label, "metadata.name" | "metadata.namespace")
            || self.field_labels.contains(&label)
    }
}

/// The type served at `group/version/plural`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The type with this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The type with this `kind` (kinds are unique here), for the library API.
pub fn by_kind_name(kind: &str) -> Option<&'static ResourceType> {
    ALL.iter().copied().find(|r| r.kind == kind)
}

/// Types of one group version, for `/api/v1` and `/apis/<group>/<version>`.
pub fn of_group_version(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceType> {
    let (group, version) = (group.to_string(), version.to_string());
    ALL.iter()
        .copied()
        .filter(move |r| r.group == group && r.version == version)
}
