//! Access-token verification: configured algorithms only, manager's keys by `kid`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use contract::claims::{AccessClaims, JwsAlgorithm, READ_SCOPE};
use contract::jwk::RsaPublicKey;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

use crate::jwks::{JwksError, JwksSource};

/// Why an access token was refused. Every variant but [`AccessTokenError::KeysNotLoaded`]
/// is a 401; the variant is logged, the client only learns that the token is invalid (or
/// missing, or revoked).
#[derive(Debug, thiserror::Error)]
pub enum AccessTokenError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// An `Authorization` header that is not visible ASCII.
    #[error("unreadable Authorization header")]
    Unreadable,
    /// The header could not be parsed (includes `alg: none`, which no key type accepts).
    /// Says what kind of problem, never the parser's text, which quotes the header's values.
    #[error("malformed token header: {0}")]
    Malformed(&'static str),
    /// `alg` is not one of the configured algorithms.
    #[error("algorithm {0:?} is not accepted")]
    AlgorithmNotAccepted(Algorithm),
    /// No `kid`, or a `kid` manager has not published. Shown only when it has the form of
    /// the kids manager publishes (RFC 7638 thumbprints): anything else is request text
    /// that does not belong in a log line.
    #[error("unknown signing key {}", shown_kid(.0.as_deref()))]
    UnknownKey(Option<String>),
    /// Bad signature, expired, not yet valid, wrong `iss`/`aud`, missing claims.
    #[error("token rejected")]
    Rejected(#[source] jsonwebtoken::errors::Error),
    /// The token's `jti` was revoked.
    #[error("token revoked")]
    Revoked,
    /// The token does not grant reading secrets.
    #[error("token lacks the {READ_SCOPE} scope")]
    Scope,
    /// No key of manager's has been loaded yet, so the token cannot be judged either way: a
    /// 503, never a 401 that would tell the holder to throw a working token away.
    #[error("manager's signing keys are not loaded yet")]
    KeysNotLoaded,
}

/// What is wrong with an unparsable token header, in words of our own: jsonwebtoken's and
/// serde's messages quote the offending value.
fn header_problem(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidToken => "not three base64url parts",
        ErrorKind::Base64(_) => "not base64url",
        ErrorKind::Utf8(_) => "not UTF-8",
        ErrorKind::Json(json) => match json.classify() {
            serde_json::error::Category::Data => "a member has the wrong type or an unknown value",
            _ => "not a JSON object",
        },
        ErrorKind::InvalidAlgorithmName => "unknown algorithm",
        _ => "unreadable",
    }
}

/// A `kid` for a log line: itself if it has the form of an RFC 7638 SHA-256 thumbprint
/// (43 base64url characters), otherwise only its length.
fn shown_kid(kid: Option<&str>) -> String {
    match kid {
        None => "(none)".to_owned(),
        Some(kid) if kid.len() == 43 && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
            format!("{kid:?}")
        }
        Some(kid) => format!("(not a key thumbprint, {} bytes)", kid.len()),
    }
}

/// Why the verifier could not be built from configuration.
#[derive(Debug, thiserror::Error)]
pub enum VerifierSetupError {
    /// The JWKS file could not be read or parsed.
    #[error("cannot load manager's JWKS from {location}")]
    Jwks {
        /// File or URL.
        location: String,
        /// What went wrong.
        #[source]
        source: JwksError,
    },
    /// No algorithm is accepted: every token would be refused.
    #[error("no token algorithm is accepted")]
    NoAlgorithm,
    /// A key in the set is unusable.
    #[error("manager key {kid:?}")]
    Key {
        /// The key's kid.
        kid: String,
        /// Why.
        #[source]
        source: contract::jwk::KeyError,
    },
}

/// Why a refresh failed; the previous keys stay in use.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The set could not be fetched or parsed.
    #[error("fetching manager's JWKS")]
    Fetch(#[source] JwksError),
    /// A key in the set is unusable.
    #[error("manager key {kid:?}")]
    Key {
        /// The key's kid.
        kid: String,
        /// Why.
        #[source]
        source: contract::jwk::KeyError,
    },
}

/// Verifies manager's access tokens against manager's published keys, which it
/// re-fetches periodically and when a token names an unknown `kid` — at most once per
/// `min_refresh`, so forged `kid`s cannot make vault hammer manager. No lock is held while
/// a fetch runs (up to the client's 10 s timeout): requests with unknown `kid`s during it
/// are answered at once instead of queueing behind it.
pub struct Verifier {
    source: JwksSource,
    keys: RwLock<HashMap<String, DecodingKey>>,
    validation: Validation,
    min_refresh: Duration,
    last_fetch: std::sync::Mutex<Option<Instant>>,
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Accepted `alg` values.
    pub algorithms: Vec<JwsAlgorithm>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Tolerated clock skew, seconds.
    pub leeway_seconds: u64,
}

