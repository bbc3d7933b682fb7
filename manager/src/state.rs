//! What every manager handler shares.

use std::time::{SystemTime, UNIX_EPOCH};

use contract::envelope::KeyWrap;
use std::sync::Arc;

use crate::keyring::KeyRing;
use crate::vault_key::VaultKey;

use crate::issuer::TokenIssuer;
use crate::vault_client::VaultClient;

/// Limits applied to `POST /api/keys`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest `key_data` in bytes.
    pub max_secret_bytes: usize,
    /// `ttl_seconds` when absent.
    pub default_ttl_seconds: u64,
    /// Largest `ttl_seconds`.
    pub max_ttl_seconds: u64,
    /// Largest `max_reads`.
    pub max_reads_limit: u32,
}

/// Shared by all handlers.
pub struct AppState {
    /// Signs access tokens in the token.
    pub issuer: TokenIssuer,
    /// manager's signing keys; their public halves are served as JWKS.
    pub keys: Arc<KeyRing>,
    /// vault's public wrapping key.
    pub vault_key: VaultKey,
    /// How content keys are wrapped.
    pub key_wrap: KeyWrap,
    /// vault's internal API.
    pub vault: VaultClient,
    /// The token's session pool, for readiness.
    pub pool: hsm::TokenPool,
    /// Request limits.
    pub limits: Limits,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
