//! canal-operator: reconciles `CanalInstance` resources (defined in the `canal-api` crate) into the Kubernetes
//! objects that run canal-instance pods. So far the crate holds `crdgen`, which writes the CRD YAML; the
//! controller is being built (see the project's issue on the operator).
