//! vault (App B): stores JWE envelopes sealed by manager and releases a secret's
//! plaintext only to the holder of a valid access token from manager. Its RSA wrapping
//! key lives in a PKCS#11 token; the content key is unwrapped there.
//!
//! Two listeners: the public API (`GET`/`DELETE /api/keys/{key_id}`,
//! `POST /api/tokens/revoke`) and an internal mutual-TLS API that only manager's client
//! certificate reaches (`PUT /internal/keys/{key_id}`). [`startup::run`] wires everything
//! from a [`Config`]; `vault-admin` uses [`storage`], [`audit`], [`checkpoint`] and
//! [`rewrap`] directly. In the background, [`checkpoint::signer`] signs the audit chain's
//! head with a sign-only key in the token.
//!
//! Layers, each using only those below it: `routes` → `error` (the one mapping to HTTP) →
//! `access_token` + `jwks`, `opener` + `rewrap`, `checkpoint`, `storage` → `audit`.

pub mod access_token;
pub mod audit;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod jwks;
pub mod opener;
pub mod rewrap;
pub mod routes;
pub mod startup;
pub mod state;
pub mod storage;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use config::Config;
pub use state::AppState;

/// The public router: secrets API, health and `/metrics`; `rate_limit`, if any, throttles
/// the secrets API per client (429). `GET /openapi.json` serves
/// [`routes::openapi::PublicApi`].
pub fn public_app(state: Arc<AppState>, rate_limit: Option<Arc<service_kit::rate_limit::RateLimiter>>) -> Router {
    let routes = Router::new()
        .merge(service_kit::rate_limit::apply(
            routes::public::router(state.clone()),
            rate_limit,
        ))
        .merge(routes::health::router())
        .merge(routes::openapi::router(routes::openapi::Document::Public))
        .with_state(state);
    service_kit::metrics::instrument(routes)
        .fallback(service_kit::json::not_found)
        .method_not_allowed_fallback(service_kit::json::method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
}

/// The internal router, served only behind mutual TLS; `GET /openapi.json` serves
/// [`routes::openapi::InternalApi`].
pub fn internal_app(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(routes::internal::router())
        .merge(routes::openapi::router(routes::openapi::Document::Internal))
        .fallback(service_kit::json::not_found)
        .method_not_allowed_fallback(service_kit::json::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
