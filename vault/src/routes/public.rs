//! The public API: releasing, destroying and revoking, each authorised by the access
//! token itself. Every outcome is on the audit trail before the answer leaves vault:
//! successes here, refusals through [`access::audit_refusals`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use contract::wire::{DestroyResponse, ErrorBody, ReadKeyResponse, RevokeResponse};
use service_kit::clock::unix_now;

use crate::access_token::AccessTokenError;
use crate::audit::{AuditEntry, AuditEvent};
use crate::error::ApiError;
use crate::routes::access::{self, Authorized, Verified};
use crate::state::AppState;
use crate::storage::ReadGrant;

/// `GET`/`DELETE /api/keys/{key_id}` and `POST /api/tokens/revoke`, refusals audited.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/keys/{key_id}", get(read_key).delete(destroy_key))
        .route("/api/tokens/revoke", post(revoke_token))
        .route_layer(axum::middleware::from_fn_with_state(state, access::audit_refusals))
}

/// Releases the secret: counts one read.
///
/// After [`Authorized`]: the key exists and is live (404), the token's subject owns it
/// (403), the token carries the secret's share (403). The token then unwraps; the read is
/// counted and audited in a transaction (shared with concurrent writes: group commit) that
/// checks revocation, expiry and existence again, and only after that commits does the
/// plaintext leave. If the audit write fails,
/// the read fails (503).
#[utoipa::path(
    get,
    path = "/api/keys/{key_id}",
    tag = "keys",
    operation_id = "read_key",
    params(("key_id" = String, Path, description = "The secret's id: 1-64 of `A-Z a-z 0-9 - _`",
        pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The secret", body = ReadKeyResponse,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_key_id`", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`, `revoked_token`", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer` or `Bearer error=\"invalid_token\"`"))),
        (status = 403, description = "`token_not_valid_for_key`", body = ErrorBody),
        (status = 404, description = "`key_not_found`: no such secret, or expired or destroyed", body = ErrorBody),
        (status = 410, description = "`read_limit_reached`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "`integrity_error`: the stored envelope failed its integrity check; `internal_error`: the answer could not be written", body = ErrorBody),
        (status = 503, description = "`hsm_unavailable`, `storage_unavailable`, `jwks_unavailable` (with `Retry-After`)", body = ErrorBody),
    )
)]
pub(crate) async fn read_key(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Authorized { key_id, claims, secret }: Authorized,
) -> Result<Response, ApiError> {
    let now = unix_now();
    let secret = secret.ok_or(ApiError::NotFound)?;
    if secret.expires_at <= now {
        return Err(ApiError::NotFound);
    }
    if secret.user_id != claims.sub {
        return Err(ApiError::NotOwner);
    }
    let plaintext = state.opener.open(&secret, claims.share.as_ref()).await?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| ApiError::NotText)?;
    let read = AuditEntry::new(AuditEvent::Read, &key_id)
        .user(&claims.sub)
        .jti(&claims.jti)
        .client(Some(peer.ip().to_string()));
    // The clock again: the token's unwrap may have taken until the secret expired.
    match state.store.consume_read(&key_id, &claims.jti, unix_now(), read).await? {
        ReadGrant::Granted => {}
        ReadGrant::Exhausted => return Err(ApiError::ReadLimitReached),
        ReadGrant::Gone => return Err(ApiError::NotFound),
        ReadGrant::Revoked => return Err(AccessTokenError::Revoked.into()),
    }
    // The plaintext buffer is wiped when it drops at the end of this function; the
    // serialized body belongs to hyper from here on and cannot be.
    let body = serde_json::to_vec(&ReadKeyResponse { decrypted_key: text }).map_err(ApiError::Serialize)?;
    tracing::info!(%key_id, sub = %claims.sub, jti = %claims.jti, "secret released");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Destroys the secret the token unlocks. Idempotent: a second call answers the same.
#[utoipa::path(
    delete,
    path = "/api/keys/{key_id}",
    tag = "keys",
    operation_id = "destroy_key",
    params(("key_id" = String, Path, description = "The secret's id: 1-64 of `A-Z a-z 0-9 - _`",
        pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Destroyed (now or by an earlier call)", body = DestroyResponse),
        (status = 400, description = "`invalid_key_id`", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`, `revoked_token`", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer` or `Bearer error=\"invalid_token\"`"))),
        (status = 403, description = "`token_not_valid_for_key`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`storage_unavailable`, `jwks_unavailable` (with `Retry-After`); the token is not asked", body = ErrorBody),
    )
)]
pub(crate) async fn destroy_key(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Authorized { key_id, claims, secret }: Authorized,
) -> Result<Json<DestroyResponse>, ApiError> {
    if let Some(secret) = secret
        && secret.user_id != claims.sub
    {
        return Err(ApiError::NotOwner);
    }
    let audit = AuditEntry::new(AuditEvent::Destroyed, &key_id)
        .user(&claims.sub)
        .jti(&claims.jti)
        .client(Some(peer.ip().to_string()));
    state.store.destroy(&key_id, audit).await?;
    Ok(Json(DestroyResponse {
        key_id,
        destroyed: true,
    }))
}

/// Revokes the presented token until it would have expired. Idempotent.
#[utoipa::path(
    post,
    path = "/api/tokens/revoke",
    tag = "tokens",
    operation_id = "revoke_token",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked (now or by an earlier call)", body = RevokeResponse),
        (status = 401, description = "`missing_token`, `invalid_token` (a token already revoked is revoked again: 200)", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer` or `Bearer error=\"invalid_token\"`"))),
        (status = 429, description = "`rate_limited`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`storage_unavailable`, `jwks_unavailable` (with `Retry-After`)", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Verified(claims): Verified,
) -> Result<Json<RevokeResponse>, ApiError> {
    let audit = AuditEntry::new(AuditEvent::Revoked, &claims.key_id)
        .user(&claims.sub)
        .jti(&claims.jti)
        .client(Some(peer.ip().to_string()));
    state.store.revoke(&claims.jti, claims.exp, audit).await?;
    Ok(Json(RevokeResponse {
        jti: claims.jti,
        revoked: true,
    }))
}
