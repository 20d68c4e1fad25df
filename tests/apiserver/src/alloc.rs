//! Cluster IP and node port allocation for Services, as the real apiserver does it: fill
//! unset values from the ranges, refuse values another Service holds, release on delete.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use rand::Rng;
use serde_json::{Value, json};

use crate::defaults::{needs_node_ports, service_type};
use crate::error::Cause;
use crate::validate::{NODE_PORT_MAX, NODE_PORT_MIN};

/// An IPv4 CIDR such as `198.18.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: expected ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s}: {e}"))?;
        let prefix: u8 = len.parse().map_err(|e| format!("{s}: {e}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s}: prefix must be between /8 and /30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Cidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Ipv4Cidr {
    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }
}

/// The test range the brief reserves for Service cluster IPs.
pub const DEFAULT_SERVICE_CIDR: Ipv4Cidr = Ipv4Cidr {
    base: Ipv4Addr::new(198, 18, 0, 0),
    prefix: 24,
};

#[derive(Debug, Clone)]
pub struct Allocator {
    cidr: Ipv4Cidr,
    ips: HashSet<Ipv4Addr>,
    ports: HashSet<u16>,
}

fn cluster_ip(svc: &Value) -> Option<Ipv4Addr> {
    if service_type(svc) == "ExternalName" {
        return None;
    }
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn node_ports(svc: &Value) -> Vec<u16> {
    if !needs_node_ports(service_type(svc)) {
        return Vec::new();
    }
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|n| u16::try_from(n).ok().filter(|&n| n != 0))
        .collect()
}

impl Allocator {
    pub fn new(cidr: Ipv4Cidr) -> Self {
        Allocator {
            cidr,
            ips: HashSet::new(),
            ports: HashSet::new(),
        }
    }

    /// Allocates and claims what a Service write needs; `old` is the stored version on
    /// update. Either everything is claimed or nothing changes.
    pub fn service_write(
        &mut self,
        old: Option<&Value>,
        new: &mut Value,
    ) -> Result<(), Vec<Cause>> {
        let mut causes = Vec::new();
        let old_ip = old.and_then(cluster_ip);
        let new_type = service_type(new).to_string();
        let requested = new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut take_ip = None;
        if new_type != "ExternalName" && requested != "None" {
            if let (Some(old_ip), false) = (old_ip, requested.is_empty())
                && requested != old_ip.to_string()
            {
                causes.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    format!("\"{requested}\""),
                    "may not change once set",
                ));
            } else if requested.is_empty() {
                match self.free_ip() {
                    Some(ip) => take_ip = Some(ip),
                    None => causes.push(Cause::invalid(
                        "spec.clusterIPs",
                        "[]",
                        &format!(
                            "failed to allocate a serviceIP: range {} is full",
                            self.cidr
                        ),
                    )),
                }
            } else if let Ok(ip) = requested.parse::<Ipv4Addr>()
                && Some(ip) != old_ip
            {
                if self.ips.contains(&ip) {
                    causes.push(Cause::invalid(
                        "spec.clusterIPs",
                        format!("[\"{ip}\"]"),
                        &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    ));
                } else {
                    take_ip = Some(ip);
                }
            }
        }
        let old_ports: HashSet<u16> = old
            .map(node_ports)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut taken_ports = HashSet::new();
        let mut fill = Vec::new();
        if needs_node_ports(&new_type) {
            let ports = new
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, p) in ports.iter().enumerate() {
                match p
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                {
                    Some(0) | None => fill.push(i),
                    Some(n) if old_ports.contains(&n) => {}
                    Some(n) if self.ports.contains(&n) || !taken_ports.insert(n) => {
                        causes.push(Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            n,
                            "provided port is already allocated",
                        ))
                    }
                    Some(_) => {}
                }
            }
            for &i in &fill {
                match self.free_port(&taken_ports) {
                    Some(n) => {
                        taken_ports.insert(n);
                        new["spec"]["ports"][i]["nodePort"] = json!(n);
                    }
                    None => causes.push(Cause::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        0,
                        "failed to allocate a nodePort: range is full",
                    )),
                }
            }
        }
        if !causes.is_empty() {
            return Err(causes);
        }
        if let Some(ip) = take_ip {
            new["spec"]["clusterIP"] = json!(ip.to_string());
            new["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
        // Commit: release what the old version held and the new one does not.
        if let Some(old) = old {
            self.service_delete(old);
        }
        if let Some(ip) = cluster_ip(new) {
            self.ips.insert(ip);
        }
        self.ports.extend(node_ports(new));
        Ok(())
    }

    /// Releases a deleted Service's IP and node ports.
    pub fn service_delete(&mut self, old: &Value) {
        if let Some(ip) = cluster_ip(old) {
            self.ips.remove(&ip);
        }
        for p in node_ports(old) {
            self.ports.remove(&p);
        }
    }

    /// A random free address of the range (not the network or broadcast address), probing
    /// linearly from a random start like the real allocator's bitmap.
    fn free_ip(&self) -> Option<Ipv4Addr> {
        let size = self.cidr.size();
        let usable = size - 2;
        let start = rand::rng().random_range(0..usable);
        (0..usable)
            .map(|k| Ipv4Addr::from(u32::from(self.cidr.base) + 1 + (start + k) % usable))
            .find(|ip| !self.ips.contains(ip))
    }

    fn free_port(&self, taken: &HashSet<u16>) -> Option<u16> {
        let count = u32::from(NODE_PORT_MAX - NODE_PORT_MIN) + 1;
        let start = rand::rng().random_range(0..count);
        (0..count)
            .map(|k| NODE_PORT_MIN + ((start + k) % count) as u16)
            .find(|p| !self.ports.contains(p) && !taken.contains(p))
    }
}
