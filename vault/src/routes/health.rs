//! Liveness and readiness.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use service_kit::json::error_response;

use crate::state::AppState;
use service_kit::report::error_chain;

/// `/healthz` (process up) and `/readyz` (token answers, manager's keys loaded, database answers).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = state.pool.check().await {
        tracing::warn!(error = %error_chain(&e), "not ready: token");
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "hsm_unavailable",
            "the token does not answer",
        );
    }
    if !state.verifier.has_keys() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "jwks_unavailable",
            "manager's signing keys have not been loaded yet",
        );
    }
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %error_chain(&e), "not ready: storage");
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the database does not answer",
        );
    }
    (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
}
