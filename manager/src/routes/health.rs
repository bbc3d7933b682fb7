//! Liveness and readiness.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use contract::error_code::ErrorCode;
use service_kit::health::{check_token, healthz, not_ready, ready};

use crate::state::AppState;

/// `/healthz` (process up) and `/readyz` (token answers, vault reachable).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(answer) = check_token(state.issuer.keys().pool()).await {
        return answer;
    }
    if let Err(e) = state.vault.check().await {
        return not_ready(ErrorCode::VaultUnavailable, "vault is unreachable", &e);
    }
    ready()
}
