//! manager's errors and their one mapping to HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contract::envelope::EnvelopeError;
use contract::error_code::ErrorCode;
use contract::share::RandomFailed;
use service_kit::json::{JsonBodyError, error_response};
use service_kit::report::error_chain;

use crate::vault_client::VaultError;

/// Everything a manager request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request body was refused.
    #[error(transparent)]
    Body(#[from] JsonBodyError),
    /// `user_id` is empty, too long or has characters outside the allowed set.
    #[error("invalid user_id")]
    InvalidUserId,
    /// `key_data` is empty.
    #[error("empty key_data")]
    EmptySecret,
    /// `key_data` exceeds the configured limit.
    #[error("key_data of {size} bytes exceeds the {limit}-byte limit")]
    SecretTooLarge {
        /// Bytes received.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// `ttl_seconds` is 0 or above the maximum.
    #[error("ttl_seconds must be between 1 and {max}")]
    InvalidTtl {
        /// Configured maximum.
        max: u64,
    },
    /// `max_reads` is 0 or above the maximum.
    #[error("max_reads must be between 1 and {max}")]
    InvalidMaxReads {
        /// Configured maximum.
        max: u32,
    },
    /// vault did not store the envelope because it could not be reached or is down.
    #[error("vault unavailable")]
    VaultUnavailable(#[source] VaultError),
    /// vault refused the envelope: the two services disagree (keys, versions).
    #[error("vault refused the envelope")]
    VaultRejected(#[source] VaultError),
    /// The token (HSM) is unavailable.
    #[error("token unavailable")]
    Hsm(#[from] hsm::Error),
    /// Sealing failed in the crypto library.
    #[error("sealing failed")]
    Seal(#[from] EnvelopeError),
    /// The system RNG could not draw the holder's share.
    #[error("drawing the holder's share")]
    Share(#[from] RandomFailed),
}

impl From<VaultError> for ApiError {
    fn from(error: VaultError) -> Self {
        match error {
            VaultError::Unreachable(_) | VaultError::Unavailable(_) => ApiError::VaultUnavailable(error),
            VaultError::Rejected { .. } | VaultError::BadKey(_) => ApiError::VaultRejected(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let chain = error_chain(&self);
        match &self {
            ApiError::VaultUnavailable(_)
            | ApiError::VaultRejected(_)
            | ApiError::Hsm(_)
            | ApiError::Seal(_)
            | ApiError::Share(_) => {
                tracing::error!(error = %chain, "request failed")
            }
            _ => tracing::info!(error = %chain, "request refused"),
        }
        match self {
            ApiError::Body(e) => e.into_response(),
            ApiError::InvalidUserId => error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidUserId,
                "user_id must be 1-128 characters of A-Z a-z 0-9 . _ @ -",
            ),
            ApiError::EmptySecret => error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidKeyData,
                "key_data must not be empty",
            ),
            e @ ApiError::SecretTooLarge { .. } => {
                error_response(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::SecretTooLarge, e.to_string())
            }
            e @ ApiError::InvalidTtl { .. } => {
                error_response(StatusCode::BAD_REQUEST, ErrorCode::InvalidTtl, e.to_string())
            }
            e @ ApiError::InvalidMaxReads { .. } => {
                error_response(StatusCode::BAD_REQUEST, ErrorCode::InvalidMaxReads, e.to_string())
            }
            ApiError::VaultUnavailable(_) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::VaultUnavailable,
                "vault is unavailable; nothing was stored, retry later",
            ),
            ApiError::VaultRejected(_) => error_response(
                StatusCode::BAD_GATEWAY,
                ErrorCode::VaultRejected,
                "vault refused to store the secret; nothing was stored",
            ),
            ApiError::Hsm(_) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::HsmUnavailable,
                "the key store is unavailable; retry later",
            ),
            ApiError::Seal(_) | ApiError::Share(_) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalError,
                "the secret could not be sealed",
            ),
        }
    }
}
