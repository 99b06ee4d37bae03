//! canal-operator: reconciles `CanalInstance` resources (defined in the `canal-api` crate) into the Kubernetes
//! objects that run canal-instance pods. [`resources`] builds those objects; `crdgen` writes the CRD YAML.
//! The controller that applies them is being built (see the project's issue on the operator).

pub mod resources;

/// Everything that can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CanalInstance cannot be turned into a working configuration.
    #[error("invalid CanalInstance: {0}")]
    InvalidSpec(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}
