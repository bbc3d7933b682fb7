//! manager's OpenAPI 3.1 document, generated from the handlers and the contract's types.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;

use super::{health, jwks, keys};

/// The document: `POST /api/keys`, the JWKS and health. Checked in as
/// `contract/openapi/manager.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "secret-store manager",
        description = "Seals a secret for vault, has vault store it and returns an access token. \
            Every error answers `{\"error\": {\"code\", \"message\"}}`; unknown paths 404 `not_found`, \
            other methods 405 `method_not_allowed`."
    ),
    paths(keys::store_key, jwks::jwks, health::healthz, health::readyz),
    tags(
        (name = "keys", description = "Storing secrets and verifying manager's tokens"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub struct ApiDoc;

/// The document as served and checked in: pretty-printed, newline-terminated.
pub fn document() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("an OpenApi value always serializes");
    json.push('\n');
    json
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document);

/// `GET /openapi.json`: no authentication, not rate limited.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        "/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response() }),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Fails when `contract/openapi/manager.json` differs from what the code generates.
    /// To regenerate after changing a handler or a wire type:
    /// `OPENAPI_WRITE=1 cargo test -p manager committed_openapi_document`.
    #[test]
    fn committed_openapi_document_matches_the_code() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contract/openapi/manager.json");
        let generated = document();
        if std::env::var_os("OPENAPI_WRITE").is_some() {
            std::fs::write(&path, &generated).expect("write the document");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: regenerate with OPENAPI_WRITE=1 cargo test -p manager committed_openapi_document",
            path.display()
        );
    }
}
