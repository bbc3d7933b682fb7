//! Opening envelopes with vault's wrapping keys: every generation of the configured label
//! can unwrap (see [`KeyRing`]); the newest is the one manager seals to. The wrapped key is
//! unwrapped inside the token, combined with the holder's share from the access token
//! (version-2 envelopes), and the content decrypted in process into a zeroizing buffer.

use std::sync::Arc;

use contract::envelope::{Binding, Envelope, EnvelopeError, KeyWrap, Version};
use contract::jwk::Jwk;
use contract::share::HolderShare;
use service_kit::keyring::KeyRing;
use zeroize::Zeroizing;

use crate::storage::StoredSecret;

/// Why an envelope was refused on its way in (manager's store request).
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    /// Malformed, or bound to another row or owner.
    #[error("invalid envelope")]
    Invalid(#[from] EnvelopeError),
    /// Sealed to a key this vault does not hold.
    #[error("envelope sealed to unknown key {0:?}")]
    UnknownKey(String),
    /// A version-1 envelope, which vault's token alone opens: rows stored before split
    /// trust stay readable, but no new secret is stored that way.
    #[error("version-1 envelopes are no longer stored; upgrade manager")]
    Version1,
    /// Wrapped with an OAEP this vault's token does not open (manager forced
    /// `key_wrap = "RSA-OAEP-256"` in front of SoftHSM2, say): stored, it could never be read.
    #[error("the content key is wrapped with {0}, which this vault's token does not open")]
    UnsupportedKeyWrap(KeyWrap),
}

