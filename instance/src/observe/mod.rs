//! What canal-rs shows of itself: Prometheus [`metrics`], the [`health`] endpoints (`/healthz`, `/readyz`,
//! `/metrics`) and, in Kubernetes, the pod's role and position reported by [`report`].

pub mod health;
pub mod metrics;
pub mod report;
