//! `--nodeport-addresses`, as kube-proxy's: which node addresses NodePorts answer on.
use std::net::Ipv4Addr;

use crate::{cidr::Ipv4Cidr, ifaces::Iface};

/// The special value that means "this node's primary addresses".
pub const PRIMARY: &str = "primary";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Unset or `primary`: the Node object's InternalIP/ExternalIP addresses (else the
    /// addresses of the `--iface` interfaces) — svclb's default. kube-proxy's `primary`
    /// means the same (the node's primary IPs).
    Primary,
    /// The node's local addresses (any interface) inside these ranges, as kube-proxy.
    Cidrs(Vec<Ipv4Cidr>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodePortError {
    #[error("--nodeport-addresses {0}")]
    Cidr(#[from] crate::cidr::CidrError),
    #[error("--nodeport-addresses: {PRIMARY:?} cannot be combined with CIDRs")]
    PrimaryWithCidrs,
    #[error("--nodeport-addresses {cidrs}: no local IPv4 address is inside (local: {local})")]
    NoLocalAddress { cidrs: String, local: String },
}

pub fn parse(values: &[String]) -> Result<NodePortAddresses, NodePortError> {
    let values: Vec<&str> = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() || values == [PRIMARY] {
        return Ok(NodePortAddresses::Primary);
    }
    if values.contains(&PRIMARY) {
        return Err(NodePortError::PrimaryWithCidrs);
    }
    let cidrs: Result<Vec<Ipv4Cidr>, _> = values.iter().map(|v| v.parse()).collect();
    Ok(NodePortAddresses::Cidrs(cidrs?))
}

/// The local addresses inside `cidrs`, sorted; an error when there are none, since
/// NodePorts would then answer nowhere.
pub fn local_in(cidrs: &[Ipv4Cidr], present: &[Iface]) -> Result<Vec<Ipv4Addr>, NodePortError> {
    let local: Vec<Ipv4Addr> = present
        .iter()
        .flat_map(|i| i.ipv4.iter().copied())
        .collect();
    let mut hits: Vec<Ipv4Addr> = local
        .iter()
        .copied()
        .filter(|a| cidrs.iter().any(|c| c.contains(*a)))
        .collect();
    hits.sort();
    hits.dedup();
    if hits.is_empty() {
        let join = |v: Vec<String>| v.join(",");
        return Err(NodePortError::NoLocalAddress {
            cidrs: join(cidrs.iter().map(|c| c.to_string()).collect()),
            local: join(local.iter().map(|a| a.to_string()).collect()),
        });
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parse_values() {
        assert_eq!(parse(&[]).unwrap(), NodePortAddresses::Primary);
        assert_eq!(parse(&s(&["primary"])).unwrap(), NodePortAddresses::Primary);
        assert_eq!(
            parse(&s(&["10.0.0.0/8", "192.168.1.0/24"])).unwrap(),
            NodePortAddresses::Cidrs(vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.1.0/24".parse().unwrap()
            ])
        );
        assert_eq!(
            parse(&s(&["primary", "10.0.0.0/8"])),
            Err(NodePortError::PrimaryWithCidrs)
        );
        let e = parse(&s(&["10.0.0.0"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--nodeport-addresses \"10.0.0.0\": expected an IPv4 CIDR like 10.0.0.0/8"
        );
    }

    #[test]
    fn local_addresses_inside_the_ranges() {
        let present = vec![
            Iface {
                name: "lo".into(),
                up: true,
                loopback: true,
                ipv4: vec![Ipv4Addr::LOCALHOST],
            },
            Iface {
                name: "eth0".into(),
                up: true,
                loopback: false,
                ipv4: vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(192, 168, 1, 7)],
            },
            Iface {
                name: "eth1".into(),
                up: false,
                loopback: false,
                ipv4: vec![Ipv4Addr::new(10, 9, 0, 1)],
            },
        ];
        let c = |t: &str| -> Ipv4Cidr { t.parse().unwrap() };
        assert_eq!(
            local_in(&[c("10.0.0.0/8")], &present).unwrap(),
            [Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 9, 0, 1)]
        );
        assert_eq!(
            local_in(&[c("127.0.0.0/8")], &present).unwrap(),
            [Ipv4Addr::LOCALHOST]
        );
        let e = local_in(&[c("172.16.0.0/12")], &present).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--nodeport-addresses 172.16.0.0/12: no local IPv4 address is inside (local: 127.0.0.1,10.0.0.5,192.168.1.7,10.9.0.1)"
        );
    }
}
