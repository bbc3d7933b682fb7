//! manager's signing keys in its token. Every generation of the configured label
//! (`manager-signing`, `manager-signing.1`, ...) is published in the JWKS so that tokens
//! signed before a rotation stay verifiable; the newest generation signs.

use std::sync::{Arc, RwLock};

use contract::jwk::JwkSet;

/// The key that signs new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentKey {
    /// CKA_LABEL in the token.
    pub label: String,
    /// RFC 7638 thumbprint, the JWS `kid`.
    pub kid: String,
}

#[derive(Debug)]
struct Snapshot {
    current: CurrentKey,
    jwks: JwkSet,
}

/// Why the key ring could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The token did not answer.
    #[error("reading signing keys from the token")]
    Hsm(#[from] hsm::Error),
    /// No key with the configured label exists.
    #[error("no signing key labelled {0:?} (or {0:?}.N) in the token")]
    NoKey(String),
}

/// The signing keys as last read from the token; [`KeyRing::refresh`] re-reads them.
pub struct KeyRing {
    pool: hsm::TokenPool,
    base: String,
    algorithm: hsm::SignatureAlgorithm,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl KeyRing {
    /// Reads the keys labelled `base` or `base.N`.
    pub async fn load(
        pool: hsm::TokenPool,
        base: &str,
        algorithm: hsm::SignatureAlgorithm,
    ) -> Result<Self, KeyRingError> {
        let snapshot = read(&pool, base, algorithm).await?;
        Ok(Self {
            pool,
            base: base.to_owned(),
            algorithm,
            snapshot: RwLock::new(Arc::new(snapshot)),
        })
    }

    /// Re-reads the token (after `manager-admin rotate-signing-key` or `retire-signing-key`).
    pub async fn refresh(&self) -> Result<(), KeyRingError> {
        let fresh = read(&self.pool, &self.base, self.algorithm).await?;
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The newest generation.
    pub fn current(&self) -> CurrentKey {
        self.snapshot().current.clone()
    }

    /// Every generation's public key.
    pub fn jwks(&self) -> JwkSet {
        self.snapshot().jwks.clone()
    }
}

async fn read(pool: &hsm::TokenPool, base: &str, algorithm: hsm::SignatureAlgorithm) -> Result<Snapshot, KeyRingError> {
    let keys = hsm::rsa_public_keys_labelled(pool, base).await?;
    let newest = keys
        .last()
        .map(|k| CurrentKey {
            label: k.label.clone(),
            kid: k.key.thumbprint(),
        })
        .ok_or_else(|| KeyRingError::NoKey(base.to_owned()))?;
    let jwks = JwkSet {
        keys: keys
            .iter()
            .map(|k| k.key.to_jwk(algorithm.jose_name(), "sig"))
            .collect(),
    };
    Ok(Snapshot { current: newest, jwks })
}