impl Verifier {
    /// A verifier with keys from `source`. A file must be readable now; a URL that does
    /// not answer yet is retried on the refresh schedule (tokens get 503 meanwhile).
    pub async fn new(
        source: JwksSource,
        expect: &Expectations,
        min_refresh: Duration,
    ) -> Result<Self, VerifierSetupError> {
        let algorithms: Vec<Algorithm> = expect
            .algorithms
            .iter()
            .map(|algorithm| match algorithm {
                JwsAlgorithm::Rs256 => Algorithm::RS256,
                JwsAlgorithm::Ps256 => Algorithm::PS256,
            })
            .collect();
        let first = *algorithms.first().ok_or(VerifierSetupError::NoAlgorithm)?;
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.set_issuer(&[&expect.issuer]);
        validation.set_audience(&[&expect.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = expect.leeway_seconds;
        let verifier = Self {
            source,
            keys: RwLock::new(HashMap::new()),
            validation,
            min_refresh,
            last_fetch: std::sync::Mutex::new(None),
        };
        match verifier.refresh().await {
            Ok(_) => {}
            Err(RefreshError::Fetch(e)) if matches!(verifier.source, JwksSource::Url { .. }) => {
                tracing::warn!(source = %verifier.source.describe(), error = %service_kit::report::error_chain(&e), "manager's JWKS not reachable yet; will retry");
            }
            Err(RefreshError::Fetch(e)) => {
                return Err(VerifierSetupError::Jwks {
                    location: verifier.source.describe(),
                    source: e,
                });
            }
            Err(RefreshError::Key { kid, source }) => return Err(VerifierSetupError::Key { kid, source }),
        }
        Ok(verifier)
    }

    /// Fetches the key set and replaces the keys; on failure the old keys stay.
    pub async fn refresh(&self) -> Result<usize, RefreshError> {
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, RefreshError> {
        let set = self.source.fetch().await.map_err(RefreshError::Fetch)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.kid.clone().unwrap_or_default();
            let key = RsaPublicKey::from_jwk(jwk).map_err(|source| RefreshError::Key {
                kid: kid.clone(),
                source,
            })?;
            let decoding = DecodingKey::from_rsa_components(&jwk.n, &jwk.e).map_err(|_| RefreshError::Key {
                kid: kid.clone(),
                source: contract::jwk::KeyError::Invalid,
            })?;
            keys.insert(key.thumbprint(), decoding);
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(count)
    }

    /// Whether any key is loaded (readiness).
    pub fn has_keys(&self) -> bool {
        !self.keys.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Refreshes unless the last fetch began less than `min_refresh` ago (one second while
    /// no key has loaded yet); true if it fetched. The start of a fetch is claimed under
    /// the lock, the fetch itself runs without it.
    async fn refresh_rate_limited(&self) -> bool {
        let floor = if self.has_keys() {
            self.min_refresh
        } else {
            self.min_refresh.min(Duration::from_secs(1))
        };
        {
            let mut last = self.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < floor) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %service_kit::report::error_chain(&e), "JWKS refresh failed");
                false
            }
        }
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).get(kid).cloned()
    }

    /// Checks signature, algorithm, `kid`, `iss`, `aud`, `exp`, `nbf` and scope.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, AccessTokenError> {
        let header = decode_header(token).map_err(|e| AccessTokenError::Malformed(header_problem(&e)))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AccessTokenError::AlgorithmNotAccepted(header.alg));
        }
        let kid = header.kid.as_deref().ok_or(AccessTokenError::UnknownKey(None))?;
        let key = match self.key(kid) {
            Some(key) => Some(key),
            // A kid we have not seen may be a fresh rotation: look again, rate-limited.
            None if self.refresh_rate_limited().await => self.key(kid),
            None => None,
        };
        let key = match key {
            Some(key) => key,
            None if !self.has_keys() => return Err(AccessTokenError::KeysNotLoaded),
            None => return Err(AccessTokenError::UnknownKey(Some(kid.to_owned()))),
        };
        let claims = decode::<AccessClaims>(token, &key, &self.validation)
            .map_err(AccessTokenError::Rejected)?
            .claims;
        if !claims.scope.split(' ').any(|s| s == READ_SCOPE) {
            return Err(AccessTokenError::Scope);
        }
        Ok(claims)
    }
}

/// The access token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AccessTokenError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AccessTokenError::Missing)?
        .to_str()
        .map_err(|_| AccessTokenError::Unreadable)?;
    let (scheme, token) = value.split_once(' ').ok_or(AccessTokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AccessTokenError::Missing);
    }
    Ok(token.trim())
}

#[cfg(test)]
mod log_text_tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn token_with_header(header: &str) -> String {
        format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(header))
    }

    /// A card number in the header must not reach the log through the parser's message.
    #[test]
    fn a_malformed_header_is_described_without_its_values() {
        for header in [
            r#"{"alg":"RS256","kid":4111111111111111}"#,
            r#"{"alg":"4111111111111111"}"#,
            "4111111111111111",
        ] {
            let error = decode_header(token_with_header(header)).expect_err("malformed");
            let text = AccessTokenError::Malformed(header_problem(&error)).to_string();
            assert!(!text.contains("4111"), "{header}: {text}");
            assert!(text.starts_with("malformed token header: "), "{text}");
        }
    }

    #[test]
    fn only_a_kid_shaped_like_a_thumbprint_is_shown() {
        let thumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
        let shown = AccessTokenError::UnknownKey(Some(thumbprint.to_owned())).to_string();
        assert!(shown.contains(thumbprint), "{shown}");
        let hidden = AccessTokenError::UnknownKey(Some("4111111111111111".to_owned())).to_string();
        assert_eq!(hidden, "unknown signing key (not a key thumbprint, 16 bytes)");
        assert_eq!(
            AccessTokenError::UnknownKey(None).to_string(),
            "unknown signing key (none)"
        );
    }
}
