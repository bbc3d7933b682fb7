//! The public API: releasing, destroying and revoking, each authorised by the access
//! token itself. Every outcome is on the audit trail before the answer leaves vault.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use contract::claims::AccessClaims;
use contract::envelope::{Binding, EnvelopeError};
use contract::wire::{DestroyResponse, ReadKeyResponse, RevokeResponse};

use crate::audit::{AuditEntry, AuditEvent};
use crate::error::ApiError;
use crate::state::{AppState, unix_now};
use crate::storage::ReadGrant;
use crate::token::TokenError;

/// `GET`/`DELETE /api/keys/{key_id}` and `POST /api/tokens/revoke`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/keys/{key_id}", get(read_key).delete(destroy_key))
        .route("/api/tokens/revoke", post(revoke_token))
}

/// Order of checks: token (401), not revoked (401), token names this key (403), key
/// exists and is live (404), token subject owns it (403). The token then decrypts the
/// content key; the read is counted and audited in one transaction, and only after that
/// commits does the plaintext leave. If the audit write fails, the read fails (503).
async fn read_key(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let audit = AuditEntry::new(AuditEvent::Read, &key_id).client(Some(peer.ip().to_string()));
    let result = async {
        let claims = authorize(&state, &headers, &key_id).await?;
        let secret = state.store.get(&key_id).await?.ok_or(ApiError::NotFound)?;
        if secret.expires_at <= unix_now() {
            return Err(ApiError::NotFound);
        }
        if secret.user_id != claims.sub {
            return Err(ApiError::NotOwner);
        }
        let binding = Binding {
            key_id: &secret.key_id,
            user_id: &secret.user_id,
        };
        let plaintext = state
            .opener
            .open(&secret.envelope, binding, secret.wrap_kid.as_deref())
            .await?;
        let text = std::str::from_utf8(&plaintext)
            .map_err(|_| ApiError::Integrity(EnvelopeError::Malformed("plaintext is not UTF-8")))?;
        let read = audit.clone().user(&claims.sub).jti(&claims.jti);
        match state.store.consume_read(&key_id, unix_now(), read).await? {
            ReadGrant::Granted => {}
            ReadGrant::Exhausted => return Err(ApiError::ReadLimitReached),
            ReadGrant::Gone => return Err(ApiError::NotFound),
        }
        // The plaintext buffer is wiped when it drops at the end of this block; the
        // serialized body belongs to hyper from here on and cannot be.
        let body = serde_json::to_vec(&ReadKeyResponse { decrypted_key: text })
            .map_err(|_| ApiError::Integrity(EnvelopeError::Malformed("unserialisable plaintext")))?;
        tracing::info!(key_id = %secret.key_id, sub = %claims.sub, jti = %claims.jti, "secret released");
        Ok(body)
    }
    .await;
    match result {
        Ok(body) => {
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        Err(error) => Err(deny(&state, audit, error).await),
    }
}

/// Destroys the secret the token unlocks. Idempotent: a second call answers the same.
async fn destroy_key(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<DestroyResponse>, ApiError> {
    let audit = AuditEntry::new(AuditEvent::Destroyed, &key_id).client(Some(peer.ip().to_string()));
    let result = async {
        let claims = authorize(&state, &headers, &key_id).await?;
        if let Some(secret) = state.store.get(&key_id).await?
            && secret.user_id != claims.sub
        {
            return Err(ApiError::NotOwner);
        }
        state
            .store
            .destroy(&key_id, audit.clone().user(&claims.sub).jti(&claims.jti))
            .await?;
        Ok(Json(DestroyResponse {
            key_id: key_id.clone(),
            destroyed: true,
        }))
    }
    .await;
    match result {
        Ok(answer) => Ok(answer),
        Err(error) => Err(deny(&state, audit, error).await),
    }
}

/// Revokes the presented token until it would have expired. Idempotent.
async fn revoke_token(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<RevokeResponse>, ApiError> {
    let client = Some(peer.ip().to_string());
    let verified = match bearer_token(&headers) {
        Ok(token) => state.verifier.verify(token).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let claims = match verified {
        Ok(claims) => claims,
        Err(error) => {
            let audit = AuditEntry {
                key_id: None,
                ..AuditEntry::new(AuditEvent::Revoked, "")
            }
            .client(client);
            return Err(deny(&state, audit, error).await);
        }
    };
    let audit = AuditEntry::new(AuditEvent::Revoked, &claims.key_id)
        .user(&claims.sub)
        .jti(&claims.jti)
        .client(client);
    state.store.revoke(&claims.jti, claims.exp, audit).await?;
    Ok(Json(RevokeResponse {
        jti: claims.jti,
        revoked: true,
    }))
}

/// A verified, unrevoked token for `key_id`.
async fn authorize(state: &AppState, headers: &HeaderMap, key_id: &str) -> Result<AccessClaims, ApiError> {
    let claims = state.verifier.verify(bearer_token(headers)?).await?;
    if state.store.is_revoked(&claims.jti).await? {
        return Err(ApiError::Token(TokenError::Revoked));
    }
    if claims.key_id != key_id {
        return Err(ApiError::WrongKey);
    }
    Ok(claims)
}

/// Appends the denial to the audit trail (with the reason) and hands the error back.
/// A failed audit write is logged; the request is refused either way.
async fn deny(state: &AppState, audit: AuditEntry, error: ApiError) -> ApiError {
    let (_, reason) = error.status_and_code();
    let entry = AuditEntry {
        event: AuditEvent::Denied,
        ..audit
    }
    .outcome(reason);
    if let Err(audit_error) = state.store.audit(entry).await {
        tracing::error!(error = %service_kit::report::error_chain(&audit_error), "could not audit a denial");
    }
    error
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Token(TokenError::Missing))?
        .to_str()
        .map_err(|_| ApiError::Token(TokenError::Unreadable))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Token(TokenError::Missing))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Token(TokenError::Missing));
    }
    Ok(token.trim())
}
