//! The packet and source-NAT fixtures again, with the oldest supported kernel's variant
//! of every feature (`Features::BASELINE`: the precise clock, source NAT from the
//! interface table), on whatever kernel runs them: the VMs prove those variants on old
//! kernels, this proves them here on every test run.
//! `cargo test -p svclb-tests --test packet_baseline`
use svclb_agent::dataplane::ebpf::features::Choice;

/// Read by the included files as `crate::FEATURES`.
const FEATURES: Choice = Choice::Baseline;

#[path = "packet_fixtures.rs"]
mod fixtures;
#[path = "packet_snat.rs"]
mod snat;
