//! Pure planning: Kubernetes objects → [`crate::model::DesiredState`] → map delta.
//! No aya, no kube client, no I/O.
pub mod applied;
mod conflicts;
pub mod desired;
pub mod diff;
mod endpoints;
pub mod errors;
pub mod health_check;
pub mod ids;
pub mod image;
pub mod maglev;
pub mod planner;
mod policy_flags;
mod service;
mod source_ranges;
pub mod validate;

pub use desired::{NodeInfo, Plan, PlanOptions, plan};
pub use errors::{ErrorKind, PlanError};
pub use planner::{Lookup, Planner, Touched, Update};
pub use service::{ANNOTATION_LB_ALGORITHM, DEFAULT_AFFINITY_TIMEOUT_S};

#[cfg(test)]
mod diff_tests;
#[cfg(test)]
mod tests;
