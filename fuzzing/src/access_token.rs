//! Access tokens as vault reads them: the `Authorization` header, then its verifier
//! (header decode, `alg` and `kid` handling, jsonwebtoken's checks) against manager's keys.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::claims::{AccessClaims, JwsAlgorithm, READ_SCOPE};
use contract::error_code::ErrorCode;
use contract::jwk::JwkSet;
use contract::wire::ErrorBody;
use vault::access_token::{AccessTokenError, Expectations, Verifier, bearer_token};
use vault::error::ApiError;
use vault::jwks::JwksSource;

use crate::runtime::block_on;

/// `iss` the verifier requires (the example configuration's).
pub const ACCESS_TOKEN_ISSUER: &str = "https://127.0.0.1:8000";
/// `aud` the verifier requires.
pub const ACCESS_TOKEN_AUDIENCE: &str = "vault";

/// manager's public keys the seed tokens are signed with: two generations, one for RS256
/// and one for PS256 (written with the corpus by `tests/seed_corpus.rs`).
pub(crate) const MANAGER_JWKS: &str = include_str!("../fixtures/manager-jwks.json");
/// Every token ever signed with those keys, one a line; their private halves were thrown
/// away. Only these can verify.
pub(crate) const SIGNED_TOKENS: &str = include_str!("../fixtures/signed-tokens.txt");

/// What vault says to a refused token; it tells nothing about the token.
const REFUSALS: [(ErrorCode, &str); 2] = [
    (ErrorCode::InvalidToken, "the access token is invalid or expired"),
    (ErrorCode::MissingToken, "an Authorization: Bearer token is required"),
];

/// `data` is what follows `Bearer ` in the `Authorization` header. A token verifies only if
/// manager's key signed exactly it, and then its claims are the payload it carries; a
/// refusal's variant fits the header, and the 401 tells the client nothing of the token.
pub fn access_token(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(&[b"Bearer ", data].concat()) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let verifier = verifier();
    let result = bearer_token(&headers).and_then(|token| Ok((token, block_on(verifier.verify(token))?)));
    match result {
        Ok((token, claims)) => check_accepted(token, &claims),
        Err(error) => check_refused(data, error),
    }
}

fn check_accepted(token: &str, claims: &AccessClaims) {
    assert!(
        SIGNED_TOKENS.lines().any(|signed| signed == token),
        "verified a token manager's keys never signed: {token}"
    );
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        (ACCESS_TOKEN_ISSUER, ACCESS_TOKEN_AUDIENCE)
    );
    assert!(claims.scope.split(' ').any(|scope| scope == READ_SCOPE));
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok());
    let carried: AccessClaims = payload
        .and_then(|json| serde_json::from_slice(&json).ok())
        .expect("a verified token's payload is its claims");
    assert_eq!(&carried, claims);
}

fn check_refused(data: &[u8], error: AccessTokenError) {
    let header: Option<serde_json::Value> = std::str::from_utf8(data)
        .ok()
        .and_then(|token| token.trim().split('.').next())
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|json| serde_json::from_slice(&json).ok());
    let named = |member: &str| header.as_ref().and_then(|h| h.get(member)).and_then(|v| v.as_str());
    match &error {
        AccessTokenError::AlgorithmNotAccepted(alg) => {
            let name = format!("{alg:?}");
            assert!(name != "RS256" && name != "PS256", "refused accepted algorithm {name}");
        }
        AccessTokenError::UnknownKey(kid) => {
            assert_eq!(kid.as_deref(), named("kid"), "the refused kid is not the header's");
            let published = kid
                .as_ref()
                .is_some_and(|kid| manager_kids().any(|known| known == *kid));
            assert!(!published, "refused manager's own kid {kid:?}");
        }
        AccessTokenError::Scope => {
            let token = std::str::from_utf8(data).map(str::trim).unwrap_or_default();
            assert!(
                SIGNED_TOKENS.lines().any(|signed| signed == token),
                "scope judged before signature"
            );
        }
        AccessTokenError::KeysNotLoaded => panic!("keys were loaded before the first token"),
        AccessTokenError::Revoked => panic!("the verifier does not know revocations"),
        AccessTokenError::Missing
        | AccessTokenError::Unreadable
        | AccessTokenError::Malformed(_)
        | AccessTokenError::Rejected(_) => {}
    }
    let response = ApiError::AccessToken(error).into_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    let bytes = block_on(axum::body::to_bytes(response.into_body(), 64 * 1024)).expect("an error body is in memory");
    let body: ErrorBody = serde_json::from_slice(&bytes).expect("an error body in the contract's shape");
    assert!(
        REFUSALS.contains(&(body.error.code, body.error.message.as_str())),
        "the 401 says {:?}",
        body.error.message
    );
}

fn manager_kids() -> impl Iterator<Item = String> {
    let set: JwkSet = serde_json::from_str(MANAGER_JWKS).expect("the fixture JWKS parses");
    set.keys.into_iter().filter_map(|jwk| jwk.kid)
}

/// vault's verifier for manager's fixture keys, built once. The key file is read at
/// construction only: refreshes are at most daily, so unknown `kid`s never touch the disk.
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file for the fixture JWKS");
        file.write_all(MANAGER_JWKS.as_bytes())
            .expect("the fixture JWKS is written");
        let expect = Expectations {
            algorithms: vec![JwsAlgorithm::Rs256, JwsAlgorithm::Ps256],
            issuer: ACCESS_TOKEN_ISSUER.to_owned(),
            audience: ACCESS_TOKEN_AUDIENCE.to_owned(),
            leeway_seconds: 60,
        };
        let source = JwksSource::File(file.path().to_owned());
        block_on(Verifier::new(source, &expect, Duration::from_secs(24 * 3600))).expect("the fixture JWKS loads")
    })
}
