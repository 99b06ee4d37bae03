//! The instance's Prometheus metrics, served on the metrics port at `/metrics` by [`health`](crate::health).
//!
//! Labels are bounded: the destination (one per process) and client ids (16-bit, and only those that subscribed).
//! Addresses are free text and stay out of labels; they are in the logs and the CanalInstance status.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub destination: String,
    pub client_id: String,
}

/// Every metric the instance exports, as handles that the parts updating them clone.
pub struct Metrics {
    pub client_connected: Family<ClientLabels, Gauge>,
    pub client_refused: Family<ClientLabels, Counter>,
    pub client_evictions: Family<ClientLabels, Counter>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            client_connected: Family::default(),
            client_refused: Family::default(),
            client_evictions: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("canal_rs");
        sub.register(
            "client_connected",
            "1 while a connection consumes the client id",
            metrics.client_connected.clone(),
        );
        sub.register(
            "client_refused",
            "Requests refused because another connection consumes the client id",
            metrics.client_refused.clone(),
        );
        sub.register(
            "client_evictions",
            "Connections closed because client HA made another consumer of the client id active",
            metrics.client_evictions.clone(),
        );
        metrics
    }
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    text
}
