//! The internal API on the mutual-TLS listener: manager stores envelopes here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use contract::envelope::Binding;
use contract::jwk::Jwk;
use contract::wire::{ErrorBody, HealthStatus, StoreEnvelopeRequest, StoreEnvelopeResponse};
use serde_json::json;
use service_kit::clock::unix_now;
use service_kit::json::AppJson;

use crate::error::{ApiError, check_key_id};
use crate::state::AppState;
use crate::storage::{PutOutcome, StoredSecret};

/// `PUT /internal/keys/{key_id}`, `GET /internal/wrapping-key`, `GET /internal/healthz`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/internal/keys/{key_id}", put(store_envelope))
        .route("/internal/healthz", get(internal_healthz))
        .route("/internal/wrapping-key", get(wrapping_key))
}

/// Stores a sealed envelope.
///
/// Answers only after the row is committed durably, so that manager may hand out the
/// token. Idempotent: 201 for a new row, 200 for the identical row, 409 otherwise.
#[utoipa::path(
    put,
    path = "/internal/keys/{key_id}",
    tag = "internal",
    operation_id = "store_envelope",
    params(("key_id" = String, Path, description = "The secret's id: 1-64 of `A-Z a-z 0-9 - _`",
        pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = StoreEnvelopeRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored", body = StoreEnvelopeResponse),
        (status = 200, description = "The identical envelope was already stored", body = StoreEnvelopeResponse),
        (status = 400, description = "`invalid_json`, `invalid_request`, `invalid_key_id`, `invalid_envelope`, `unknown_wrapping_key`", body = ErrorBody),
        (status = 409, description = "`key_id_conflict`: the key_id holds a different envelope", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn store_envelope(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(key_id): Path<String>,
    body: Result<AppJson<StoreEnvelopeRequest>, service_kit::json::JsonBodyError>,
) -> Result<Response, ApiError> {
    let AppJson(request) = body?;
    check_key_id(&key_id)?;
    state.opener.check_incoming(
        &request.envelope,
        Binding {
            key_id: &key_id,
            user_id: &request.user_id,
        },
    )?;
    let secret = StoredSecret {
        key_id: key_id.clone(),
        user_id: request.user_id,
        envelope: request.envelope,
        created_at: unix_now(),
        expires_at: request.expires_at,
        reads_left: request.max_reads,
        wrap_kid: None,
    };
    let status = match state.store.put(&secret, Some(peer.ip().to_string())).await? {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::AlreadyStored => StatusCode::OK,
        PutOutcome::Conflict => return Err(ApiError::Conflict),
    };
    tracing::info!(%key_id, user_id = %secret.user_id, created = status == StatusCode::CREATED, "envelope stored");
    Ok((
        status,
        Json(StoreEnvelopeResponse {
            key_id,
            created: status == StatusCode::CREATED,
        }),
    )
        .into_response())
}

/// The public half of the newest wrapping key, as a JWK: what manager seals to.
#[utoipa::path(
    get,
    path = "/internal/wrapping-key",
    tag = "internal",
    operation_id = "wrapping_key",
    responses((status = 200, description = "An RSA public key (`use` = `enc`)", body = Jwk))
)]
pub(crate) async fn wrapping_key(State(state): State<Arc<AppState>>) -> Json<Jwk> {
    Json(state.opener.current_jwk())
}

/// The internal listener answers.
#[utoipa::path(
    get,
    path = "/internal/healthz",
    tag = "internal",
    operation_id = "internal_healthz",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = HealthStatus))
)]
pub(crate) async fn internal_healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}
