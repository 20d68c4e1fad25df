//! Shared helpers for svclb's integration tests.
pub mod agent;
pub mod bpffs;
pub mod demo;
pub mod http;
pub mod kube_env;
pub mod manifests;
pub mod modes;
pub mod multinode;
pub mod netns;
pub mod packet;
pub mod process;
pub mod report;
pub mod sandbox;
pub mod semantics;
pub mod synthetic;
pub mod topology;
