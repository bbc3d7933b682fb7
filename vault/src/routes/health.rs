//! Liveness and readiness.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use contract::error_code::ErrorCode;
use contract::wire::{ErrorBody, HealthStatus};
use service_kit::health::{check_token, not_ready, ready};
use service_kit::json::error_response;

use crate::state::AppState;

/// `/healthz` (process up) and `/readyz` (token answers, manager's keys loaded, database answers).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = HealthStatus))
)]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    service_kit::health::healthz().await
}

/// The token answers, manager's signing keys are loaded and the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = HealthStatus),
        (status = 503, description = "`hsm_unavailable`, `jwks_unavailable`, `storage_unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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
