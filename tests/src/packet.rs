//! Packet fixtures for the eBPF programs: test packets (`build`), checks of what comes
//! out that do not trust the program (`check`), and running the programs through
//! BPF_PROG_TEST_RUN with maps the test fills itself (`harness`).
pub mod build;
pub mod check;
pub mod harness;
