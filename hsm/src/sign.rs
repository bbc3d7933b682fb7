//! RSA signatures made inside the token: PKCS#1 v1.5 and PSS, both over SHA-256.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};

use crate::error::{Error, Operation, Result};
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;

/// The RSA signature schemes the token signs with (JWS RS256/PS256, TLS, X.509).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RsaScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256, via CKM_SHA256_RSA_PKCS.
    Pkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt. The digest is computed
    /// in software and signed with CKM_RSA_PKCS_PSS, which p11-kit 0.24 forwards
    /// (it does not forward CKM_SHA256_RSA_PKCS_PSS).
    PssSha256,
}

/// Signs with one private key in the token, found by label.
#[derive(Clone)]
pub struct Signer {
    pool: TokenPool,
    key_label: String,
    scheme: RsaScheme,
}

impl Signer {
    /// A signer for the private key labelled `key_label`. Nothing is checked until
    /// [`Signer::sign`]; call it once at start-up to fail fast.
    pub fn new(pool: TokenPool, key_label: impl Into<String>, scheme: RsaScheme) -> Self {
        Self {
            pool,
            key_label: key_label.into(),
            scheme,
        }
    }

    /// Signs `message` (the whole signing input, e.g. a JWS's, not a digest).
    ///
    /// Returns the raw RSA signature, as long as the modulus: the JWS signature format.
    ///
    /// # Errors
    /// Token failures ([`Error::is_unavailable`]) and a missing key.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let label = self.key_label.clone();
        let scheme = self.scheme;
        let input = signing_input(scheme, message);
        self.pool
            .run(Operation::Sign, move |session| {
                sign_in_session(session, &label, scheme, &input)
            })
            .await
    }
}

/// What the token is given for `message`: the message itself for PKCS#1 v1.5 (the token
/// hashes), its SHA-256 digest for PSS (hashed here, see [`RsaScheme::PssSha256`]).
pub(crate) fn signing_input(scheme: RsaScheme, message: &[u8]) -> Vec<u8> {
    match scheme {
        RsaScheme::Pkcs1Sha256 => message.to_vec(),
        RsaScheme::PssSha256 => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)
            .as_ref()
            .to_vec(),
    }
}

/// Signs `input` (from [`signing_input`]) with the private RSA key labelled `label`.
pub(crate) fn sign_in_session(
    session: &cryptoki::session::Session,
    label: &str,
    scheme: RsaScheme,
    input: &[u8],
) -> Result<Vec<u8>> {
    let key = find_key(session, KeyClass::Private, label)?;
    let mechanism = match scheme {
        RsaScheme::Pkcs1Sha256 => Mechanism::Sha256RsaPkcs,
        RsaScheme::PssSha256 => Mechanism::RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        }),
    };
    session
        .sign(&mechanism, key, input)
        .map_err(Error::pkcs11(Operation::Sign))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TestKey, Token, token_tests};
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents};

    token_tests!(
        pkcs1_and_pss_signatures_verify_with_aws_lc,
        signing_with_an_unknown_label_reports_the_missing_key,
    );

    /// Token signatures checked by an independent implementation (aws-lc) against the
    /// exported public key.
    async fn pkcs1_and_pss_signatures_verify_with_aws_lc(token: Token) -> Result<()> {
        let key = TestKey::generate(token, crate::KeyUsage::Sign).await?;
        let public = crate::rsa_public_key(&key.pool, &key.label, crate::KeyUsage::Sign).await?;
        let components = RsaPublicKeyComponents {
            n: public.modulus(),
            e: public.exponent(),
        };
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
        for (scheme, params) in [
            (RsaScheme::Pkcs1Sha256, &RSA_PKCS1_2048_8192_SHA256),
            (RsaScheme::PssSha256, &RSA_PSS_2048_8192_SHA256),
        ] {
            let signature = Signer::new(key.pool.clone(), key.label.clone(), scheme)
                .sign(message)
                .await?;
            assert_eq!(signature.len(), 256);
            assert!(
                components.verify(params, message, &signature).is_ok(),
                "{scheme:?} must verify"
            );
            assert!(components.verify(params, b"other message", &signature).is_err());
        }
        key.destroy().await
    }

    async fn signing_with_an_unknown_label_reports_the_missing_key(token: Token) -> Result<()> {
        let key = TestKey::generate(token, crate::KeyUsage::Sign).await?;
        let signer = Signer::new(key.pool.clone(), "no-such-key", RsaScheme::Pkcs1Sha256);
        let error = signer.sign(b"x").await.expect_err("no such key");
        assert!(
            matches!(error, Error::KeyNotFound { ref label, .. } if label == "no-such-key"),
            "{error:?}"
        );
        key.destroy().await
    }
}
