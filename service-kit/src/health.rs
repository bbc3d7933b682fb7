//! Liveness and readiness answers both services share; each service adds its own checks.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contract::error_code::ErrorCode;
use serde_json::{Value, json};

use crate::json::error_response;
use crate::report::error_chain;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `200 {"status": "ready"}`.
pub fn ready() -> Response {
    (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
}

/// `503` in the error shape; the cause goes to the log only.
pub fn not_ready(code: ErrorCode, message: &str, cause: &dyn std::error::Error) -> Response {
    tracing::warn!(%code, error = %error_chain(cause), "not ready");
    error_response(StatusCode::SERVICE_UNAVAILABLE, code, message)
}

/// The token answers (a session works), or the `503` to send.
pub async fn check_token(pool: &hsm::TokenPool) -> Result<(), Response> {
    pool.check()
        .await
        .map_err(|e| not_ready(ErrorCode::HsmUnavailable, "the token does not answer", &e))
}
