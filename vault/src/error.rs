//! vault's errors and their one mapping to HTTP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contract::error_code::ErrorCode;
use service_kit::json::{BearerChallenge, JsonBodyError, error_response, unauthorized};
use service_kit::report::error_chain;

use crate::access_token::AccessTokenError;
use crate::opener::{IncomingError, OpenError};
use crate::storage::StoreError;

/// `Retry-After` while manager's keys are not loaded: vault looks again at most once a
/// second until they are.
const KEYS_NOT_LOADED_RETRY_SECONDS: u64 = 1;

/// Everything a vault request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, invalid or revoked access token.
    #[error("access token refused")]
    AccessToken(#[from] AccessTokenError),
    /// A valid access token, but for another secret.
    #[error("access token is for another key")]
    WrongKey,
    /// A valid access token for this key_id, but another owner holds it.
    #[error("access token subject does not own the key")]
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
    #[error("envelope refused")]
    Incoming(#[from] IncomingError),
    /// Another secret already has this key_id.
    #[error("key_id already holds a different secret")]
    Conflict,
    /// A stored envelope did not open: swapped, edited or corrupted at rest, or the token
    /// is down.
    #[error("stored envelope did not open")]
    Open(#[from] OpenError),
    /// A stored envelope opened to bytes that are not UTF-8: manager seals strings, so the
    /// row is not what manager stored.
    #[error("the opened secret is not UTF-8")]
    NotText,
    /// The answer could not be serialised.
    #[error("cannot serialise the answer")]
    Serialize(#[source] serde_json::Error),
    /// The database (or the audit trail in it) is unavailable: fail closed.
    #[error("storage unavailable")]
    Storage(#[from] StoreError),
}

impl ApiError {
    /// Status and machine code; the code is also the audit outcome of a denial.
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::AccessToken(AccessTokenError::Missing) => (StatusCode::UNAUTHORIZED, ErrorCode::MissingToken),
            ApiError::AccessToken(AccessTokenError::Revoked) => (StatusCode::UNAUTHORIZED, ErrorCode::RevokedToken),
            ApiError::AccessToken(AccessTokenError::KeysNotLoaded) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::JwksUnavailable)
            }
            ApiError::AccessToken(_) => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken),
            ApiError::WrongKey | ApiError::NotOwner | ApiError::Open(OpenError::ShareMismatch) => {
                (StatusCode::FORBIDDEN, ErrorCode::TokenNotValidForKey)
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::KeyNotFound),
            ApiError::ReadLimitReached => (StatusCode::GONE, ErrorCode::ReadLimitReached),
            ApiError::Body(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            ApiError::InvalidKeyId => (StatusCode::BAD_REQUEST, ErrorCode::InvalidKeyId),
            ApiError::Incoming(
                IncomingError::Invalid(_) | IncomingError::Version1 | IncomingError::UnsupportedKeyWrap(_),
            ) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidEnvelope),
            ApiError::Incoming(IncomingError::UnknownKey(_)) => {
                (StatusCode::BAD_REQUEST, ErrorCode::UnknownWrappingKey)
            }
            ApiError::Conflict => (StatusCode::CONFLICT, ErrorCode::KeyIdConflict),
            ApiError::Open(OpenError::Token(_)) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::HsmUnavailable),
            ApiError::Open(OpenError::Envelope(_) | OpenError::UnknownKey(_) | OpenError::ContentKey(_))
            | ApiError::NotText => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::IntegrityError),
            ApiError::Serialize(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
            ApiError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StorageUnavailable),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::AccessToken(AccessTokenError::Missing) => "an Authorization: Bearer token is required".into(),
            ApiError::AccessToken(AccessTokenError::Revoked) => "the access token has been revoked".into(),
            ApiError::AccessToken(AccessTokenError::KeysNotLoaded) => {
                "vault has not loaded manager's signing keys yet and cannot judge the token; retry later".into()
            }
            ApiError::AccessToken(_) => "the access token is invalid or expired".into(),
            ApiError::WrongKey => "the access token is for another key".into(),
            ApiError::NotOwner => "the access token's subject does not own this key".into(),
            ApiError::NotFound => "no such key".into(),
            ApiError::ReadLimitReached => "the secret's read limit has been reached".into(),
            ApiError::Body(e) => e.to_string(),
            ApiError::InvalidKeyId => "key_id must be 1-64 characters of A-Z a-z 0-9 - _".into(),
            ApiError::Incoming(IncomingError::Invalid(e)) => e.to_string(),
            ApiError::Incoming(e @ (IncomingError::Version1 | IncomingError::UnsupportedKeyWrap(_))) => e.to_string(),
            ApiError::Incoming(IncomingError::UnknownKey(_)) => {
                "the envelope is sealed to a key this vault does not hold".into()
            }
            ApiError::Conflict => "key_id already holds a different secret".into(),
            ApiError::Open(OpenError::Token(_)) => "the key store is unavailable; retry later".into(),
            ApiError::Open(OpenError::ShareMismatch) => "the access token does not carry this secret's share".into(),
            ApiError::Open(_) | ApiError::NotText => "the stored secret failed its integrity check".into(),
            ApiError::Serialize(_) => "the answer could not be written".into(),
            ApiError::Storage(_) => "storage is unavailable; retry later".into(),
        }
    }
}

/// Marks a response as a refusal, for the middleware that audits denials (it knows the
/// route, the key and the client; the error knows why and whether the caller was
/// authenticated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub code: ErrorCode,
    /// Whether the refusal goes on the audit trail: only once the caller has shown a token
    /// manager signed. Refusals before that (no token, a bad one, a malformed key_id, keys
    /// not loaded) are counted in the metrics instead, so that anyone on the network
    /// cannot make vault write durable rows.
    pub audited: bool,
}

impl ApiError {
    /// Whether the caller had shown a token manager signed when this refused it.
    fn after_authentication(&self) -> bool {
        match self {
            // A revoked token carries manager's signature: its holder is known.
            ApiError::AccessToken(AccessTokenError::Revoked) => true,
            ApiError::AccessToken(_) | ApiError::InvalidKeyId => false,
            // Internal-API errors come after mutual TLS with manager's certificate.
            _ => true,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let chain = error_chain(&self);
        let (status, code) = self.status_and_code();
        let audited = self.after_authentication();
        if status.is_server_error() {
            tracing::error!(error = %chain, "request failed");
        } else {
            tracing::info!(error = %chain, "request refused");
        }
        let mut response = match self {
            ApiError::Body(e) => e.into_response(),
            ApiError::AccessToken(AccessTokenError::Missing) => {
                unauthorized(BearerChallenge::Missing, code, self.message())
            }
            ApiError::AccessToken(AccessTokenError::KeysNotLoaded) => {
                let mut response = error_response(status, code, self.message());
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(KEYS_NOT_LOADED_RETRY_SECONDS));
                response
            }
            ApiError::AccessToken(_) => unauthorized(BearerChallenge::InvalidToken, code, self.message()),
            _ => error_response(status, code, self.message()),
        };
        response.extensions_mut().insert(Refused { code, audited });
        response
            .extensions_mut()
            .insert(service_kit::metrics::Refusal(code.as_str()));
        response
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
