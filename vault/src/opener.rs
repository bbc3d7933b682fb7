//! Opening stored envelopes with vault's wrapping keys. Every generation of the
//! configured label (`vault-wrapping`, `vault-wrapping.1`, ...) can unwrap; the newest is
//! the one manager seals to. The content key is unwrapped inside the token; the content
//! is decrypted in process into a zeroizing buffer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use contract::envelope::{Binding, Envelope, EnvelopeError, KeyWrap, Recipient};
use contract::jwk::{Jwk, RsaPublicKey};
use zeroize::Zeroizing;

use crate::error::ApiError;

/// One wrapping key generation.
#[derive(Debug, Clone)]
pub struct WrappingKey {
    /// CKA_LABEL in the token.
    pub label: String,
    /// Its public half.
    pub public: RsaPublicKey,
}

#[derive(Debug)]
struct Keys {
    by_kid: HashMap<String, WrappingKey>,
    current: String,
}

/// Why the wrapping keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenerError {
    /// The token did not answer.
    #[error("reading wrapping keys from the token")]
    Hsm(#[from] hsm::Error),
    /// No key with the configured label exists.
    #[error("no wrapping key labelled {0:?} (or {0:?}.N) in the token")]
    NoKey(String),
}

/// vault's wrapping keys as last read from the token.
pub struct Opener {
    pool: hsm::TokenPool,
    base: String,
    keys: RwLock<Arc<Keys>>,
}

impl Opener {
    /// Reads every generation of `base` from the token.
    pub async fn load(pool: hsm::TokenPool, base: &str) -> Result<Self, OpenerError> {
        let keys = read(&pool, base).await?;
        Ok(Self {
            pool,
            base: base.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// Re-reads the token (after `vault-admin rotate-wrapping-key` / `retire-wrapping-key`).
    pub async fn refresh(&self) -> Result<(), OpenerError> {
        let keys = read(&self.pool, &self.base).await?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `kid` manager should seal to.
    pub fn kid(&self) -> String {
        self.keys().current.clone()
    }

    /// The newest key as a JWK, for manager.
    pub fn current_jwk(&self) -> Option<Jwk> {
        let keys = self.keys();
        keys.by_kid
            .get(&keys.current)
            .map(|k| k.public.to_jwk("RSA-OAEP", "enc"))
    }

    /// The newest key, as a recipient to wrap content keys to.
    pub fn current_recipient(&self) -> Result<Recipient, EnvelopeError> {
        let keys = self.keys();
        let key = keys.by_kid.get(&keys.current).ok_or(EnvelopeError::Crypto)?;
        Recipient::from_public_key(&key.public)
    }

    /// The key generation with this `kid`, if the token holds it.
    pub fn key(&self, kid: &str) -> Option<WrappingKey> {
        self.keys().by_kid.get(kid).cloned()
    }

    /// Checks an incoming envelope before it is stored: well-formed, bound to this row,
    /// sealed to a key this vault holds.
    pub fn check_incoming(&self, envelope: &str, binding: Binding<'_>) -> Result<(), ApiError> {
        let parsed = Envelope::parse(envelope).map_err(ApiError::InvalidEnvelope)?;
        parsed.check_binding(binding).map_err(ApiError::InvalidEnvelope)?;
        if self.key(&parsed.header().kid).is_none() {
            return Err(ApiError::UnknownWrappingKey(parsed.header().kid.clone()));
        }
        Ok(())
    }

    /// Unwraps the content key inside the token with the key it is wrapped to now
    /// (`wrap_kid` from storage, else the header's `kid`).
    pub async fn unwrap_content_key(
        &self,
        parsed: &Envelope,
        wrap_kid: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let kid = wrap_kid.unwrap_or(&parsed.header().kid);
        let key = self
            .key(kid)
            .ok_or_else(|| ApiError::Integrity(EnvelopeError::UnsupportedAlgorithm(format!("wrapping key {kid}"))))?;
        let hash = match parsed.key_wrap() {
            KeyWrap::RsaOaep => hsm::OaepHash::Sha1,
            KeyWrap::RsaOaep256 => hsm::OaepHash::Sha256,
        };
        let decrypter = hsm::Decrypter::new(self.pool.clone(), key.label);
        Ok(decrypter.decrypt_oaep(hash, parsed.encrypted_key()).await?)
    }

    /// Opens a stored envelope for the row it was read from. Any mismatch is an
    /// integrity failure: the row was tampered with, not the request.
    pub async fn open(
        &self,
        envelope: &str,
        binding: Binding<'_>,
        wrap_kid: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let parsed = Envelope::parse(envelope).map_err(ApiError::Integrity)?;
        parsed.check_binding(binding).map_err(ApiError::Integrity)?;
        let cek = self.unwrap_content_key(&parsed, wrap_kid).await?;
        parsed.open(&cek).map_err(ApiError::Integrity)
    }
}

async fn read(pool: &hsm::TokenPool, base: &str) -> Result<Keys, OpenerError> {
    let keys = hsm::rsa_public_keys_labelled(pool, base).await?;
    let current = keys
        .last()
        .map(|k| k.key.thumbprint())
        .ok_or_else(|| OpenerError::NoKey(base.to_owned()))?;
    let by_kid = keys
        .into_iter()
        .map(|k| {
            (
                k.key.thumbprint(),
                WrappingKey {
                    label: k.label,
                    public: k.key,
                },
            )
        })
        .collect();
    Ok(Keys { by_kid, current })
}
