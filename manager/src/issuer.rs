//! Access tokens: the JWS signing input is built here and signed inside the token
//! (jsonwebtoken has no external-signer entry point, Keats/jsonwebtoken#325).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::claims::{AccessClaims, READ_SCOPE};
use serde_json::json;

use std::sync::Arc;

use crate::keyring::KeyRing;

/// Signs access tokens with manager's current key in the token.
pub struct TokenIssuer {
    pool: hsm::TokenPool,
    algorithm: hsm::SignatureAlgorithm,
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
}

/// A signed token and its claims.
pub struct IssuedToken {
    /// Compact JWS.
    pub token: String,
    /// The claims it carries.
    pub claims: AccessClaims,
}

/// Who the token is for and for how long.
pub struct Grant<'a> {
    /// Owner (`sub`).
    pub user_id: &'a str,
    /// The one secret it unlocks.
    pub key_id: &'a str,
    /// Issue time, seconds since the Unix epoch.
    pub now: u64,
    /// Lifetime in seconds.
    pub ttl_seconds: u64,
}

impl TokenIssuer {
    /// An issuer signing with the current key of `keys`.
    pub fn new(
        pool: hsm::TokenPool,
        algorithm: hsm::SignatureAlgorithm,
        keys: Arc<KeyRing>,
        issuer: String,
        audience: String,
    ) -> Self {
        Self {
            pool,
            algorithm,
            keys,
            issuer,
            audience,
        }
    }

    /// Builds and signs a token for `grant`.
    pub async fn issue(&self, grant: Grant<'_>) -> Result<IssuedToken, hsm::Error> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: grant.user_id.to_owned(),
            key_id: grant.key_id.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: grant.now,
            nbf: grant.now,
            exp: grant.now + grant.ttl_seconds,
            scope: READ_SCOPE.to_owned(),
        };
        let key = self.keys.current();
        let header = json!({"alg": self.algorithm.jose_name(), "typ": "JWT", "kid": key.kid});
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(&claims));
        let signer = hsm::Signer::new(self.pool.clone(), key.label, self.algorithm);
        let signature = signer.sign(signing_input.as_bytes()).await?;
        Ok(IssuedToken {
            token: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
            claims,
        })
    }
}

fn b64_json(value: &impl serde::Serialize) -> String {
    // Serialising a map of strings and integers cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}
