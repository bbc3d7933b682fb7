//! Access-token verification: configured algorithms only, manager's keys by `kid`.

use std::collections::HashMap;
use std::path::Path;

use contract::claims::{AccessClaims, READ_SCOPE};
use contract::jwk::{Jwk, JwkSet, RsaPublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

/// Why a token was refused. Every variant is a 401; the variant is logged, the client
/// only learns that the token is invalid.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// An `Authorization` header that is not visible ASCII.
    #[error("unreadable Authorization header")]
    Unreadable,
    /// The header could not be parsed (includes `alg: none`, which no key type accepts).
    #[error("malformed token header")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// `alg` is not one of the configured algorithms.
    #[error("algorithm {0:?} is not accepted")]
    AlgorithmNotAccepted(Algorithm),
    /// No `kid`, or a `kid` manager has not published.
    #[error("unknown signing key {0:?}")]
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
}

/// Why the verifier could not be built from configuration.
#[derive(Debug, thiserror::Error)]
pub enum VerifierSetupError {
    /// The JWKS file could not be read or parsed.
    #[error("cannot read manager's JWKS from {path}: {reason}")]
    Jwks {
        /// File path.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An algorithm name that is not RS256 or PS256.
    #[error("unsupported token algorithm {0:?} (supported: RS256, PS256)")]
    Algorithm(String),
    /// A key in the set is unusable.
    #[error("manager key {kid:?}: {source}")]
    Key {
        /// The key's kid.
        kid: String,
        /// Why.
        #[source]
        source: contract::jwk::KeyError,
    },
}

/// Verifies manager's access tokens.
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Accepted `alg` values.
    pub algorithms: Vec<String>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Tolerated clock skew, seconds.
    pub leeway_seconds: u64,
}

impl TokenVerifier {
    /// Reads manager's keys from a JWK or JWK Set file.
    pub fn from_file(path: &Path, expect: &Expectations) -> Result<Self, VerifierSetupError> {
        let fail = |reason: String| VerifierSetupError::Jwks {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let set = match serde_json::from_str::<JwkSet>(&text) {
            Ok(set) => set,
            Err(_) => JwkSet {
                keys: vec![serde_json::from_str::<Jwk>(&text).map_err(|e| fail(e.to_string()))?],
            },
        };
        Self::new(&set, expect)
    }

    /// Builds a verifier for the keys in `set`, keyed by their RFC 7638 thumbprint.
    pub fn new(set: &JwkSet, expect: &Expectations) -> Result<Self, VerifierSetupError> {
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.kid.clone().unwrap_or_default();
            let key = RsaPublicKey::from_jwk(jwk).map_err(|source| VerifierSetupError::Key {
                kid: kid.clone(),
                source,
            })?;
            let decoding = DecodingKey::from_rsa_components(&jwk.n, &jwk.e).map_err(|_| VerifierSetupError::Key {
                kid: kid.clone(),
                source: contract::jwk::KeyError::Invalid,
            })?;
            keys.insert(key.thumbprint(), decoding);
        }
        let algorithms = expect
            .algorithms
            .iter()
            .map(|name| match name.trim() {
                "RS256" => Ok(Algorithm::RS256),
                "PS256" => Ok(Algorithm::PS256),
                other => Err(VerifierSetupError::Algorithm(other.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = *algorithms
            .first()
            .ok_or_else(|| VerifierSetupError::Algorithm(String::new()))?;
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.set_issuer(&[&expect.issuer]);
        validation.set_audience(&[&expect.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = expect.leeway_seconds;
        Ok(Self { keys, validation })
    }

    /// Checks signature, algorithm, `kid`, `iss`, `aud`, `exp`, `nbf` and scope.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = decode_header(token).map_err(TokenError::Malformed)?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAccepted(header.alg));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
        let claims = decode::<AccessClaims>(token, key, &self.validation)
            .map_err(TokenError::Rejected)?
            .claims;
        if !claims.scope.split(' ').any(|s| s == READ_SCOPE) {
            return Err(TokenError::Scope);
        }
        Ok(claims)
    }
}
