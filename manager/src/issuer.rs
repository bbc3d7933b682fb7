//! Access tokens: the JWS signing input is built here and signed inside the token
//! (jsonwebtoken has no external-signer entry point, Keats/jsonwebtoken#325).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::claims::{AccessClaims, JwsAlgorithm, READ_SCOPE};
use contract::jwk::JwkSet;
use contract::share::HolderShare;
use serde_json::json;
use service_kit::keyring::KeyRing;

/// Signs access tokens with the current generation of manager's signing key.
pub struct Issuer {
    keys: Arc<KeyRing>,
    algorithm: JwsAlgorithm,
    issuer: String,
    audience: String,
}

/// A signed access token and its claims.
pub struct IssuedAccessToken {
    /// Compact JWS.
    pub jwt: String,
    /// The claims it carries.
    pub claims: AccessClaims,
}

/// Who the access token is for and for how long.
pub struct Grant<'a> {
    /// Owner (`sub`).
    pub user_id: &'a str,
    /// The one secret it unlocks.
    pub key_id: &'a str,
    /// Issue time, seconds since the Unix epoch.
    pub now: u64,
    /// Lifetime in seconds.
    pub ttl_seconds: u64,
    /// The holder's share of the secret, which the token carries to its holder.
    pub share: HolderShare,
}

/// The token mechanism that makes `algorithm`'s signatures.
pub fn rsa_scheme(algorithm: JwsAlgorithm) -> hsm::RsaScheme {
    match algorithm {
        JwsAlgorithm::Rs256 => hsm::RsaScheme::Pkcs1Sha256,
        JwsAlgorithm::Ps256 => hsm::RsaScheme::PssSha256,
    }
}

impl Issuer {
    /// An issuer signing with `algorithm` and the current generation of `keys`, for tokens
    /// naming `issuer` and `audience`.
    pub fn new(keys: Arc<KeyRing>, algorithm: JwsAlgorithm, issuer: String, audience: String) -> Self {
        Self {
            keys,
            algorithm,
            issuer,
            audience,
        }
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Every generation's public key: the JWKS vault (and any JOSE library) verifies with,
    /// so that tokens signed before a rotation stay verifiable until their key is retired.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self
                .keys
                .keys()
                .iter()
                .map(|generation| generation.public.to_jwk(self.algorithm.jose_name(), "sig"))
                .collect(),
        }
    }

    /// Builds and signs an access token for `grant`.
    pub async fn issue(&self, grant: Grant<'_>) -> Result<IssuedAccessToken, hsm::Error> {
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
            share: Some(grant.share),
        };
        let keys = self.keys.keys();
        let key = keys.current();
        let header = json!({"alg": self.algorithm.jose_name(), "typ": "JWT", "kid": key.kid});
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(&claims));
        let signer = hsm::Signer::new(self.keys.pool().clone(), key.label.clone(), rsa_scheme(self.algorithm));
        let signature = signer.sign(signing_input.as_bytes()).await?;
        Ok(IssuedAccessToken {
            jwt: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)),
            claims,
        })
    }
}

fn b64_json(value: &impl serde::Serialize) -> String {
    // Serialising a map of strings and integers cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}
