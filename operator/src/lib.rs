//! canal-operator: reconciles `CanalInstance` resources (defined in the `canal-api` crate) into the Kubernetes
//! objects that run canal-instance pods. [`resources`] builds those objects, [`controller`] applies them, and
//! [`metrics`] counts what it does; `crdgen` writes the CRD YAML.

pub mod controller;
pub mod http;
pub mod metrics;
pub mod resources;
pub mod values;

/// Everything that can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CanalInstance cannot be turned into a working configuration.
    #[error("invalid CanalInstance: {0}")]
    InvalidSpec(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("ZooKeeper: {0}")]
    ZooKeeper(String),
    /// Deletion waits for the pods to stop; retried, not a fault.
    #[error("waiting: {0}")]
    WaitingForPods(String),
}

impl Error {
    /// A fixed label per kind, for metrics (never free text).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Kube(_) => "kube",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::ZooKeeper(_) => "zookeeper",
            Error::WaitingForPods(_) => "waiting_for_pods",
        }
    }
}
