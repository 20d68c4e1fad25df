//! svclb node agent as a library: the binary in main.rs is a thin CLI over it, and the
//! integration tests and benchmarks drive the same code.
pub mod bpffs;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod dump;
pub mod flow;
pub mod health;
pub mod health_check;
pub mod http;
pub mod ifaces;
pub mod memlock;
pub mod metrics;
pub mod model;
pub mod netif;
pub mod nlsock;
pub mod nodeport;
pub mod plan;
pub mod run;
pub mod sockdiag;
pub mod source;
pub mod sysctl;

/// The eBPF object built by build.rs (aya-build), embedded so the agent is one file.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/svclb"));
