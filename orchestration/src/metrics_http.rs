//! `run --metrics-addr`: the process's metrics for Prometheus (`/metrics`), liveness
//! (`/healthz`: the process answers) and readiness (`/readyz`: every stage has its Kafka
//! assignment or its source table, and its own table).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Starts serving on `addr` beside the run, announcing `metrics listening on URL` on stdout
/// (so that port 0 can be used); it ends with the process.
pub async fn spawn(addr: &str) -> anyhow::Result<()> {
    let listener = crate::http::listen(addr, "metrics").await?;
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        pipelines::metrics::render(),
    )
}

async fn ready() -> impl IntoResponse {
    match pipelines::metrics::not_ready() {
        Some(waiting) if waiting.is_empty() => (StatusCode::OK, "ready\n".to_string()),
        Some(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for {}\n", waiting.join(", ")),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no stage has started\n".to_string(),
        ),
    }
}
