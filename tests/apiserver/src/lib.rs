//! svclb-testapi: a small in-memory Kubernetes apiserver for tests, real enough that
//! kubectl and kube-rs work against it over plain HTTP.
//!
//! Serves Services, Endpoints, Nodes, Namespaces (core/v1) and EndpointSlices
//! (discovery.k8s.io/v1), and stores the kinds svclb's deploy/ creates (ServiceAccount,
//! ConfigMap, apps/v1 DaemonSet, rbac ClusterRole and ClusterRoleBinding): discovery (legacy and aggregated), create / get / list /
//! replace / patch (merge, JSON, strategic for the keyed lists) / delete /
//! deletecollection, `/status` subresources, watches with resource versions, bookmarks,
//! timeouts and 410 Expired, server-side field validation, Tables for `kubectl get`.
//! Test hooks (`/_test/…` or methods of [`TestApiServer`]) cut watch streams, compact the
//! history, and simulate restarts. Beside it runs the EndpointSlice mirroring controller
//! (`mirror`; `Config::mirroring`, `--no-endpointslice-mirroring`).
//!
//! ```no_run
//! let server = svclb_testapi::TestApiServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
//! server.kubeconfig(std::path::Path::new("/tmp/kubeconfig")).unwrap();
//! server.cut_watches();
//! server.expire();
//! ```

pub mod alloc;
pub mod canonical;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod hooks;
pub mod http;
pub mod kubeconfig;
pub mod mirror;
pub mod objects;
pub mod resource;
pub mod selector;
pub mod server;
pub mod store;
pub mod strategic;
pub mod table;
pub mod validate;
pub mod validate_deploy;
pub mod watch;

pub use alloc::Ipv4Cidr;
pub use error::ApiError;
pub use hooks::Stats;
pub use objects::Objects;
pub use server::{Config, StartError, TestApiServer};
