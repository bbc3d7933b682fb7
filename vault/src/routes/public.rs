//! The public API: releasing a secret to the holder of a valid token.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use contract::envelope::{Binding, EnvelopeError};
use contract::wire::ReadKeyResponse;

use crate::error::ApiError;
use crate::state::{AppState, unix_now};
use crate::token::TokenError;

/// `GET /api/keys/{key_id}`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/keys/{key_id}", get(read_key))
}

/// Order of checks: token (401), token names this key (403), key exists and is live
/// (404), token subject owns it (403); only then does the token decrypt anything.
async fn read_key(
    State(state): State<Arc<AppState>>,
    Path(key_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer_token(&headers)?;
    let claims = state.verifier.verify(token)?;
    if claims.key_id != key_id {
        return Err(ApiError::WrongKey);
    }
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
    let plaintext = state.opener.open(&secret.envelope, binding).await?;
    let text = std::str::from_utf8(&plaintext)
        .map_err(|_| ApiError::Integrity(EnvelopeError::Malformed("plaintext is not UTF-8")))?;
    // The plaintext buffer is wiped when it drops at the end of this function; the
    // serialized body belongs to hyper from here on and cannot be.
    let body = serde_json::to_vec(&ReadKeyResponse { decrypted_key: text })
        .map_err(|_| ApiError::Integrity(EnvelopeError::Malformed("unserialisable plaintext")))?;
    tracing::info!(key_id = %secret.key_id, sub = %claims.sub, jti = %claims.jti, "secret released");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
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
