//! What canal-rs shows of itself: Prometheus [`metrics`] (written at scrape time by [`collector`]), the [`health`] endpoints (`/healthz`, `/readyz`,
//! `/metrics`) and, in Kubernetes, the pod's role and position reported by [`report`].

pub mod collector;
pub mod health;
pub mod metrics;
pub mod report;
