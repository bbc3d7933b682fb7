//! manager (App A): takes a user's secret, seals it for vault (JWE, content key wrapped
//! to vault's public key), has vault store it over mutual TLS, and returns a `key_id`
//! with an access token signed by manager's private key inside its PKCS#11 token.
//!
//! manager never stores secrets and cannot decrypt them. [`startup::run`] wires
//! everything from a [`Config`].

pub mod config;
pub mod error;
pub mod issuer;
pub mod key_wrap;
pub mod routes;
pub mod startup;
pub mod state;
pub mod vault_client;
pub mod vault_key;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use config::Config;
pub use state::AppState;

/// The router, with `/metrics`. `max_body_bytes` bounds request bodies (413 above);
/// `rate_limit`, if any, throttles `POST /api/keys` per client (429). `GET /openapi.json`
/// serves [`routes::openapi::ApiDoc`].
pub fn app(
    state: Arc<AppState>,
    max_body_bytes: usize,
    rate_limit: Option<Arc<service_kit::rate_limit::RateLimiter>>,
) -> Router {
    let routes = Router::new()
        .merge(service_kit::rate_limit::apply(routes::keys::router(), rate_limit))
        .merge(routes::jwks::router())
        .merge(routes::health::router())
        .merge(routes::openapi::router())
        .with_state(state);
    service_kit::metrics::instrument(routes)
        .fallback(service_kit::json::not_found)
        .method_not_allowed_fallback(service_kit::json::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
}
