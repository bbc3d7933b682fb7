//! RS256 and PS256 signatures made inside the token.

use std::fmt;
use std::str::FromStr;

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};

use crate::error::{Error, Result};
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;

/// JWS signature algorithms the token signs with (RFC 7518 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, via CKM_SHA256_RSA_PKCS.
    Rs256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt. The digest is computed
    /// in software and signed with CKM_RSA_PKCS_PSS, which p11-kit 0.24 forwards
    /// (it does not forward CKM_SHA256_RSA_PKCS_PSS).
    Ps256,
}

impl SignatureAlgorithm {
    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            SignatureAlgorithm::Rs256 => "RS256",
            SignatureAlgorithm::Ps256 => "PS256",
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

/// An `alg` this crate cannot sign with.
#[derive(Debug, thiserror::Error)]
#[error("unsupported signature algorithm {0:?} (supported: RS256, PS256)")]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for SignatureAlgorithm {
    type Err = UnsupportedAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(SignatureAlgorithm::Rs256),
            "PS256" => Ok(SignatureAlgorithm::Ps256),
            other => Err(UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

/// Signs with one private key in the token, found by label.
#[derive(Clone)]
pub struct Signer {
    pool: TokenPool,
    key_label: String,
    algorithm: SignatureAlgorithm,
}

impl Signer {
    /// A signer for the private key labelled `key_label`. Nothing is checked until
    /// [`Signer::sign`]; call it once at start-up to fail fast.
    pub fn new(pool: TokenPool, key_label: impl Into<String>, algorithm: SignatureAlgorithm) -> Self {
        Self {
            pool,
            key_label: key_label.into(),
            algorithm,
        }
    }

    /// The algorithm every signature from this signer uses.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// Signs `message` (the whole JWS signing input, not a digest).
    ///
    /// Returns the raw RSA signature, as long as the modulus: the JWS signature format.
    ///
    /// # Errors
    /// Token failures ([`Error::is_unavailable`]) and a missing key.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let label = self.key_label.clone();
        let algorithm = self.algorithm;
        let input = signing_input(algorithm, message);
        self.pool
            .run("sign", move |session| {
                sign_in_session(session, &label, algorithm, &input)
            })
            .await
    }
}

/// What the token is given for `message`: the message itself for RS256 (the token hashes),
/// its SHA-256 digest for PS256 (hashed here, see [`SignatureAlgorithm::Ps256`]).
pub(crate) fn signing_input(algorithm: SignatureAlgorithm, message: &[u8]) -> Vec<u8> {
    match algorithm {
        SignatureAlgorithm::Rs256 => message.to_vec(),
        SignatureAlgorithm::Ps256 => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)
            .as_ref()
            .to_vec(),
    }
}

/// Signs `input` (from [`signing_input`]) with the private RSA key labelled `label`.
pub(crate) fn sign_in_session(
    session: &cryptoki::session::Session,
    label: &str,
    algorithm: SignatureAlgorithm,
    input: &[u8],
) -> Result<Vec<u8>> {
    let key = find_key(session, KeyClass::Private, label)?;
    let mechanism = match algorithm {
        SignatureAlgorithm::Rs256 => Mechanism::Sha256RsaPkcs,
        SignatureAlgorithm::Ps256 => Mechanism::RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        }),
    };
    session.sign(&mechanism, key, input).map_err(Error::pkcs11("sign"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestKey;
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents};

    /// Token signatures checked by an independent implementation (aws-lc) against the
    /// exported public key.
    #[tokio::test]
    async fn rs256_and_ps256_signatures_verify_with_aws_lc() -> Result<()> {
        let key = TestKey::generate(crate::KeyUsage::Sign).await?;
        let public = crate::rsa_public_key(&key.pool, &key.label).await?;
        let components = RsaPublicKeyComponents {
            n: public.modulus(),
            e: public.exponent(),
        };
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
        for (algorithm, params) in [
            (SignatureAlgorithm::Rs256, &RSA_PKCS1_2048_8192_SHA256),
            (SignatureAlgorithm::Ps256, &RSA_PSS_2048_8192_SHA256),
        ] {
            let signature = Signer::new(key.pool.clone(), key.label.clone(), algorithm)
                .sign(message)
                .await?;
            assert_eq!(signature.len(), 256);
            assert!(
                components.verify(params, message, &signature).is_ok(),
                "{algorithm} must verify"
            );
            assert!(components.verify(params, b"other message", &signature).is_err());
        }
        key.destroy().await
    }

    #[tokio::test]
    async fn signing_with_an_unknown_label_reports_the_missing_key() -> Result<()> {
        let key = TestKey::generate(crate::KeyUsage::Sign).await?;
        let signer = Signer::new(key.pool.clone(), "no-such-key", SignatureAlgorithm::Rs256);
        let error = signer.sign(b"x").await.expect_err("no such key");
        assert!(
            matches!(error, Error::KeyNotFound { ref label, .. } if label == "no-such-key"),
            "{error:?}"
        );
        key.destroy().await
    }

    #[test]
    fn algorithm_names_round_trip_and_unknown_ones_are_refused() {
        for algorithm in [SignatureAlgorithm::Rs256, SignatureAlgorithm::Ps256] {
            assert_eq!(
                algorithm.jose_name().parse::<SignatureAlgorithm>().ok(),
                Some(algorithm)
            );
        }
        assert!("HS256".parse::<SignatureAlgorithm>().is_err());
        assert!("none".parse::<SignatureAlgorithm>().is_err());
    }
}
