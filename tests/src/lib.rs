//! Shared helpers for svclb's integration tests.
