//! RSA-OAEP decryption of a content key inside the token.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use zeroize::Zeroizing;

use crate::error::{Error, Operation, Result};
use crate::export::RsaPublicComponents;
use crate::key_policy::usable_rsa_key;
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;
use crate::provision::KeyUsage;

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

impl OaepHash {
    /// CKM_RSA_PKCS_OAEP with this hash, MGF1 with the same, and an empty label.
    fn mechanism(self) -> Mechanism<'static> {
        let (hash_alg, mgf) = match self {
            OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        };
        Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash_alg, mgf, PkcsOaepSource::empty()))
    }

    /// The same OAEP in software (aws-lc), to encrypt to the key.
    fn software(self) -> &'static aws_lc_rs::rsa::OaepAlgorithm {
        match self {
            OaepHash::Sha1 => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
            OaepHash::Sha256 => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        }
    }
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
    /// [`Error::DecryptionFailed`] when the ciphertext is at fault (see [`classify`]): it
    /// was not encrypted to this key with this OAEP, or was altered; the session stays in
    /// the pool. Other failures are the token's; [`Error::is_mechanism_refused`] tells
    /// those where it does not decrypt this OAEP with this key (SoftHSM2 2.6.1 and
    /// SHA-256: CKR_ARGUMENTS_BAD at C_DecryptInit).
    pub async fn decrypt_oaep(&self, hash: OaepHash, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let label = self.key_label.clone();
        let ciphertext = ciphertext.to_vec();
        let pool = self.pool.clone();
        self.pool
            .run(Operation::Decrypt, move |session| {
                let key = find_key(session, KeyClass::Private, &label)?;
                match session.decrypt(&hash.mechanism(), key, &ciphertext) {
                    Ok(plain) => {
                        pool.vouch();
                        Ok(Zeroizing::new(plain))
                    }
                    Err(e) => Err(classify(e, || {
                        if pool.vouched_within(VOUCHED_FOR) {
                            return true;
                        }
                        let opens = opens_a_control(session, key, &label, hash);
                        if opens {
                            pool.vouch();
                        }
                        opens
                    })),
                }
            })
            .await
    }

    /// Whether the token decrypts this OAEP with this key: a random block encrypted here,
    /// in software, to the key's public half must come back whole. The mechanism list cannot
    /// tell: SoftHSM2 2.6.1 lists CKM_RSA_PKCS_OAEP and refuses SHA-256 parameters only when
    /// asked (CKR_ARGUMENTS_BAD at C_DecryptInit).
    ///
    /// # Errors
    /// The key cannot be found or read, or the token failed otherwise than by refusing this
    /// variant or answering it with an error a tampered block would get.
    pub async fn opens(&self, hash: OaepHash) -> Result<bool> {
        let public = crate::rsa_public_key(&self.pool, &self.key_label, KeyUsage::Decrypt).await?;
        let mut probe = Zeroizing::new([0u8; 32]);
        let ciphertext = aws_lc_rs::rand::fill(probe.as_mut_slice())
            .ok()
            .and_then(|()| encrypt_to(&public, hash, probe.as_slice()));
        let Some(ciphertext) = ciphertext else {
            tracing::warn!(label = %self.key_label, "could not make a probe ciphertext in software");
            return Ok(false);
        };
        match self.decrypt_oaep(hash, &ciphertext).await {
            Ok(opened) if opened.as_slice() == probe.as_slice() => Ok(true),
            Ok(_) => {
                tracing::warn!(label = %self.key_label, ?hash, "the token decrypted a probe to something else");
                Ok(false)
            }
            Err(error) if error.is_mechanism_refused() || !error.is_unavailable() => {
                tracing::info!(label = %self.key_label, ?hash, %error, "the token does not open this OAEP");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

/// How long a correct decryption vouches for the token: an ambiguous failure within it is
/// the data's without a control ciphertext. So the control is rare (a failure after a quiet
/// spell), costs no second RSA operation per bad row, and adds no per-request timing
/// difference an attacker who can plant ciphertexts (a compromised manager, a writer of the
/// database) could measure, should a token answer differently for differently malformed
/// blocks. A token that fails within the window has its failure taken for bad data once
/// (an integrity error, not a 503); the next operation's session error still recycles.
const VOUCHED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Whose fault a failed C_DecryptInit + C_Decrypt was, from its CK_RV and call.
///
/// - CKR_ENCRYPTED_DATA_INVALID / _LEN_RANGE, CKR_DATA_INVALID / _LEN_RANGE: the
///   ciphertext ([`Error::DecryptionFailed`]).
/// - C_Decrypt answering CKR_GENERAL_ERROR or CKR_DEVICE_ERROR: ambiguous. SoftHSM2 answers
///   the first and Kryoptic the second (it maps any OpenSSL failure to it) for an OAEP block
///   that does not decode, and a failing token answers them too. So the token is given a
///   control ciphertext (`control_opens`, which encrypts to the same key here, unless a
///   decryption within [`VOUCHED_FOR`] already showed the token works): if that
///   decrypts, the token works and the ciphertext was at fault; if not, the token is (an
///   [`Error::Pkcs11`], which [`Error::is_unavailable`] reports and after which the pool
///   re-opens its sessions on CKR_DEVICE_ERROR). One more RSA operation, on failures only.
/// - Anything else: the token's.
fn classify(error: CkError, control_opens: impl Fn() -> bool) -> Error {
    let CkError::Pkcs11(rv, function) = &error else {
        return Error::Pkcs11 {
            operation: Operation::Decrypt,
            source: error,
        };
    };
    match (rv, function) {
        (
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange,
            _,
        ) => Error::DecryptionFailed(error),
        (RvError::GeneralError | RvError::DeviceError, Function::Decrypt) if control_opens() => {
            Error::DecryptionFailed(error)
        }
        _ => Error::Pkcs11 {
            operation: Operation::Decrypt,
            source: error,
        },
    }
}

/// Whether the token, on `session`, decrypts a random block encrypted here to `key`'s public
/// half with the same OAEP. Any failure, reading the public half included, is `false`: the
/// token cannot then be vouched for.
fn opens_a_control(session: &Session, key: ObjectHandle, label: &str, hash: OaepHash) -> bool {
    let public = match usable_rsa_key(session, key, label, KeyUsage::Decrypt) {
        Ok(Ok(public)) => public,
        Ok(Err(reason)) => {
            tracing::warn!(label, %reason, "no public half to check the token's decryption with");
            return false;
        }
        Err(error) => {
            tracing::warn!(label, %error, "no public half to check the token's decryption with");
            return false;
        }
    };
    let mut plain = [0u8; 32];
    let Some(ciphertext) = aws_lc_rs::rand::fill(&mut plain)
        .ok()
        .and_then(|()| encrypt_to(&public, hash, &plain))
    else {
        tracing::warn!(label, "could not make a control ciphertext in software");
        return false;
    };
    match session.decrypt(&hash.mechanism(), key, &ciphertext) {
        Ok(opened) => opened == plain,
        Err(error) => {
            tracing::warn!(label, %error, "the token failed to decrypt a control ciphertext too");
            false
        }
    }
}

/// `plain` encrypted in software to `public` with `hash`'s OAEP; `None` if aws-lc refuses
/// the key (it says no more than that).
fn encrypt_to(public: &RsaPublicComponents, hash: OaepHash, plain: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};
    let key = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&public.spki_der()?).ok()?).ok()?;
    let mut out = vec![0u8; key.ciphertext_size()];
    let written = key.encrypt(hash.software(), plain, &mut out, None).ok()?.len();
    out.truncate(written);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TestKey, Token, token_tests};

    token_tests!(
        oaep_sha1_ciphertexts_from_aws_lc_decrypt_in_the_token,
        oaep_sha256_decrypts_on_kryoptic_and_is_a_refused_mechanism_on_softhsm,
        a_tampered_ciphertext_is_a_decryption_failure_not_an_outage,
        a_signing_key_cannot_decrypt,
    );

    /// A wrapping key in `token`, its public half and a decrypter for it.
    async fn wrapping_key(token: Token) -> Result<(TestKey, RsaPublicComponents, Decrypter)> {
        let key = TestKey::generate(token, KeyUsage::Decrypt).await?;
        let public = crate::rsa_public_key(&key.pool, &key.label, KeyUsage::Decrypt).await?;
        let decrypter = Decrypter::new(key.pool.clone(), key.label.clone());
        Ok((key, public, decrypter))
    }

    /// Ciphertexts made by an independent implementation (aws-lc) open in the token.
    async fn oaep_sha1_ciphertexts_from_aws_lc_decrypt_in_the_token(token: Token) -> Result<()> {
        let (key, public, decrypter) = wrapping_key(token).await?;
        let content_key = [0x42u8; 32];
        let ciphertext = encrypt_to(&public, OaepHash::Sha1, &content_key).expect("encrypt");
        let plain = decrypter.decrypt_oaep(OaepHash::Sha1, &ciphertext).await?;
        assert_eq!(plain.as_slice(), &content_key);
        key.destroy().await
    }

    /// JWE `RSA-OAEP-256`: Kryoptic opens it. SoftHSM2 2.6.1 refuses the parameters at
    /// C_DecryptInit with CKR_ARGUMENTS_BAD: a refused mechanism, which vault, trying both
    /// OAEP variants at start-up, tells from an outage and goes on with SHA-1.
    async fn oaep_sha256_decrypts_on_kryoptic_and_is_a_refused_mechanism_on_softhsm(token: Token) -> Result<()> {
        let (key, public, decrypter) = wrapping_key(token).await?;
        let content_key = [0x43u8; 32];
        let ciphertext = encrypt_to(&public, OaepHash::Sha256, &content_key).expect("encrypt");
        let result = decrypter.decrypt_oaep(OaepHash::Sha256, &ciphertext).await;
        assert!(decrypter.opens(OaepHash::Sha1).await?, "both tokens open SHA-1 OAEP");
        assert_eq!(decrypter.opens(OaepHash::Sha256).await?, token == Token::Kryoptic);
        match token {
            Token::Kryoptic => assert_eq!(result?.as_slice(), &content_key),
            Token::SoftHsm => {
                let error = result.expect_err("SoftHSM2 2.6.1 has no OAEP with SHA-256");
                assert!(
                    matches!(
                        &error,
                        Error::Pkcs11 {
                            operation: Operation::Decrypt,
                            source: CkError::Pkcs11(RvError::ArgumentsBad, Function::DecryptInit),
                        }
                    ),
                    "{error:?}"
                );
                assert!(error.is_mechanism_refused());
                let fine = encrypt_to(&public, OaepHash::Sha1, &content_key).expect("encrypt");
                assert_eq!(
                    decrypter.decrypt_oaep(OaepHash::Sha1, &fine).await?.as_slice(),
                    &content_key
                );
            }
        }
        key.destroy().await
    }

    /// A bad OAEP block is the data's fault: it must not read as an outage (nor, being no
    /// `Error::Pkcs11`, make the pool re-open its sessions), and the session must go on
    /// working. C_Decrypt answers it with CKR_GENERAL_ERROR on SoftHSM2 and with
    /// CKR_DEVICE_ERROR on Kryoptic; the control ciphertext tells both from a failing token.
    async fn a_tampered_ciphertext_is_a_decryption_failure_not_an_outage(token: Token) -> Result<()> {
        let (key, public, decrypter) = wrapping_key(token).await?;
        // The variants the token opens (see the test above).
        let hashes: &[OaepHash] = match token {
            Token::SoftHsm => &[OaepHash::Sha1],
            Token::Kryoptic => &[OaepHash::Sha1, OaepHash::Sha256],
        };
        for &hash in hashes {
            let mut ciphertext = encrypt_to(&public, hash, &[7u8; 32]).expect("encrypt");
            ciphertext[100] ^= 0x01;
            let error = decrypter.decrypt_oaep(hash, &ciphertext).await.expect_err("tampered");
            let expected = match token {
                Token::SoftHsm => RvError::GeneralError,
                Token::Kryoptic => RvError::DeviceError,
            };
            assert!(
                matches!(&error, Error::DecryptionFailed(CkError::Pkcs11(rv, Function::Decrypt)) if *rv == expected),
                "{hash:?}: {error:?}"
            );
            assert!(!error.is_unavailable());
            let fine = encrypt_to(&public, hash, &[8u8; 32]).expect("encrypt");
            assert_eq!(decrypter.decrypt_oaep(hash, &fine).await?.as_slice(), &[8u8; 32]);
        }
        key.destroy().await
    }

    /// A signing key has no CKA_DECRYPT, and OAEP is not among its allowed mechanisms: the
    /// token refuses at C_DecryptInit, SoftHSM2 for the first reason
    /// (CKR_KEY_FUNCTION_NOT_PERMITTED), Kryoptic, which checks CKA_ALLOWED_MECHANISMS
    /// first, for the second (CKR_MECHANISM_INVALID); both are refused mechanisms.
    async fn a_signing_key_cannot_decrypt(token: Token) -> Result<()> {
        let key = TestKey::generate(token, KeyUsage::Sign).await?;
        let public = crate::rsa_public_key(&key.pool, &key.label, KeyUsage::Sign).await?;
        let decrypter = Decrypter::new(key.pool.clone(), key.label.clone());
        let ciphertext = encrypt_to(&public, OaepHash::Sha1, &[1u8; 32]).expect("encrypt");
        let error = decrypter
            .decrypt_oaep(OaepHash::Sha1, &ciphertext)
            .await
            .expect_err("a sign-only key must not decrypt");
        let expected = match token {
            Token::SoftHsm => RvError::KeyFunctionNotPermitted,
            Token::Kryoptic => RvError::MechanismInvalid,
        };
        assert!(
            matches!(
                &error,
                Error::Pkcs11 { source: CkError::Pkcs11(rv, Function::DecryptInit), .. } if *rv == expected
            ),
            "{error:?}"
        );
        assert!(error.is_mechanism_refused());
        key.destroy().await
    }

    /// The table `classify` follows, without a token: the control ciphertext is asked
    /// about only for the two ambiguous answers of C_Decrypt.
    #[test]
    fn only_an_ambiguous_decrypt_failure_asks_the_control_and_it_decides() {
        let error = |rv, function| CkError::Pkcs11(rv, function);
        let never = || -> bool { panic!("the control is not needed") };
        for rv in [
            RvError::EncryptedDataInvalid,
            RvError::EncryptedDataLenRange,
            RvError::DataLenRange,
        ] {
            let classified = classify(error(rv, Function::Decrypt), never);
            assert!(matches!(classified, Error::DecryptionFailed(_)), "{rv:?}");
        }
        for rv in [
            RvError::ArgumentsBad,
            RvError::MechanismInvalid,
            RvError::KeyFunctionNotPermitted,
        ] {
            let classified = classify(error(rv, Function::DecryptInit), never);
            assert!(classified.is_mechanism_refused(), "{rv:?}");
        }
        for rv in [RvError::GeneralError, RvError::DeviceError] {
            let classified = classify(error(rv, Function::Decrypt), || true);
            assert!(
                matches!(classified, Error::DecryptionFailed(_)),
                "{rv:?}, control opens"
            );
            let classified = classify(error(rv, Function::Decrypt), || false);
            assert!(matches!(classified, Error::Pkcs11 { .. }), "{rv:?}, control fails");
            assert!(classified.is_unavailable());
            let classified = classify(error(rv, Function::DecryptInit), never);
            assert!(matches!(classified, Error::Pkcs11 { .. }), "{rv:?} before any data");
        }
        for rv in [RvError::SessionHandleInvalid, RvError::UserNotLoggedIn] {
            let classified = classify(error(rv, Function::Decrypt), never);
            assert!(classified.is_unavailable(), "{rv:?}");
        }
    }
}
