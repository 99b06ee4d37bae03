//! canal-operator: reconciles `CanalInstance` resources (defined in the `canal-api` crate) into the Kubernetes
//! objects that run canal-instance pods. A reconcile is a pipeline, one module per step:
//! [`dereference`] → [`validate`] → [`children`] (build and apply, from the builders in [`resources`]) →
//! [`status`]. [`controller`] wires the steps, the watches and the finalizer; [`leader`] lets only one replica
//! reconcile; [`metrics`] and [`http`] show what it does; `crdgen` writes the CRD YAML.

pub mod children;
pub mod controller;
pub mod dereference;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod resources;
pub mod status;
pub mod validate;
pub mod values;
pub mod zookeeper;

/// Everything that can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CanalInstance cannot be turned into a working configuration.
    #[error("invalid CanalInstance: {0}")]
    InvalidSpec(String),
    /// A child could not be serialized (a bug, not a user error).
    #[error("cannot render a child: {0}")]
    Render(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(transparent)]
    ZooKeeper(#[from] zookeeper::ZkError),
    /// Deletion waits for the pods to stop; retried, not a fault.
    #[error("waiting: {0}")]
    WaitingForPods(String),
}

impl Error {
    /// A fixed label per kind, for metrics (never free text).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Render(_) => "render",
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
