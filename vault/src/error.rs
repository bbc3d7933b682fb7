//! vault's errors and their one mapping to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contract::envelope::EnvelopeError;
use service_kit::json::{BearerChallenge, JsonBodyError, error_response, unauthorized};
use service_kit::report::error_chain;

use crate::storage::StoreError;
use crate::token::TokenError;

/// Everything a vault request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or invalid access token.
    #[error("invalid access token")]
    Token(#[from] TokenError),
    /// A valid token, but for another secret.
    #[error("token is for another key")]
    WrongKey,
    /// A valid token for this key_id, but another owner holds it.
    #[error("token subject does not own the key")]
    NotOwner,
    /// No such secret (or it expired).
    #[error("no such key")]
    NotFound,
    /// The request body was refused.
    #[error(transparent)]
    Body(#[from] JsonBodyError),
    /// A key_id outside the allowed alphabet or length.
    #[error("invalid key_id")]
    InvalidKeyId,
    /// manager sent an envelope vault cannot or must not accept.
    #[error("invalid envelope")]
    InvalidEnvelope(#[source] EnvelopeError),
    /// manager sent an envelope sealed to a key vault does not hold.
    #[error("envelope sealed to unknown key {0:?}")]
    UnknownWrappingKey(String),
    /// Another secret already has this key_id.
    #[error("key_id already holds a different secret")]
    Conflict,
    /// A stored envelope did not open: swapped, edited or corrupted at rest.
    #[error("stored envelope failed its integrity check")]
    Integrity(#[source] EnvelopeError),
    /// The token (HSM) is unavailable.
    #[error("token unavailable")]
    Hsm(#[source] hsm::Error),
    /// The database is unavailable.
    #[error("storage unavailable")]
    Storage(#[from] StoreError),
}

impl From<hsm::Error> for ApiError {
    fn from(error: hsm::Error) -> Self {
        match error {
            hsm::Error::DecryptionFailed(_) => ApiError::Integrity(EnvelopeError::Integrity),
            other => ApiError::Hsm(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let cause = &self as &dyn std::error::Error;
        let chain = error_chain(cause);
        match &self {
            ApiError::Integrity(_) | ApiError::Hsm(_) | ApiError::Storage(_) => {
                tracing::error!(error = %chain, "request failed")
            }
            _ => tracing::info!(error = %chain, "request refused"),
        }
        match self {
            ApiError::Token(TokenError::Missing) => unauthorized(
                BearerChallenge::Missing,
                "missing_token",
                "an Authorization: Bearer token is required",
            ),
            ApiError::Token(_) => unauthorized(
                BearerChallenge::InvalidToken,
                "invalid_token",
                "the access token is invalid or expired",
            ),
            ApiError::WrongKey => error_response(
                StatusCode::FORBIDDEN,
                "token_not_valid_for_key",
                "the access token is for another key",
            ),
            ApiError::NotOwner => error_response(
                StatusCode::FORBIDDEN,
                "token_not_valid_for_key",
                "the access token's subject does not own this key",
            ),
            ApiError::NotFound => error_response(StatusCode::NOT_FOUND, "key_not_found", "no such key"),
            ApiError::Body(e) => e.into_response(),
            ApiError::InvalidKeyId => error_response(
                StatusCode::BAD_REQUEST,
                "invalid_key_id",
                "key_id must be 1-64 characters of A-Z a-z 0-9 - _",
            ),
            ApiError::InvalidEnvelope(e) => error_response(StatusCode::BAD_REQUEST, "invalid_envelope", e.to_string()),
            ApiError::UnknownWrappingKey(_) => error_response(
                StatusCode::BAD_REQUEST,
                "unknown_wrapping_key",
                "the envelope is sealed to a key this vault does not hold",
            ),
            ApiError::Conflict => error_response(
                StatusCode::CONFLICT,
                "key_id_conflict",
                "key_id already holds a different secret",
            ),
            ApiError::Integrity(_) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "integrity_error",
                "the stored secret failed its integrity check",
            ),
            ApiError::Hsm(_) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "hsm_unavailable",
                "the key store is unavailable; retry later",
            ),
            ApiError::Storage(_) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "storage is unavailable; retry later",
            ),
        }
    }
}

/// key_ids are manager's UUIDs; anything else is refused before touching storage.
pub(crate) fn check_key_id(key_id: &str) -> Result<(), ApiError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= 64
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(ApiError::InvalidKeyId) }
}
