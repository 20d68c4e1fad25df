//! Where Kubernetes objects come from: manifest files or the apiserver.
