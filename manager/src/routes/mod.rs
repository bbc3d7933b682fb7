//! manager's HTTP routes, one module per resource.

pub mod health;
pub mod jwks;
pub mod keys;

use axum::http::StatusCode;
use axum::response::Response;
use service_kit::json::error_response;

pub(crate) async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}
