//! The machine codes of the JSON error body (`{"error": {"code", "message"}}`): every code
//! either service answers with, written once.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A machine-readable error code. Clients match on these; the strings are the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body is not JSON (400).
    InvalidJson,
    /// JSON of the wrong shape: a missing, mistyped or unknown field (400).
    InvalidRequest,
    /// `Content-Type` is not `application/json` (415).
    UnsupportedMediaType,
    /// The body exceeds the endpoint's limit (413).
    PayloadTooLarge,
    /// No such endpoint (404).
    NotFound,
    /// The endpoint exists, the method does not (405).
    MethodNotAllowed,
    /// The client's request rate is over the limit (429).
    RateLimited,
    /// `user_id` is empty, too long or outside its alphabet (400).
    InvalidUserId,
    /// `key_data` is empty (400).
    InvalidKeyData,
    /// `key_data` exceeds `max_secret_bytes` (413).
    SecretTooLarge,
    /// `ttl_seconds` is out of range (400).
    InvalidTtl,
    /// `max_reads` is out of range (400).
    InvalidMaxReads,
    /// No `Authorization: Bearer` access token (401).
    MissingToken,
    /// The access token is invalid or expired (401).
    InvalidToken,
    /// The access token was revoked (401).
    RevokedToken,
    /// A valid access token, but not for this secret (403).
    TokenNotValidForKey,
    /// No such secret, or it expired or was destroyed (404).
    KeyNotFound,
    /// The secret's read limit was reached (410).
    ReadLimitReached,
    /// A `key_id` outside its alphabet or length (400).
    InvalidKeyId,
    /// An envelope vault cannot or must not accept (400).
    InvalidEnvelope,
    /// An envelope sealed to a key vault does not hold (400).
    UnknownWrappingKey,
    /// The `key_id` already holds a different secret (409).
    KeyIdConflict,
    /// A stored envelope failed its integrity check (500).
    IntegrityError,
    /// An error of our own making (500).
    InternalError,
    /// vault refused manager's envelope (502).
    VaultRejected,
    /// The PKCS#11 token (HSM) is unavailable (503).
    HsmUnavailable,
    /// The database is unavailable (503).
    StorageUnavailable,
    /// vault has not loaded manager's signing keys yet (503).
    JwksUnavailable,
    /// vault is unreachable or unavailable (503).
    VaultUnavailable,
    /// A code this build does not know (a newer peer's): read, never written.
    Unknown,
}

impl ErrorCode {
    /// Every code this build writes.
    pub const ALL: [ErrorCode; 29] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::InvalidUserId,
        ErrorCode::InvalidKeyData,
        ErrorCode::SecretTooLarge,
        ErrorCode::InvalidTtl,
        ErrorCode::InvalidMaxReads,
        ErrorCode::MissingToken,
        ErrorCode::InvalidToken,
        ErrorCode::RevokedToken,
        ErrorCode::TokenNotValidForKey,
        ErrorCode::KeyNotFound,
        ErrorCode::ReadLimitReached,
        ErrorCode::InvalidKeyId,
        ErrorCode::InvalidEnvelope,
        ErrorCode::UnknownWrappingKey,
        ErrorCode::KeyIdConflict,
        ErrorCode::IntegrityError,
        ErrorCode::InternalError,
        ErrorCode::VaultRejected,
        ErrorCode::HsmUnavailable,
        ErrorCode::StorageUnavailable,
        ErrorCode::JwksUnavailable,
        ErrorCode::VaultUnavailable,
    ];

    /// The code as it appears on the wire (and as an audit outcome).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidUserId => "invalid_user_id",
            ErrorCode::InvalidKeyData => "invalid_key_data",
            ErrorCode::SecretTooLarge => "secret_too_large",
            ErrorCode::InvalidTtl => "invalid_ttl",
            ErrorCode::InvalidMaxReads => "invalid_max_reads",
            ErrorCode::MissingToken => "missing_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::RevokedToken => "revoked_token",
            ErrorCode::TokenNotValidForKey => "token_not_valid_for_key",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::ReadLimitReached => "read_limit_reached",
            ErrorCode::InvalidKeyId => "invalid_key_id",
            ErrorCode::InvalidEnvelope => "invalid_envelope",
            ErrorCode::UnknownWrappingKey => "unknown_wrapping_key",
            ErrorCode::KeyIdConflict => "key_id_conflict",
            ErrorCode::IntegrityError => "integrity_error",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::VaultRejected => "vault_rejected",
            ErrorCode::HsmUnavailable => "hsm_unavailable",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::JwksUnavailable => "jwks_unavailable",
            ErrorCode::VaultUnavailable => "vault_unavailable",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The code for a wire string; [`ErrorCode::Unknown`] for one this build does not know.
    pub fn from_wire(code: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or(ErrorCode::Unknown)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Ok(Self::from_wire(&code))
    }
}

/// Written by hand from [`ErrorCode::ALL`] because the wire strings are (`Unknown` is read,
/// never written, so it is not part of the schema).
impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("Stable machine-readable code; clients match on it."))
            .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire strings are the contract clients match on: a renamed variant must not
    /// change one silently.
    #[test]
    fn every_code_has_its_documented_wire_string_and_reads_back() {
        let wire: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            wire,
            [
                "invalid_json",
                "invalid_request",
                "unsupported_media_type",
                "payload_too_large",
                "not_found",
                "method_not_allowed",
                "rate_limited",
                "invalid_user_id",
                "invalid_key_data",
                "secret_too_large",
                "invalid_ttl",
                "invalid_max_reads",
                "missing_token",
                "invalid_token",
                "revoked_token",
                "token_not_valid_for_key",
                "key_not_found",
                "read_limit_reached",
                "invalid_key_id",
                "invalid_envelope",
                "unknown_wrapping_key",
                "key_id_conflict",
                "integrity_error",
                "internal_error",
                "vault_rejected",
                "hsm_unavailable",
                "storage_unavailable",
                "jwks_unavailable",
                "vault_unavailable",
            ]
        );
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).expect("parses"), code);
        }
    }

    #[test]
    fn a_code_from_a_newer_peer_reads_as_unknown() {
        assert_eq!(
            serde_json::from_str::<ErrorCode>("\"quota_exceeded\"").expect("parses"),
            ErrorCode::Unknown
        );
    }
}
