//! manager's public signing keys, for vault and any JOSE library.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use contract::jwk::JwkSet;

use crate::state::AppState;

/// `GET /.well-known/jwks.json`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

async fn jwks(State(state): State<Arc<AppState>>) -> Json<JwkSet> {
    Json(state.issuer.jwks())
}
