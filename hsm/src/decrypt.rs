//! RSA-OAEP decryption of a content key inside the token.

use cryptoki::error::RvError;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use zeroize::Zeroizing;

use crate::error::{Error, Result, rv_of};
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;

/// The OAEP hash (and MGF1 hash, always the same here).
///
/// SoftHSM2 2.6.1 only decrypts SHA-1 OAEP; real HSMs and Kryoptic also do SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    /// JWE `RSA-OAEP`.
    Sha1,
    /// JWE `RSA-OAEP-256`.
    Sha256,
}

/// Decrypts with one private key in the token, found by label.
#[derive(Clone)]
pub struct Decrypter {
    pool: TokenPool,
    key_label: String,
}

impl Decrypter {
    /// A decrypter for the private key labelled `key_label`.
    pub fn new(pool: TokenPool, key_label: impl Into<String>) -> Self {
        Self {
            pool,
            key_label: key_label.into(),
        }
    }

    /// Label of the key this decrypter uses.
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    /// Decrypts an RSA-OAEP ciphertext (empty label) inside the token.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] when the token rejects the ciphertext: SoftHSM answers
    /// CKR_GENERAL_ERROR for a tampered OAEP block, which is the data's fault and leaves
    /// the session healthy. Other failures are the token's.
    pub async fn decrypt_oaep(
        &self,
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let label = self.key_label.clone();
        let ciphertext = ciphertext.to_vec();
        self.pool
            .run("decrypt", move |session| {
                let key = find_key(session, KeyClass::Private, &label)?;
                let (hash_alg, mgf) = match hash {
                    OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
                    OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                };
                let params = PkcsOaepParams::new(hash_alg, mgf, PkcsOaepSource::empty());
                match session.decrypt(&Mechanism::RsaPkcsOaep(params), key, &ciphertext) {
                    Ok(plain) => Ok(Zeroizing::new(plain)),
                    Err(e) if is_bad_ciphertext(rv_of(&e)) => Err(Error::DecryptionFailed(e)),
                    Err(e) => Err(Error::Pkcs11 {
                        operation: "decrypt",
                        source: e,
                    }),
                }
            })
            .await
    }
}

fn is_bad_ciphertext(rv: Option<RvError>) -> bool {
    matches!(
        rv,
        Some(
            RvError::GeneralError
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange
        )
    )
}
