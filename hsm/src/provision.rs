//! Generating key pairs inside the token with explicit, least-privilege attributes.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;

use crate::error::{Error, Result};
use crate::keys::{KeyClass, find_key, key_exists};
use crate::pool::TokenPool;

/// What a generated private key may do; nothing else is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsage {
    /// CKA_SIGN on the private key, CKA_VERIFY on the public key (token signing keys).
    Sign,
    /// CKA_DECRYPT and CKA_UNWRAP on the private key, CKA_ENCRYPT and CKA_WRAP on the
    /// public key (vault's wrapping key).
    Decrypt,
}

/// A key pair to generate.
#[derive(Debug, Clone)]
pub struct RsaKeySpec {
    /// CKA_LABEL of both halves.
    pub label: String,
    /// CKA_ID of both halves.
    pub id: Vec<u8>,
    /// Modulus length; at least 2048.
    pub bits: u64,
    /// Allowed operations.
    pub usage: KeyUsage,
}

/// What [`generate_rsa_key_pair`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// A new key pair now exists.
    Created,
    /// A private key with this label already existed; nothing was changed.
    AlreadyPresent,
}

/// Generates an RSA key pair in the token unless one with the label exists.
///
/// The private key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE and not CKA_EXTRACTABLE:
/// its private components can neither be read nor wrapped out of the token.
pub async fn generate_rsa_key_pair(pool: &TokenPool, spec: RsaKeySpec) -> Result<Generated> {
    if spec.bits < contract::jwk::MIN_RSA_BITS as u64 {
        return Err(Error::UnusableKey {
            label: spec.label,
            reason: "RSA keys must have at least 2048 bits",
        });
    }
    pool.run("generate key pair", move |session| {
        if key_exists(session, KeyClass::Private, &spec.label)? {
            return Ok(Generated::AlreadyPresent);
        }
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Label(spec.label.as_bytes().to_vec()),
                Attribute::Id(spec.id.clone()),
            ]
        };
        let mut public = common(false);
        public.extend([
            Attribute::ModulusBits(spec.bits.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ]);
        let mut private = common(true);
        private.extend([
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(false),
        ]);
        match spec.usage {
            KeyUsage::Sign => {
                public.extend([
                    Attribute::Verify(true),
                    Attribute::Encrypt(false),
                    Attribute::Wrap(false),
                ]);
                private.extend([
                    Attribute::Sign(true),
                    Attribute::Decrypt(false),
                    Attribute::Unwrap(false),
                ]);
            }
            KeyUsage::Decrypt => {
                public.extend([
                    Attribute::Verify(false),
                    Attribute::Encrypt(true),
                    Attribute::Wrap(true),
                ]);
                private.extend([
                    Attribute::Sign(false),
                    Attribute::Decrypt(true),
                    Attribute::Unwrap(true),
                ]);
            }
        }
        session
            .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
            .map_err(Error::pkcs11("generate key pair"))?;
        Ok(Generated::Created)
    })
    .await
}

/// Destroys both halves of the key pair labelled `label`; a missing half is not an error,
/// so that retiring a key is idempotent.
pub async fn destroy_key_pair(pool: &TokenPool, label: &str) -> Result<()> {
    let label = label.to_owned();
    pool.run("destroy key pair", move |session| {
        for class in [KeyClass::Private, KeyClass::Public] {
            match find_key(session, class, &label) {
                Ok(handle) => session.destroy_object(handle).map_err(Error::pkcs11("destroy key"))?,
                Err(Error::KeyNotFound { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(())
    })
    .await
}

/// The components of an RSA private key, big-endian, as in PKCS#1 `RSAPrivateKey`.
pub struct RsaPrivateComponents {
    /// Modulus.
    pub n: Vec<u8>,
    /// Public exponent.
    pub e: Vec<u8>,
    /// Private exponent.
    pub d: Vec<u8>,
    /// First prime.
    pub p: Vec<u8>,
    /// Second prime.
    pub q: Vec<u8>,
    /// d mod (p-1).
    pub dp: Vec<u8>,
    /// d mod (q-1).
    pub dq: Vec<u8>,
    /// q^-1 mod p.
    pub qinv: Vec<u8>,
}

impl Drop for RsaPrivateComponents {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for part in [
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.qinv,
        ] {
            part.zeroize();
        }
    }
}

/// Imports an RSA key pair made elsewhere (migration from software keys, or a test that
/// needs to know the secret it looks for) as sensitive, non-extractable token objects.
/// Unlike a generated key it is not CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE: its
/// material existed outside the token once.
pub async fn import_rsa_key_pair(pool: &TokenPool, spec: RsaKeySpec, key: RsaPrivateComponents) -> Result<Generated> {
    use cryptoki::object::{KeyType, ObjectClass};
    pool.run("import key pair", move |session| {
        if key_exists(session, KeyClass::Private, &spec.label)? {
            return Ok(Generated::AlreadyPresent);
        }
        let (sign, decrypt) = match spec.usage {
            KeyUsage::Sign => (true, false),
            KeyUsage::Decrypt => (false, true),
        };
        let private = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
            Attribute::Sign(sign),
            Attribute::Decrypt(decrypt),
            Attribute::Unwrap(decrypt),
            Attribute::Derive(false),
            Attribute::Modulus(key.n.clone()),
            Attribute::PublicExponent(key.e.clone()),
            Attribute::PrivateExponent(key.d.clone()),
            Attribute::Prime1(key.p.clone()),
            Attribute::Prime2(key.q.clone()),
            Attribute::Exponent1(key.dp.clone()),
            Attribute::Exponent2(key.dq.clone()),
            Attribute::Coefficient(key.qinv.clone()),
        ];
        let public = [
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
            Attribute::Verify(sign),
            Attribute::Encrypt(decrypt),
            Attribute::Wrap(decrypt),
            Attribute::Modulus(key.n.clone()),
            Attribute::PublicExponent(key.e.clone()),
        ];
        session
            .create_object(&private)
            .map_err(Error::pkcs11("import private key"))?;
        session
            .create_object(&public)
            .map_err(Error::pkcs11("import public key"))?;
        Ok(Generated::Created)
    })
    .await
}
