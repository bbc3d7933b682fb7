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
    /// Missing, invalid or revoked access token.
    #[error("invalid access token")]
    Token(#[from] TokenError),
    /// A valid token, but for another secret.
    #[error("token is for another key")]
    WrongKey,
    /// A valid token for this key_id, but another owner holds it.
    #[error("token subject does not own the key")]
    NotOwner,
    /// No such secret (or it expired or was destroyed).
    #[error("no such key")]
    NotFound,
    /// The secret's read limit is used up.
    #[error("read limit reached")]
    ReadLimitReached,
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
    /// The database (or the audit trail in it) is unavailable: fail closed.
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

impl ApiError {
    /// Status and machine code; the code is also the audit outcome of a denial.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Token(TokenError::Missing) => (StatusCode::UNAUTHORIZED, "missing_token"),
            ApiError::Token(TokenError::Revoked) => (StatusCode::UNAUTHORIZED, "revoked_token"),
            ApiError::Token(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::WrongKey | ApiError::NotOwner => (StatusCode::FORBIDDEN, "token_not_valid_for_key"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "key_not_found"),
            ApiError::ReadLimitReached => (StatusCode::GONE, "read_limit_reached"),
            ApiError::Body(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::InvalidKeyId => (StatusCode::BAD_REQUEST, "invalid_key_id"),
            ApiError::InvalidEnvelope(_) => (StatusCode::BAD_REQUEST, "invalid_envelope"),
            ApiError::UnknownWrappingKey(_) => (StatusCode::BAD_REQUEST, "unknown_wrapping_key"),
            ApiError::Conflict => (StatusCode::CONFLICT, "key_id_conflict"),
            ApiError::Integrity(_) => (StatusCode::INTERNAL_SERVER_ERROR, "integrity_error"),
            ApiError::Hsm(_) => (StatusCode::SERVICE_UNAVAILABLE, "hsm_unavailable"),
            ApiError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Token(TokenError::Missing) => "an Authorization: Bearer token is required".into(),
            ApiError::Token(TokenError::Revoked) => "the access token has been revoked".into(),
            ApiError::Token(_) => "the access token is invalid or expired".into(),
            ApiError::WrongKey => "the access token is for another key".into(),
            ApiError::NotOwner => "the access token's subject does not own this key".into(),
            ApiError::NotFound => "no such key".into(),
            ApiError::ReadLimitReached => "the secret's read limit has been reached".into(),
            ApiError::Body(e) => e.to_string(),
            ApiError::InvalidKeyId => "key_id must be 1-64 characters of A-Z a-z 0-9 - _".into(),
            ApiError::InvalidEnvelope(e) => e.to_string(),
            ApiError::UnknownWrappingKey(_) => "the envelope is sealed to a key this vault does not hold".into(),
            ApiError::Conflict => "key_id already holds a different secret".into(),
            ApiError::Integrity(_) => "the stored secret failed its integrity check".into(),
            ApiError::Hsm(_) => "the key store is unavailable; retry later".into(),
            ApiError::Storage(_) => "storage is unavailable; retry later".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let chain = error_chain(&self);
        match &self {
            ApiError::Integrity(_) | ApiError::Hsm(_) | ApiError::Storage(_) => {
                tracing::error!(error = %chain, "request failed")
            }
            _ => tracing::info!(error = %chain, "request refused"),
        }
        if let ApiError::Body(e) = self {
            return e.into_response();
        }
        let (status, code) = self.status_and_code();
        match self {
            ApiError::Token(TokenError::Missing) => unauthorized(BearerChallenge::Missing, code, self.message()),
            ApiError::Token(_) => unauthorized(BearerChallenge::InvalidToken, code, self.message()),
            _ => error_response(status, code, self.message()),
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
