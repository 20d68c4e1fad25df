//! kube-proxy's chain names: a prefix and the first 16 characters of the base32 SHA-256
//! of the service port name, the lower-case protocol and (for endpoints) `ip:port`.
//! Same names as kube-proxy, so operators' tooling and habits carry over.
use data_encoding::BASE32;
use sha2::{Digest, Sha256};

use crate::model::{BackendAddr, Proto, SetKey};

/// The parts of a [`SetKey`] (`namespace/name:port/PROTO[@ext]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetName {
    /// The key without `@ext`: comments of shared chains use it.
    pub base: String,
    /// kube-proxy's service port name: `namespace/name:portname`, or `namespace/name`
    /// for an unnamed port (the planner labels those with the port number, and a port
    /// name always holds a letter).
    pub port_name: String,
    pub proto: Proto,
}

impl SetName {
    pub fn parse(key: &SetKey) -> Option<Self> {
        let base = key.0.strip_suffix("@ext").unwrap_or(&key.0);
        let (svc_port, proto) = base.rsplit_once('/')?;
        let proto = match proto {
            "TCP" => Proto::Tcp,
            "UDP" => Proto::Udp,
            _ => return None,
        };
        let (svc, label) = svc_port.rsplit_once(':')?;
        let port_name = if label.bytes().all(|b| b.is_ascii_digit()) {
            svc.to_owned()
        } else {
            svc_port.to_owned()
        };
        Some(SetName {
            base: base.to_owned(),
            port_name,
            proto,
        })
    }

    fn proto_lower(&self) -> &'static str {
        match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// KUBE-SVC-…: all endpoints of the port.
    pub fn svc_chain(&self) -> String {
        format!("KUBE-SVC-{}", hash(&[&self.port_name, self.proto_lower()]))
    }
    /// KUBE-SVL-…: local endpoints only (a Local traffic policy).
    pub fn svl_chain(&self) -> String {
        format!("KUBE-SVL-{}", hash(&[&self.port_name, self.proto_lower()]))
    }
    /// KUBE-EXT-…: external traffic (NodePort, externalIPs, load balancer).
    pub fn ext_chain(&self) -> String {
        format!("KUBE-EXT-{}", hash(&[&self.port_name, self.proto_lower()]))
    }
    /// KUBE-FW-…: load-balancer traffic from `loadBalancerSourceRanges` (the rest falls
    /// through undNATed and is dropped in the filter table).
    pub fn fw_chain(&self) -> String {
        format!("KUBE-FW-{}", hash(&[&self.port_name, self.proto_lower()]))
    }
    /// KUBE-SEP-…: one endpoint's DNAT.
    pub fn sep_chain(&self, ep: &BackendAddr) -> String {
        let ep = ep.socket().to_string();
        format!(
            "KUBE-SEP-{}",
            hash(&[&self.port_name, self.proto_lower(), &ep])
        )
    }
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    let encoded = BASE32.encode(&h.finalize());
    encoded[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn names_follow_kube_proxy() {
        let n = SetName::parse(&SetKey("default/web:http/TCP@ext".into())).unwrap();
        assert_eq!(n.base, "default/web:http/TCP");
        assert_eq!(n.port_name, "default/web:http");
        // sha256("default/web:httptcp"), base32, 16 characters.
        assert_eq!(
            n.svc_chain(),
            format!(
                "KUBE-SVC-{}",
                &BASE32.encode(&Sha256::digest(b"default/web:httptcp"))[..16]
            )
        );
        assert!(n.svl_chain().starts_with("KUBE-SVL-") && n.svl_chain()[9..] == n.svc_chain()[9..]);
        let ep = BackendAddr {
            addr: Ipv4Addr::new(198, 19, 1, 2),
            port: 8080,
            proto: Proto::Tcp,
        };
        assert_eq!(
            n.sep_chain(&ep),
            format!(
                "KUBE-SEP-{}",
                &BASE32.encode(&Sha256::digest(b"default/web:httptcp198.19.1.2:8080"))[..16]
            )
        );
        assert_eq!(n.svc_chain().len(), "KUBE-SVC-".len() + 16);
    }

    #[test]
    fn a_known_kube_proxy_name() {
        // From kube-proxy's own tests (pkg/proxy/iptables/proxier_test.go): the
        // service port "ns1/svc1:p80" over TCP is KUBE-SVC-XPGD46QRK7WJZT7O.
        let n = SetName::parse(&SetKey("ns1/svc1:p80/TCP".into())).unwrap();
        assert_eq!(n.svc_chain(), "KUBE-SVC-XPGD46QRK7WJZT7O");
        assert_eq!(n.ext_chain(), "KUBE-EXT-XPGD46QRK7WJZT7O");
    }

    #[test]
    fn unnamed_ports_use_the_service_name_alone() {
        let n = SetName::parse(&SetKey("default/legacy:6666/UDP".into())).unwrap();
        assert_eq!(n.port_name, "default/legacy");
        assert_eq!(n.proto, Proto::Udp);
        assert!(SetName::parse(&SetKey("nonsense".into())).is_none());
    }
}
