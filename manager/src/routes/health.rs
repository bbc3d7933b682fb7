//! Liveness and readiness.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use contract::error_code::ErrorCode;
use contract::wire::{ErrorBody, HealthStatus};
use service_kit::health::{check_token, not_ready, ready};

use crate::state::AppState;

/// `/healthz` (process up) and `/readyz` (token answers, vault reachable).
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

/// The token answers and vault's internal listener accepts manager's certificate.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = HealthStatus),
        (status = 503, description = "`hsm_unavailable`, `vault_unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(answer) = check_token(state.issuer.keys().pool()).await {
        return answer;
    }
    if let Err(e) = state.vault.check().await {
        return not_ready(ErrorCode::VaultUnavailable, "vault is unreachable", &e);
    }
    ready()
}