/// Why a stored envelope did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The access token's share is not the one this envelope needs: the token does not fit
    /// the secret (a token minted without the holder's share, say). Nothing was unwrapped.
    #[error("the access token's share does not fit the stored envelope")]
    ShareMismatch,
    /// Malformed, bound to another row, or its GCM tag failed: altered at rest.
    #[error("the stored envelope is not intact")]
    Envelope(#[from] EnvelopeError),
    /// Its content key is wrapped to a key the token no longer holds.
    #[error("the content key is wrapped to {0:?}, which the token does not hold")]
    UnknownKey(String),
    /// The token refused the wrapped content key: not wrapped to this key, or altered.
    #[error("the token could not unwrap the content key")]
    ContentKey(#[source] hsm::Error),
    /// The token is unavailable.
    #[error("the token is unavailable")]
    Token(#[source] hsm::Error),
}

impl From<hsm::Error> for OpenError {
    fn from(error: hsm::Error) -> Self {
        if error.is_unavailable() {
            OpenError::Token(error)
        } else {
            OpenError::ContentKey(error)
        }
    }
}

/// The kid of the wrapping key `secret`'s content key is wrapped to now: the one `rewrap`
/// recorded, else the one its envelope (parsed as `envelope`) was sealed to; `None` when
/// neither is known.
pub fn wrapped_to<'a>(secret: &'a StoredSecret, envelope: Option<&'a Envelope>) -> Option<&'a str> {
    secret
        .wrap_kid
        .as_deref()
        .or_else(|| envelope.map(|envelope| envelope.header().kid.as_str()))
}

/// The token's OAEP hash for a JWE key wrapping.
fn oaep_hash(wrap: KeyWrap) -> hsm::OaepHash {
    match wrap {
        KeyWrap::RsaOaep => hsm::OaepHash::Sha1,
        KeyWrap::RsaOaep256 => hsm::OaepHash::Sha256,
    }
}

/// vault's wrapping keys, opening envelopes with them.
pub struct Opener {
    keys: Arc<KeyRing>,
    /// The OAEP variants the token opens, the one to publish first.
    opens: Vec<KeyWrap>,
}

/// The OAEP variants [`Opener::probe`] tries, in order of preference: SHA-256 where the
/// token does it (Kryoptic, real HSMs), else SHA-1 (SoftHSM2 2.6.1 opens only that).
const PREFERENCE: [KeyWrap; 2] = [KeyWrap::RsaOaep256, KeyWrap::RsaOaep];

impl Opener {
    /// An opener over the wrapping keys in `keys` that takes the token to open both OAEP
    /// variants (for `vault-admin rewrap`, which only opens what was stored).
    pub fn new(keys: Arc<KeyRing>) -> Self {
        Self {
            keys,
            opens: PREFERENCE.to_vec(),
        }
    }

    /// An opener over `keys` that knows which OAEP variants the token opens with the newest
    /// wrapping key ([`hsm::Decrypter::opens`]).
    ///
    /// # Errors
    /// The token is unavailable, or opens neither variant.
    pub async fn probe(keys: Arc<KeyRing>) -> anyhow::Result<Self> {
        let current = keys.keys().current().clone();
        let decrypter = hsm::Decrypter::new(keys.pool().clone(), current.label.clone());
        let mut opens = Vec::new();
        let mut token_failure = None;
        for wrap in PREFERENCE {
            match decrypter.opens(oaep_hash(wrap)).await {
                Ok(true) => opens.push(wrap),
                Ok(false) => {}
                // A failure that may be the token's: fatal only if no variant opens (a token
                // that fails one variant at C_Decrypt with CKR_GENERAL_ERROR, say, and opens
                // the other is healthy).
                Err(error) => {
                    tracing::warn!(key = %current.label, %wrap, %error, "the token failed a key-wrapping probe");
                    token_failure.get_or_insert(error);
                }
            }
        }
        if opens.is_empty() {
            if let Some(error) = token_failure {
                return Err(anyhow::Error::new(error).context(format!("cannot open a probe with {:?}", current.label)));
            }
            anyhow::bail!(
                "the token opens neither RSA-OAEP nor RSA-OAEP-256 with {:?}: run `hsm-admin check`",
                current.label
            );
        }
        tracing::info!(opens = ?opens.iter().map(|w| w.jose_name()).collect::<Vec<_>>(), "key wrappings the token opens");
        Ok(Self { keys, opens })
    }

    /// The wrapping keys.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// The OAEP variant published with the wrapping key (manager's `key_wrap = "auto"`
    /// seals with it).
    pub fn preferred_key_wrap(&self) -> KeyWrap {
        self.opens[0]
    }

    /// The newest key as a JWK whose `alg` is the OAEP the token opens (SHA-256 where it
    /// can): what manager seals to.
    pub fn current_jwk(&self) -> Jwk {
        self.keys
            .keys()
            .current()
            .public
            .to_jwk(self.preferred_key_wrap().jose_name(), "enc")
    }

    /// Checks an incoming envelope before it is stored: well-formed, split-trust (version
    /// 2), bound to this row, sealed to a key this vault holds.
    pub fn check_incoming(&self, envelope: &str, binding: Binding<'_>) -> Result<(), IncomingError> {
        let parsed = Envelope::parse(envelope)?;
        if parsed.version() == Version::V1 {
            return Err(IncomingError::Version1);
        }
        parsed.check_binding(binding)?;
        if !self.opens.contains(&parsed.key_wrap()) {
            return Err(IncomingError::UnsupportedKeyWrap(parsed.key_wrap()));
        }
        let kid = &parsed.header().kid;
        if self.keys.keys().get(kid).is_none() {
            return Err(IncomingError::UnknownKey(kid.clone()));
        }
        Ok(())
    }

    /// Unwraps the content key of `secret` (parsed as `envelope`) inside the token, with the
    /// key it is wrapped to now.
    pub async fn unwrap_content_key(
        &self,
        secret: &StoredSecret,
        envelope: &Envelope,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let kid = wrapped_to(secret, Some(envelope)).unwrap_or_default();
        let label = self
            .keys
            .keys()
            .get(kid)
            .map(|generation| generation.label.clone())
            .ok_or_else(|| OpenError::UnknownKey(kid.to_owned()))?;
        let decrypter = hsm::Decrypter::new(self.keys.pool().clone(), label);
        Ok(decrypter
            .decrypt_oaep(oaep_hash(envelope.key_wrap()), envelope.encrypted_key())
            .await?)
    }

    /// Opens a stored secret's envelope with the holder's `share` (the access token's).
    /// A share that does not fit is [`OpenError::ShareMismatch`], found before the token
    /// is asked for anything; any other mismatch with its row means the row was tampered
    /// with, not the request.
    pub async fn open(
        &self,
        secret: &StoredSecret,
        share: Option<&HolderShare>,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let envelope = Envelope::parse(&secret.envelope)?;
        envelope.check_binding(Binding {
            key_id: &secret.key_id,
            user_id: &secret.user_id,
        })?;
        envelope.check_share(share).map_err(|_| OpenError::ShareMismatch)?;
        let unwrapped = self.unwrap_content_key(secret, &envelope).await?;
        Ok(envelope.open(&unwrapped, share)?)
    }
}
