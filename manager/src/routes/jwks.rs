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

/// manager's public signing keys (`kid` = RFC 7638 thumbprint).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "keys",
    operation_id = "jwks",
    responses((status = 200, description = "A JWK Set (RFC 7517 §5)", body = JwkSet))
)]
pub(crate) async fn jwks(State(state): State<Arc<AppState>>) -> Json<JwkSet> {
    Json(state.issuer.jwks())
}
