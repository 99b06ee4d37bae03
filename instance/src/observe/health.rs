//! HTTP endpoints on the metrics port: `/healthz` answers while the process runs, `/readyz` says whether this
//! instance serves (or stands by, healthy) and, when it cannot, why, and `/metrics` is for Prometheus.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ha::Standing;

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(standing): State<watch::Receiver<Standing>>) -> (StatusCode, String) {
    match &*standing.borrow() {
        Standing::Active => (StatusCode::OK, "active: serving clients\n".into()),
        Standing::Standby(Some(active)) => (StatusCode::OK, format!("standby: {active} is active\n")),
        Standing::Standby(None) => (StatusCode::OK, "standby\n".into()),
        Standing::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not serving: {why}\n")),
    }
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::observe::metrics::encode(&registry),
    )
}

/// Serves the probes and the metrics until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    standing: watch::Receiver<Standing>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(standing)
        .merge(Router::new().route("/metrics", get(metrics)).with_state(registry));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "health endpoint failed");
    }
}
