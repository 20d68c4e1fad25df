// Empty library target so svclb-agent can name this crate as a build-dependency and be
// rebuilt when it changes; the programs are in the `svclb` binary (main.rs).
#![no_std]
