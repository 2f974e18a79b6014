//! `vault run`'s HTTP endpoint (`[scheduler] listen`, off unless set): `GET /metrics`
//! (Prometheus text: every unit's runs, and the process), `GET /healthz` (the loop is
//! alive: it beat within the last minute), `GET /readyz` (the configuration is loaded,
//! which it is once the endpoint answers). Nothing else; no writes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::status::Status;

/// The loop beats at least every 30 s; twice that without one is a hung loop.
const ALIVE_WITHIN_SECS: f64 = 60.0;

/// Binds `addr` (the error says which address could not be bound) and serves in the
/// background for as long as the process runs.
pub async fn serve(addr: SocketAddr, status: Arc<Status>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::error::Error::config(format!("[scheduler] listen {addr}: {e}")))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(status);
    tracing::info!("serving /metrics, /healthz and /readyz on http://{addr}");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the HTTP endpoint stopped: {e}");
        }
    });
    Ok(())
}

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        status.render(),
    )
}

async fn healthz(State(status): State<Arc<Status>>) -> impl IntoResponse {
    let quiet = status.since_heartbeat();
    if quiet < ALIVE_WITHIN_SECS {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the scheduler loop has not run for {quiet:.0}s\n"),
        )
    }
}

async fn readyz() -> &'static str {
    "ready\n"
}
