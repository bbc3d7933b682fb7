//! Liveness and readiness.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use contract::error_code::ErrorCode;
use service_kit::health::{check_token, healthz, not_ready, ready};
use service_kit::json::error_response;

use crate::state::AppState;

/// `/healthz` (process up) and `/readyz` (token answers, manager's keys loaded, database answers).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(answer) = check_token(state.opener.keys().pool()).await {
        return answer;
    }
    if !state.verifier.has_keys() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::JwksUnavailable,
            "manager's signing keys have not been loaded yet",
        );
    }
    if let Err(e) = state.store.ping().await {
        return not_ready(ErrorCode::StorageUnavailable, "the database does not answer", &e);
    }
    ready()
}
