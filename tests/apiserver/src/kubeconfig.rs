//! The kubeconfig clients use to reach the test apiserver: plain HTTP, no credentials.

/// Name of the cluster, user and context in the kubeconfig.
pub const NAME: &str = "svclb-testapi";

/// A kubeconfig for `server` (e.g. `http://127.0.0.1:41234`), current context set,
/// namespace `default`.
pub fn render(server: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {NAME}\n  \
           cluster:\n    \
             server: {server}\n\
         users:\n\
         - name: {NAME}\n  \
           user: {{}}\n\
         contexts:\n\
         - name: {NAME}\n  \
           context:\n    \
             cluster: {NAME}\n    \
             user: {NAME}\n    \
             namespace: default\n\
         current-context: {NAME}\n\
         preferences: {{}}\n"
    )
}
