//! Synthetic desired states for dataplane tests and benchmarks: `services` ClusterIP
//! Services (198.18.x.x:80/TCP) with `endpoints` endpoints each (198.19.x.x:8080).
use std::net::Ipv4Addr;

use svclb_agent::model::{
    BackendAddr, BackendSet, DesiredState, Endpoint, Frontend, FrontendKind, Proto, SetKey,
};

/// Set key of synthetic Service `i`.
pub fn set_key(i: u32) -> SetKey {
    SetKey(format!("bench/svc-{i}:http/TCP"))
}

/// Frontend address of synthetic Service `i`.
pub fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xC612_0000 + i)
}

/// Address of endpoint `j` of synthetic Service `i` (j < 16).
pub fn endpoint_ip(i: u32, j: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xC613_0000 + i * 16 + j)
}

pub fn state(services: u32, endpoints: u32) -> DesiredState {
    assert!(
        endpoints <= 16 && services < 0x1_0000 * 16,
        "outside 198.18.0.0/15"
    );
    let mut s = DesiredState::default();
    for i in 0..services {
        let mut set = BackendSet::default();
        for j in 0..endpoints {
            set.endpoints.push(Endpoint {
                backend: BackendAddr {
                    addr: endpoint_ip(i, j),
                    port: 8080,
                    proto: Proto::Tcp,
                },
                terminating: false,
                local: false,
            });
        }
        set.frontends.insert(
            Frontend {
                addr: vip(i),
                port: 80,
                proto: Proto::Tcp,
                scope: Default::default(),
            },
            FrontendKind::ClusterIp,
        );
        s.sets.insert(set_key(i), set);
    }
    s
}
