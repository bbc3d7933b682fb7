//! What every vault handler shares.

use crate::access_token::Verifier;
use crate::opener::Opener;
use crate::storage::Store;

/// Shared by all handlers of both listeners.
pub struct AppState {
    /// Checks manager's access tokens.
    pub verifier: Verifier,
    /// Envelopes, revocations and the audit trail.
    pub store: Store,
    /// Opens envelopes with the wrapping keys in the token (whose pool readiness probes).
    pub opener: Opener,
}
