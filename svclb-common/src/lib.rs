//! The map ABI shared by `svclb-ebpf` (kernel) and `svclb-agent` (user space).
//!
//! Everything the two sides exchange is defined here and nowhere else. Rules:
//! every type is `#[repr(C)]` with explicit padding (asserted at compile time), flags
//! are integers (no `bool`/`enum` in a map value), and every field that is in network
//! byte order says so with a `_be` suffix: those are stored exactly as they appear in
//! the packet so the data path never swaps bytes.
#![no_std]

pub mod features;
pub mod flags;
pub mod hash;
pub mod maps;
pub mod types;

pub use features::*;
pub use flags::*;
pub use hash::{flow_hash, fmix};
pub use maps::*;
pub use types::*;
