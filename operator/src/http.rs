//! The operator's HTTP endpoints: `/metrics` (OpenMetrics text), `/healthz`, and `/readyz` (ready once the
//! Kubernetes client works; the body says whether this replica leads).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the endpoints report.
pub struct Status {
    pub registry: Registry,
    /// Whether this replica currently holds the leader lease.
    pub leading: AtomicBool,
}

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &status.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn readyz(State(status): State<Arc<Status>>) -> &'static str {
    if status.leading.load(Ordering::Relaxed) {
        "leader\n"
    } else {
        "standby\n"
    }
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, status: Arc<Status>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(status);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "HTTP endpoint failed");
    }
}
