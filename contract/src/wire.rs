//! Request and response bodies of the public and internal HTTP APIs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::error_code::ErrorCode;

/// `POST /api/keys` on manager. The bounds in the schema are the defaults of manager's
/// limits (`max_secret_bytes`, `max_ttl_seconds`, `max_reads_limit`); a deployment may
/// configure others.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreKeyRequest {
    /// Owner of the secret.
    #[schema(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._@-]+$")]
    pub user_id: String,
    /// The secret, UTF-8; wiped from memory when dropped. At most `max_secret_bytes` (default
    /// 65536) bytes, else `413 secret_too_large`: a byte limit, so not a `maxLength`.
    #[schema(value_type = String, min_length = 1)]
    pub key_data: Zeroizing<String>,
    /// Lifetime of the token (and the secret), seconds.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<u64>,
    /// Successful reads before vault destroys the secret (`1` = one-time secret);
    /// unlimited when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_reads: Option<u32>,
}

/// `201` answer of `POST /api/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoreKeyResponse {
    /// Always "Key stored successfully".
    pub message: String,
    /// Id of the stored secret.
    pub key_id: String,
    /// The JWT that unlocks it at vault.
    pub access_token: String,
    /// Always "Bearer".
    pub token_type: String,
    /// When the token expires, RFC 3339 UTC.
    pub expires_at: String,
}

/// `200` answer of `GET /api/keys/{key_id}` on vault.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReadKeyResponse<'a> {
    /// The secret.
    pub decrypted_key: &'a str,
}

/// `PUT /internal/keys/{key_id}` on vault's internal listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreEnvelopeRequest {
    /// Owner of the secret; must match the envelope's header.
    pub user_id: String,
    /// The JWE compact serialization.
    pub envelope: String,
    /// When the secret stops being served, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Successful reads before vault destroys the secret; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_reads: Option<u32>,
}

/// Answer of `PUT /internal/keys/{key_id}`: `201` created, `200` already stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoreEnvelopeResponse {
    /// Id of the stored secret.
    pub key_id: String,
    /// False when an identical envelope was already stored (idempotent retry).
    pub created: bool,
}

/// The JSON error body every endpoint answers with.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Machine code and human message of an error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_token`.
    pub code: ErrorCode,
    /// Human-readable explanation; never contains secrets.
    pub message: String,
}

/// `200` answer of `POST /api/tokens/revoke` on vault (also for a repeated call).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokeResponse {
    /// The revoked token's id.
    pub jti: String,
    /// Always true: the token is revoked now, whether by this call or an earlier one.
    pub revoked: bool,
}

/// `200` answer of `DELETE /api/keys/{key_id}` on vault (also for a repeated call).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DestroyResponse {
    /// The destroyed secret's id.
    pub key_id: String,
    /// Always true: the secret is gone now, whether by this call or an earlier one.
    pub destroyed: bool,
}

/// `200` answer of the health endpoints: `ok` (`/healthz`) or `ready` (`/readyz`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` or `ready`.
    #[schema(examples("ok", "ready"))]
    pub status: String,
}
