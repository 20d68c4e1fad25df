//! Kubernetes manifests as the agent reads them from its `--manifests` directory, written
//! the way the apiserver and the EndpointSlice controller would have filled them in.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use crate::semantics::Ep;

/// The directory the agent watches. Files are written next to it first and renamed in,
/// so the agent never reads half a file.
#[derive(Debug)]
pub struct ManifestDir {
    dir: PathBuf,
    staging: PathBuf,
}

impl ManifestDir {
    /// Creates `parent/manifests` and `parent/staging`.
    pub fn create(parent: &Path) -> Result<Self> {
        let dir = parent.join("manifests");
        let staging = parent.join("staging");
        for d in [&dir, &staging] {
            std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
        }
        Ok(Self { dir, staging })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes (or replaces) `name` atomically.
    pub fn write(&self, name: &str, yaml: &str) -> Result<()> {
        let staged = self.staging.join(name);
        std::fs::write(&staged, yaml).with_context(|| format!("write {}", staged.display()))?;
        let target = self.dir.join(name);
        std::fs::rename(&staged, &target).with_context(|| format!("rename to {}", target.display()))
    }

    /// Deletes `name`.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))
    }
}

/// `targetPort` of a Service port.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Number(u16),
    /// A container port name, resolved per endpoint (EndpointSlice ports carry the number).
    Name(&'a str),
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, Copy)]
pub struct ServicePort<'a> {
    /// Required by Kubernetes when a Service has several ports.
    pub name: Option<&'a str>,
    pub protocol: &'a str,
    pub port: u16,
    pub target: Target<'a>,
    pub node_port: Option<u16>,
}

impl<'a> ServicePort<'a> {
    pub fn tcp(name: Option<&'a str>, port: u16, target: Target<'a>) -> Self {
        Self {
            name,
            protocol: "TCP",
            port,
            target,
            node_port: None,
        }
    }

    pub fn udp(name: Option<&'a str>, port: u16, target: Target<'a>) -> Self {
        Self {
            name,
            protocol: "UDP",
            port,
            target,
            node_port: None,
        }
    }

    pub fn with_node_port(self, node_port: u16) -> Self {
        Self {
            node_port: Some(node_port),
            ..self
        }
    }
}

/// A `ClusterIP` (or, when some port has a nodePort, `NodePort`) Service in namespace
/// `default`. `selector`: the `app` label it selects; `None` for a selectorless Service.
pub fn service(
    name: &str,
    cluster_ip: Ipv4Addr,
    selector: Option<&str>,
    ports: &[ServicePort],
) -> String {
    let kind = if ports.iter().any(|p| p.node_port.is_some()) {
        "NodePort"
    } else {
        "ClusterIP"
    };
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         type: {kind}\n  clusterIP: {cluster_ip}\n  clusterIPs:\n  - {cluster_ip}\n  \
         ipFamilies:\n  - IPv4\n"
    );
    if let Some(app) = selector {
        let _ = write!(y, "  selector:\n    app: {app}\n");
    }
    y.push_str("  ports:\n");
    for p in ports {
        let _ = write!(y, "  - protocol: {}\n    port: {}\n", p.protocol, p.port);
        if let Some(n) = p.name {
            let _ = writeln!(y, "    name: {n}");
        }
        match p.target {
            Target::Number(t) => {
                let _ = writeln!(y, "    targetPort: {t}");
            }
            Target::Name(t) => {
                let _ = writeln!(y, "    targetPort: {t}");
            }
        }
        if let Some(np) = p.node_port {
            let _ = writeln!(y, "    nodePort: {np}");
        }
    }
    y
}

/// One entry of an EndpointSlice's `ports`: the Service port's name and the resolved
/// target port number.
#[derive(Debug, Clone, Copy)]
pub struct SlicePort<'a> {
    pub name: &'a str,
    pub protocol: &'a str,
    pub port: u16,
}

/// An EndpointSlice of Service `service` with every address ready, as the EndpointSlice
/// controller writes it for pods `pod<third octet>`.
pub fn endpoint_slice(
    service: &str,
    slice: &str,
    ports: &[SlicePort],
    addresses: &[Ipv4Addr],
) -> String {
    let eps: Vec<Ep> = addresses.iter().map(|a| Ep::ready(*a)).collect();
    crate::semantics::endpoint_slice(service, slice, ports, &eps)
}

/// A hand-written v1 Endpoints object (for a selectorless Service): one subset with
/// every address and `ports` as (name, protocol, port).
pub fn endpoints(name: &str, ports: &[SlicePort], addresses: &[Ipv4Addr]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {name}\n  namespace: default\n\
         subsets:\n- addresses:\n"
    );
    for a in addresses {
        let _ = writeln!(y, "  - ip: \"{a}\"");
    }
    y.push_str("  ports:\n");
    for p in ports {
        let _ = write!(y, "  - protocol: {}\n    port: {}\n", p.protocol, p.port);
        if !p.name.is_empty() {
            let _ = writeln!(y, "    name: {}", p.name);
        }
    }
    y
}

/// Joins manifests into one multi-document YAML file.
pub fn documents(docs: &[String]) -> String {
    docs.iter().map(|d| format!("---\n{d}")).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{core::v1, discovery::v1 as discovery};

    use super::*;

    // The builders must produce what the Kubernetes types accept: parse them back.
    #[test]
    fn builders_produce_valid_objects() {
        let svc: v1::Service = serde_yaml_ng::from_str(&service(
            "web",
            Ipv4Addr::new(198, 18, 0, 10),
            Some("web"),
            &[
                ServicePort::tcp(Some("http"), 80, Target::Name("web")).with_node_port(30080),
                ServicePort::udp(Some("dns"), 53, Target::Number(5005)),
            ],
        ))
        .unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        let ports = spec.ports.unwrap();
        assert_eq!(ports[0].node_port, Some(30080));
        assert_eq!(
            ports[0].target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("web".into()))
        );
        assert_eq!(ports[1].protocol.as_deref(), Some("UDP"));

        let addrs = [Ipv4Addr::new(198, 19, 1, 2), Ipv4Addr::new(198, 19, 2, 2)];
        let http = SlicePort {
            name: "http",
            protocol: "TCP",
            port: 8080,
        };
        let slice: discovery::EndpointSlice =
            serde_yaml_ng::from_str(&endpoint_slice("web", "web-1", &[http], &addrs)).unwrap();
        assert_eq!(slice.endpoints.len(), 2);
        assert_eq!(slice.endpoints[1].addresses, vec!["198.19.2.2".to_string()]);
        assert_eq!(
            slice.endpoints[1]
                .target_ref
                .as_ref()
                .unwrap()
                .name
                .as_deref(),
            Some("pod2")
        );
        let empty: discovery::EndpointSlice =
            serde_yaml_ng::from_str(&endpoint_slice("web", "web-1", &[http], &[])).unwrap();
        assert!(empty.endpoints.is_empty());

        let unnamed = SlicePort {
            name: "",
            protocol: "TCP",
            port: 80,
        };
        let eps: v1::Endpoints =
            serde_yaml_ng::from_str(&endpoints("legacy", &[unnamed], &addrs)).unwrap();
        let subset = &eps.subsets.unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap().len(), 2);
        assert_eq!(subset.ports.as_ref().unwrap()[0].port, 80);
    }
}
