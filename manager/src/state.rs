//! What every manager handler shares.

use crate::key_wrap::KeyWrapChoice;

use crate::issuer::Issuer;
use crate::vault_client::VaultClient;
use crate::vault_key::VaultKey;

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
    /// Signs access tokens in the token, with the signing keys whose public halves are
    /// served as JWKS (and whose pool readiness probes).
    pub issuer: Issuer,
    /// vault's public wrapping key.
    pub vault_key: VaultKey,
    /// How content keys are wrapped.
    pub key_wrap: KeyWrapChoice,
    /// vault's internal API.
    pub vault: VaultClient,
    /// Request limits.
    pub limits: Limits,
}
