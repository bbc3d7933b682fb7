//! What every vault handler shares.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::opener::Opener;
use crate::storage::Store;
use crate::token::TokenVerifier;

/// Shared by all handlers of both listeners.
pub struct AppState {
    /// Checks manager's access tokens.
    pub verifier: TokenVerifier,
    /// Envelope storage.
    pub store: Arc<dyn Store>,
    /// Opens envelopes with the wrapping key in the token.
    pub opener: Opener,
    /// The token's session pool, for readiness.
    pub pool: hsm::TokenPool,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
