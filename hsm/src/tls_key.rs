//! ECDSA P-256 keys in the token, and a rustls signing key backed by one: the TLS
//! handshake signature is made inside the token, so the TLS private key never exists in
//! the service.

use std::sync::Arc;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::sign::{Signer as TlsSigner, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::error::{Error, Result};
use crate::keys::{KeyClass, find_key, key_exists};
use crate::pool::TokenPool;
use crate::provision::Generated;

/// DER of the named-curve OID prime256v1 (1.2.840.10045.3.1.7), the CKA_EC_PARAMS value.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// SubjectPublicKeyInfo prefix for an uncompressed P-256 point (id-ecPublicKey, prime256v1,
/// BIT STRING of 66 bytes).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Generates an ECDSA P-256 key pair for signing (TLS, certificates) unless the label
/// exists: sensitive, never extractable, sign-only.
pub async fn generate_ec_p256_key_pair(pool: &TokenPool, label: &str, id: &[u8]) -> Result<Generated> {
    let (label, id) = (label.to_owned(), id.to_vec());
    pool.run("generate EC key pair", move |session| {
        if key_exists(session, KeyClass::Private, &label)? {
            return Ok(Generated::AlreadyPresent);
        }
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Verify(true),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
            Attribute::Sign(true),
            Attribute::Derive(false),
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(Error::pkcs11("generate EC key pair"))?;
        Ok(Generated::Created)
    })
    .await
}

/// The SubjectPublicKeyInfo DER of the P-256 public key labelled `label`.
///
/// CKA_EC_POINT holds the point wrapped in a DER OCTET STRING (67 bytes for P-256).
pub async fn ec_p256_spki(pool: &TokenPool, label: &str) -> Result<Vec<u8>> {
    let label = label.to_owned();
    pool.run("export EC public key", move |session| {
        let key = find_key(session, KeyClass::Public, &label)?;
        let point = session
            .get_attributes(key, &[AttributeType::EcPoint])
            .map_err(Error::pkcs11("read EC point"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .unwrap_or_default();
        let point = match point.as_slice() {
            [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
            raw if raw.len() == 65 && raw[0] == 0x04 => raw.to_vec(),
            _ => {
                return Err(Error::UnusableKey {
                    label: label.clone(),
                    reason: "not an uncompressed P-256 point",
                });
            }
        };
        Ok([P256_SPKI_PREFIX.as_slice(), &point].concat())
    })
    .await
}

/// A rustls signing key whose private half is the P-256 key labelled `label` in the token.
///
/// rustls calls [`TlsSigner::sign`] synchronously inside the handshake, so the token call
/// runs on the calling thread (one ECDSA operation, ~0.1 ms in SoftHSM) through the pool's
/// sessions; token failures fail the handshake.
#[derive(Clone)]
pub struct TokenTlsKey {
    pool: TokenPool,
    label: String,
    spki: Arc<Vec<u8>>,
}

impl std::fmt::Debug for TokenTlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTlsKey")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl TokenTlsKey {
    /// The key labelled `label`; reads its public half now, to fail fast.
    pub async fn load(pool: TokenPool, label: &str) -> Result<Self> {
        let spki = ec_p256_spki(&pool, label).await?;
        Ok(Self {
            pool,
            label: label.to_owned(),
            spki: Arc::new(spki),
        })
    }

    /// SubjectPublicKeyInfo DER of the key (what its certificate must carry).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// ECDSA P-256 over SHA-256 of `message`, DER-encoded (the TLS and X.509 format).
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)
            .as_ref()
            .to_vec();
        let label = self.label.clone();
        let raw = self.pool.run_sync(move |session| {
            let key = find_key(session, KeyClass::Private, &label)?;
            session
                .sign(&Mechanism::Ecdsa, key, &digest)
                .map_err(Error::pkcs11("ECDSA sign"))
        })?;
        raw_to_der(&raw).ok_or_else(|| Error::UnusableKey {
            label: self.label.clone(),
            reason: "not a P-256 signature",
        })
    }
}

impl SigningKey for TokenTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn TlsSigner>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn TlsSigner>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl TlsSigner for TokenTlsKey {
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, rustls::Error> {
        self.sign_sha256(message)
            .map_err(|e| rustls::Error::General(format!("token signature failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// r‖s (32 bytes each, as CKM_ECDSA returns) to DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let integer = |half: &[u8]| {
        let start = half.iter().position(|&b| b != 0).unwrap_or(half.len() - 1);
        let mut value = half[start..].to_vec();
        if value[0] & 0x80 != 0 {
            value.insert(0, 0);
        }
        let mut out = vec![0x02, value.len() as u8];
        out.extend(value);
        out
    };
    let body = [integer(&raw[..32]), integer(&raw[32..])].concat();
    let mut der = vec![0x30, body.len() as u8];
    der.extend(body);
    Some(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{hsm_test_config, module};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

    /// Token ECDSA signatures in TLS/DER form verify with aws-lc (an independent
    /// implementation) against the exported SubjectPublicKeyInfo's point.
    #[tokio::test]
    async fn tls_signatures_from_the_token_verify_with_aws_lc() -> Result<()> {
        let pool = TokenPool::connect(&module()?, hsm_test_config()?).await?;
        let label = format!("tls-{}", std::process::id());
        assert_eq!(
            generate_ec_p256_key_pair(&pool, &label, &[1]).await?,
            Generated::Created
        );
        assert_eq!(
            generate_ec_p256_key_pair(&pool, &label, &[1]).await?,
            Generated::AlreadyPresent
        );
        let key = TokenTlsKey::load(pool.clone(), &label).await?;
        let signer = key.choose_scheme(&[SignatureScheme::RSA_PSS_SHA256, SignatureScheme::ECDSA_NISTP256_SHA256]);
        let signer = signer.expect("P-256 offered");
        assert_eq!(signer.scheme(), SignatureScheme::ECDSA_NISTP256_SHA256);
        assert!(key.choose_scheme(&[SignatureScheme::RSA_PSS_SHA256]).is_none());
        let point = &key.spki()[P256_SPKI_PREFIX.len()..];
        let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point);
        for message in [b"TLS 1.3, server CertificateVerify".as_slice(), b"another transcript"] {
            let signature = signer.sign(message).map_err(|_| Error::UnusableKey {
                label: label.clone(),
                reason: "sign",
            })?;
            assert!(verifier.verify(message, &signature).is_ok());
            assert!(verifier.verify(b"tampered", &signature).is_err());
        }
        crate::destroy_key_pair(&pool, &label).await
    }

    #[test]
    fn raw_signatures_become_der_with_sign_padding_and_without_leading_zeros() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r: high bit set, needs a 0x00 pad
        raw[33] = 0x01; // s: one leading zero byte to strip
        let der = raw_to_der(&raw).expect("64 bytes");
        assert_eq!(usize::from(der[1]), der.len() - 2, "SEQUENCE length");
        assert_eq!(&der[2..5], &[0x02, 33, 0x00], "r padded to 33 bytes");
        assert_eq!(der[5], 0x80);
        assert_eq!(&der[37..40], &[0x02, 31, 0x01], "s without its leading zero");
        assert_eq!(der.len(), 2 + 35 + 33);
        assert!(raw_to_der(&[0u8; 63]).is_none());
    }
}
