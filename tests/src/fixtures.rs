//! The Services most scenarios share: `web` (TCP, ClusterIP and NodePort) and `dns`
//! (UDP), served by the sandbox's pods.
use std::net::Ipv4Addr;

use crate::{
    manifests::{self, ServicePort, SlicePort, Target},
    sandbox::{POD_HTTP_PORT, POD_UDP_PORT},
};

pub const WEB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const WEB_NODE_PORT: u16 = 30080;
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);

/// The pods' HTTP port as an EndpointSlice port named `http`.
pub const HTTP: SlicePort = SlicePort {
    name: "http",
    protocol: "TCP",
    port: POD_HTTP_PORT,
};

/// The pods' UDP echo as an EndpointSlice port named `dns`.
pub const DNS_PORT: SlicePort = SlicePort {
    name: "dns",
    protocol: "UDP",
    port: POD_UDP_PORT,
};

/// The Service `web` alone: ClusterIP [`WEB_IP`]:80 and NodePort [`WEB_NODE_PORT`] →
/// the pods' HTTP port.
pub fn web_service() -> String {
    manifests::service(
        "web",
        WEB_IP,
        Some("web"),
        &[
            ServicePort::tcp(Some("http"), 80, Target::Number(POD_HTTP_PORT))
                .with_node_port(WEB_NODE_PORT),
        ],
    )
}

/// `web` with an EndpointSlice of `pods`.
pub fn web(pods: &[Ipv4Addr]) -> String {
    manifests::documents(&[
        web_service(),
        manifests::endpoint_slice("web", "web-x7k2p", &[HTTP], pods),
    ])
}

/// Service `dns`: ClusterIP [`DNS_IP`]:53/UDP → the pods' UDP echo, with `pods`.
pub fn dns(pods: &[Ipv4Addr]) -> String {
    manifests::documents(&[
        manifests::service(
            "dns",
            DNS_IP,
            Some("dns"),
            &[ServicePort::udp(
                Some("dns"),
                53,
                Target::Number(POD_UDP_PORT),
            )],
        ),
        manifests::endpoint_slice("dns", "dns-4fj2q", &[DNS_PORT], pods),
    ])
}
