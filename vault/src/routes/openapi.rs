//! vault's two OpenAPI 3.1 documents (public, internal), generated from the handlers and the
//! contract's types.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{health, internal, public};

/// The public API: the secrets, revocation and health. Checked in as
/// `contract/openapi/vault-public.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "secret-store vault (public)",
        description = "Releases, destroys and revokes, each authorised by manager's access token. \
            Every error answers `{\"error\": {\"code\", \"message\"}}`; unknown paths 404 `not_found`, \
            other methods 405 `method_not_allowed`."
    ),
    paths(
        public::read_key,
        public::destroy_key,
        public::revoke_token,
        health::healthz,
        health::readyz
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "keys", description = "A secret, by the token that unlocks it"),
        (name = "tokens", description = "Access tokens"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub struct PublicApi;

/// The internal API on the mutual-TLS listener (manager's client certificate). Checked in as
/// `contract/openapi/vault-internal.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "secret-store vault (internal)",
        description = "Reached only with manager's client certificate (mutual TLS). Every error answers \
            `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(internal::store_envelope, internal::wrapping_key, internal::internal_healthz),
    tags((name = "internal", description = "manager stores envelopes and reads the wrapping key"))
)]
pub struct InternalApi;

/// `bearer`: manager's access token (a JWT) in `Authorization: Bearer …`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("The access token manager returned for the secret"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Which of vault's documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// [`PublicApi`].
    Public,
    /// [`InternalApi`].
    Internal,
}

impl Document {
    /// The document as served and checked in: pretty-printed, newline-terminated.
    pub fn render(self) -> String {
        let api = match self {
            Document::Public => PublicApi::openapi(),
            Document::Internal => InternalApi::openapi(),
        };
        let mut json = api.to_pretty_json().expect("an OpenApi value always serializes");
        json.push('\n');
        json
    }

    fn cached(self) -> &'static str {
        static PUBLIC: LazyLock<String> = LazyLock::new(|| Document::Public.render());
        static INTERNAL: LazyLock<String> = LazyLock::new(|| Document::Internal.render());
        match self {
            Document::Public => &PUBLIC,
            Document::Internal => &INTERNAL,
        }
    }
}

/// `GET /openapi.json`: no authentication, not rate limited.
pub fn router<S: Clone + Send + Sync + 'static>(document: Document) -> Router<S> {
    Router::new().route(
        "/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document.cached()).into_response() }),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Fails when `contract/openapi/<file>` differs from what the code generates; with
    /// `OPENAPI_WRITE=1` set, writes it first.
    fn check(document: Document, file: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../contract/openapi")
            .join(file);
        let generated = document.render();
        if std::env::var_os("OPENAPI_WRITE").is_some() {
            std::fs::write(&path, &generated).expect("write the document");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: regenerate with OPENAPI_WRITE=1 cargo test -p vault committed_openapi",
            path.display()
        );
    }

    /// To regenerate after changing a handler or a wire type:
    /// `OPENAPI_WRITE=1 cargo test -p vault committed_openapi`.
    #[test]
    fn committed_openapi_public_document_matches_the_code() {
        check(Document::Public, "vault-public.json");
    }

    /// As above, for the internal listener.
    #[test]
    fn committed_openapi_internal_document_matches_the_code() {
        check(Document::Internal, "vault-internal.json");
    }
}
