//! RSA-OAEP decryption of a content key inside the token.

use cryptoki::error::RvError;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use zeroize::Zeroizing;

use crate::error::{Error, Operation, Result, rv_of};
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

    /// Decrypts an RSA-OAEP ciphertext (empty label) inside the token.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] when the token rejects the ciphertext: SoftHSM answers
    /// CKR_GENERAL_ERROR for a tampered OAEP block, which is the data's fault and leaves
    /// the session healthy. Other failures are the token's.
    pub async fn decrypt_oaep(&self, hash: OaepHash, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let label = self.key_label.clone();
        let ciphertext = ciphertext.to_vec();
        self.pool
            .run(Operation::Decrypt, move |session| {
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
                        operation: Operation::Decrypt,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestKey;
    use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OaepPublicEncryptingKey, PublicEncryptingKey};

    fn encrypt_sha1(public: &crate::RsaPublicComponents, plaintext: &[u8]) -> Vec<u8> {
        let der = public.spki_der().expect("spki");
        let key = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&der).expect("key")).expect("oaep");
        let mut out = vec![0u8; key.ciphertext_size()];
        key.encrypt(&OAEP_SHA1_MGF1SHA1, plaintext, &mut out, None)
            .expect("encrypt")
            .to_vec()
    }

    /// Ciphertexts made by an independent implementation (aws-lc) open in the token.
    #[tokio::test]
    async fn oaep_sha1_ciphertexts_from_aws_lc_decrypt_in_the_token() -> Result<()> {
        let key = TestKey::generate(crate::KeyUsage::Decrypt).await?;
        let public = crate::rsa_public_key(&key.pool, &key.label, crate::KeyUsage::Decrypt).await?;
        let decrypter = Decrypter::new(key.pool.clone(), key.label.clone());
        let content_key = [0x42u8; 32];
        let plain = decrypter
            .decrypt_oaep(OaepHash::Sha1, &encrypt_sha1(&public, &content_key))
            .await?;
        assert_eq!(plain.as_slice(), &content_key);
        key.destroy().await
    }

    /// SoftHSM answers CKR_GENERAL_ERROR for a bad OAEP block: that is the data's fault,
    /// must not read as an outage, and must leave the pool usable.
    #[tokio::test]
    async fn a_tampered_ciphertext_is_a_decryption_failure_not_an_outage() -> Result<()> {
        let key = TestKey::generate(crate::KeyUsage::Decrypt).await?;
        let public = crate::rsa_public_key(&key.pool, &key.label, crate::KeyUsage::Decrypt).await?;
        let decrypter = Decrypter::new(key.pool.clone(), key.label.clone());
        let mut ciphertext = encrypt_sha1(&public, &[7u8; 32]);
        ciphertext[100] ^= 0x01;
        let error = decrypter
            .decrypt_oaep(OaepHash::Sha1, &ciphertext)
            .await
            .expect_err("tampered");
        assert!(matches!(error, Error::DecryptionFailed(_)), "{error:?}");
        assert!(!error.is_unavailable());
        let fine = decrypter
            .decrypt_oaep(OaepHash::Sha1, &encrypt_sha1(&public, &[8u8; 32]))
            .await?;
        assert_eq!(fine.as_slice(), &[8u8; 32]);
        key.destroy().await
    }

    /// A signing key has no CKA_DECRYPT: the token refuses, whatever the caller wants.
    #[tokio::test]
    async fn a_signing_key_cannot_decrypt() -> Result<()> {
        let key = TestKey::generate(crate::KeyUsage::Sign).await?;
        let public = crate::rsa_public_key(&key.pool, &key.label, crate::KeyUsage::Sign).await?;
        let decrypter = Decrypter::new(key.pool.clone(), key.label.clone());
        let result = decrypter
            .decrypt_oaep(OaepHash::Sha1, &encrypt_sha1(&public, &[1u8; 32]))
            .await;
        assert!(result.is_err(), "a sign-only key must not decrypt");
        key.destroy().await
    }
}
