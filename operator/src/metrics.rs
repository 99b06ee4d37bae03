//! The operator's Prometheus metrics: reconcile runs, failures by error kind, and durations.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// One of [`Error::metric_label`]'s fixed values, never free text.
    error: &'static str,
}

pub struct Metrics {
    runs: Counter,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl Metrics {
    /// Registers the metrics under `canal_operator_reconcile_*`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            runs: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0]),
        };
        let sub = registry.sub_registry_with_prefix("canal_operator_reconcile");
        sub.register("runs", "Reconciliations started", metrics.runs.clone());
        sub.register(
            "failures",
            "Reconciliations that failed, by error kind",
            metrics.failures.clone(),
        );
        sub.register(
            "duration_seconds",
            "How long reconciliations took",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Counts a run and observes its duration when the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.runs.inc();
        ReconcileTimer {
            histogram: &self.duration,
            started: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, error: &Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.metric_label(),
            })
            .inc();
    }
}

/// Observes the reconcile duration on drop.
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_labelled_by_kind() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        drop(metrics.reconcile_started());
        metrics.reconcile_failed(&Error::InvalidSpec("free text must not become a label".into()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("canal_operator_reconcile_runs_total 1"), "{text}");
        assert!(
            text.contains(r#"canal_operator_reconcile_failures_total{error="invalid_spec"} 1"#),
            "{text}"
        );
        assert!(!text.contains("free text"));
    }
}
