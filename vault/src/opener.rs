//! Opening a stored envelope: the content key is unwrapped inside the token, the
//! content is decrypted in process into a zeroizing buffer.

use contract::envelope::{Binding, Envelope, EnvelopeError, KeyWrap};
use zeroize::Zeroizing;

use crate::error::ApiError;

/// vault's wrapping key: its `kid` and the token-backed decrypter.
pub struct Opener {
    kid: String,
    decrypter: hsm::Decrypter,
}

impl Opener {
    /// `kid` must be the RFC 7638 thumbprint of the decrypter's public key.
    pub fn new(kid: String, decrypter: hsm::Decrypter) -> Self {
        Self { kid, decrypter }
    }

    /// The `kid` manager seals to.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks an incoming envelope before it is stored: well-formed, bound to this row,
    /// sealed to a key this vault holds.
    pub fn check_incoming(&self, envelope: &str, binding: Binding<'_>) -> Result<(), ApiError> {
        let parsed = Envelope::parse(envelope).map_err(ApiError::InvalidEnvelope)?;
        parsed.check_binding(binding).map_err(ApiError::InvalidEnvelope)?;
        if parsed.header().kid != self.kid {
            return Err(ApiError::UnknownWrappingKey(parsed.header().kid.clone()));
        }
        Ok(())
    }

    /// Opens a stored envelope for the row it was read from. Any mismatch is an
    /// integrity failure: the row was tampered with, not the request.
    pub async fn open(&self, envelope: &str, binding: Binding<'_>) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let parsed = Envelope::parse(envelope).map_err(ApiError::Integrity)?;
        parsed.check_binding(binding).map_err(ApiError::Integrity)?;
        if parsed.header().kid != self.kid {
            return Err(ApiError::Integrity(EnvelopeError::UnsupportedAlgorithm(
                parsed.header().kid.clone(),
            )));
        }
        let hash = match parsed.key_wrap() {
            KeyWrap::RsaOaep => hsm::OaepHash::Sha1,
            KeyWrap::RsaOaep256 => hsm::OaepHash::Sha256,
        };
        let cek = self.decrypter.decrypt_oaep(hash, parsed.encrypted_key()).await?;
        parsed.open(&cek).map_err(ApiError::Integrity)
    }
}
