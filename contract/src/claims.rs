//! The access token's claims: what manager signs and vault checks.

use serde::{Deserialize, Serialize};

/// The only scope manager grants: read the one secret named in `key_id`.
pub const READ_SCOPE: &str = "secrets:read";

/// JWT claims of an access token (RFC 7519 names plus `key_id` and `scope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// manager's issuer URL.
    pub iss: String,
    /// vault's audience.
    pub aud: String,
    /// The owner's user_id.
    pub sub: String,
    /// The one secret this token unlocks.
    pub key_id: String,
    /// Unique token id (for revocation).
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Space-separated scopes.
    pub scope: String,
}
