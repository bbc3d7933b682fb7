//! Generating key pairs inside the token with explicit, least-privilege attributes.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;

use crate::error::{Error, Operation, Result};
use crate::keys::{KeyClass, find_all, find_key, key_exists};
use crate::pool::TokenPool;
use crate::restrictions::{rsa_mechanisms, with_allowed_mechanisms};

/// What a generated private key may do; nothing else is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsage {
    /// CKA_SIGN on the private key, CKA_VERIFY on the public key (token signing keys).
    Sign,
    /// CKA_DECRYPT on the private key, CKA_ENCRYPT on the public key (vault's wrapping
    /// key, used with RSA-OAEP only: no CKA_UNWRAP/CKA_WRAP, nothing calls C_UnwrapKey).
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
/// its private components can neither be read nor wrapped out of the token. Both halves are
/// CKA_PRIVATE, so both are visible only after login, and CKA_MODIFIABLE false, so not even
/// a PIN holder can widen their usage; the private key's CKA_ALLOWED_MECHANISMS lists the
/// mechanisms `usage` is used with (see `restrictions`).
pub async fn generate_rsa_key_pair(pool: &TokenPool, spec: RsaKeySpec) -> Result<Generated> {
    if spec.bits < crate::export::MIN_RSA_BITS as u64 {
        return Err(Error::UnusableKey {
            label: spec.label,
            reason: "RSA keys must have at least 2048 bits",
        });
    }
    pool.run_writing(Operation::GenerateKeyPair, move |session| {
        if key_exists(session, KeyClass::Private, &spec.label)? {
            return Ok(Generated::AlreadyPresent);
        }
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Label(spec.label.as_bytes().to_vec()),
                Attribute::Id(spec.id.clone()),
                Attribute::Modifiable(false),
            ]
        };
        // Public halves too are CKA_PRIVATE: only a logged-in user can then create, change or
        // delete them, and a planted public object cannot pass for one.
        let mut public = common(true);
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
                    Attribute::Wrap(false),
                ]);
                private.extend([
                    Attribute::Sign(false),
                    Attribute::Decrypt(true),
                    Attribute::Unwrap(false),
                ]);
            }
        }
        with_allowed_mechanisms(&spec.label, rsa_mechanisms(spec.usage), |restriction| {
            let private = [private.as_slice(), restriction].concat();
            session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        })
        .map_err(Error::pkcs11(Operation::GenerateKeyPair))?;
        Ok(Generated::Created)
    })
    .await
}

/// Destroys the key pair labelled `label`: its protected private key and every public key
/// object with the label (the pair's own, and any planted next to it). A missing half is not
/// an error, so that retiring a key is idempotent.
pub async fn destroy_key_pair(pool: &TokenPool, label: &str) -> Result<()> {
    let label = label.to_owned();
    pool.run_writing(Operation::DestroyKeyPair, move |session| {
        let private = match find_key(session, KeyClass::Private, &label) {
            Ok(handle) => Some(handle),
            Err(Error::KeyNotFound { .. }) => None,
            Err(other) => return Err(other),
        };
        let public = find_all(session, KeyClass::Public, &label)?;
        for handle in private.into_iter().chain(public) {
            session
                .destroy_object(handle)
                .map_err(Error::pkcs11(Operation::DestroyKeyPair))?;
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

impl RsaPrivateComponents {
    /// Reads a PKCS#1 `RSAPrivateKey ::= SEQUENCE { version, n, e, d, p, q, dp, dq, qinv }`
    /// (`openssl rsa -traditional -outform DER`); `None` if `der` is anything else.
    pub fn from_pkcs1_der(der: &[u8]) -> Option<Self> {
        let (mut body, rest) = crate::der::value(der, 0x30)?;
        if !rest.is_empty() {
            return None;
        }
        // Zeroizing: whatever is not moved into the result is wiped, also on early return.
        let mut ints: Vec<zeroize::Zeroizing<Vec<u8>>> = Vec::with_capacity(9);
        while !body.is_empty() {
            let (value, rest) = crate::der::value(body, 0x02)?;
            // DER INTEGERs have at least one byte; every one here is non-negative.
            if value.first().is_none_or(|&b| b & 0x80 != 0) {
                return None;
            }
            let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
            ints.push(zeroize::Zeroizing::new(value[start..].to_vec()));
            body = rest;
        }
        // Nine INTEGERs, version 0 (two primes).
        if ints.len() != 9 || !ints[0].is_empty() {
            return None;
        }
        let mut take = |i: usize| std::mem::take(&mut *ints[i]);
        Some(Self {
            n: take(1),
            e: take(2),
            d: take(3),
            p: take(4),
            q: take(5),
            dp: take(6),
            dq: take(7),
            qinv: take(8),
        })
    }
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
/// material existed outside the token once. Usages and CKA_MODIFIABLE as for
/// [`generate_rsa_key_pair`].
pub async fn import_rsa_key_pair(pool: &TokenPool, spec: RsaKeySpec, key: RsaPrivateComponents) -> Result<Generated> {
    use cryptoki::object::{KeyType, ObjectClass};
    pool.run_writing(Operation::ImportKeyPair, move |session| {
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
            Attribute::Modifiable(false),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
            Attribute::Sign(sign),
            Attribute::Decrypt(decrypt),
            Attribute::Unwrap(false),
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
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Label(spec.label.as_bytes().to_vec()),
            Attribute::Id(spec.id.clone()),
            Attribute::Verify(sign),
            Attribute::Encrypt(decrypt),
            Attribute::Wrap(false),
            Attribute::Modulus(key.n.clone()),
            Attribute::PublicExponent(key.e.clone()),
        ];
        with_allowed_mechanisms(&spec.label, rsa_mechanisms(spec.usage), |restriction| {
            session.create_object(&[private.as_slice(), restriction].concat())
        })
        .map_err(Error::pkcs11(Operation::ImportKeyPair))?;
        session
            .create_object(&public)
            .map_err(Error::pkcs11(Operation::ImportKeyPair))?;
        Ok(Generated::Created)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Token, hsm_test_config, openssl, token_tests};
    use crate::{RsaScheme, Signer, rsa_public_key};
    use cryptoki::object::{AttributeInfo, AttributeType};

    token_tests!(an_imported_software_key_signs_in_the_token_and_cannot_be_read_back);

    /// A key made in software by OpenSSL, imported: the token signs with it (checked by
    /// aws-lc against OpenSSL's public key), and its private parts are then sensitive.
    async fn an_imported_software_key_signs_in_the_token_and_cannot_be_read_back(token: Token) -> Result<()> {
        let dir = crate::test_support::tempfile_dir("import");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pem = dir.join("key.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &pem.to_string_lossy(),
        ]);
        let der = openssl(&["rsa", "-in", &pem.to_string_lossy(), "-traditional", "-outform", "DER"]);
        std::fs::remove_dir_all(&dir).ok();
        let parse = || RsaPrivateComponents::from_pkcs1_der(&der).expect("PKCS#1");
        let (n, e) = {
            let key = parse();
            (key.n.clone(), key.e.clone())
        };

        let (pool, _login) = crate::test_support::connect(token, hsm_test_config(token)?).await?;
        let label = format!("imported-{}", std::process::id());
        let spec = || RsaKeySpec {
            label: label.clone(),
            id: vec![0x51],
            bits: 0,
            usage: KeyUsage::Sign,
        };
        assert_eq!(import_rsa_key_pair(&pool, spec(), parse()).await?, Generated::Created);
        assert_eq!(
            import_rsa_key_pair(&pool, spec(), parse()).await?,
            Generated::AlreadyPresent
        );
        // Imported, so not CKA_NEVER_EXTRACTABLE: still usable, being sensitive and not
        // extractable now.
        assert_eq!(
            rsa_public_key(&pool, &label, KeyUsage::Sign).await?.modulus(),
            n.as_slice()
        );

        let message = b"signed by an imported key";
        let signature = Signer::new(pool.clone(), label.clone(), RsaScheme::Pkcs1Sha256)
            .sign(message)
            .await?;
        let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
        assert!(
            public
                .verify(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, message, &signature)
                .is_ok()
        );

        let private_label = label.clone();
        let infos = pool
            .run(Operation::ReadAttributes, move |session| {
                let key = find_key(session, KeyClass::Private, &private_label)?;
                session
                    .get_attribute_info(key, &[AttributeType::PrivateExponent, AttributeType::Prime1])
                    .map_err(Error::pkcs11(Operation::ReadAttributes))
            })
            .await?;
        assert!(infos.iter().all(|i| matches!(i, AttributeInfo::Sensitive)), "{infos:?}");
        use crate::restrictions::tests::{fixed_to, read_restrictions};
        assert_eq!(
            read_restrictions(&pool, &label).await?,
            fixed_to(rsa_mechanisms(KeyUsage::Sign))
        );
        crate::destroy_key_pair(&pool, &label).await
    }

    #[test]
    fn pkcs1_parsing_refuses_anything_but_a_two_prime_rsa_private_key() {
        assert!(RsaPrivateComponents::from_pkcs1_der(b"").is_none());
        assert!(RsaPrivateComponents::from_pkcs1_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
        // Nine INTEGERs but version 1 (multi-prime).
        let mut body = vec![0x02, 0x01, 0x01];
        for _ in 0..8 {
            body.extend([0x02, 0x01, 0x05]);
        }
        let mut der = vec![0x30, body.len() as u8];
        der.extend(&body);
        assert!(RsaPrivateComponents::from_pkcs1_der(&der).is_none());
        der[4] = 0x00; // version 0
        let key = RsaPrivateComponents::from_pkcs1_der(&der).expect("well formed");
        assert_eq!((key.n.as_slice(), key.qinv.as_slice()), (&[5u8][..], &[5u8][..]));
        der.push(0); // trailing byte
        assert!(RsaPrivateComponents::from_pkcs1_der(&der).is_none());
    }

    /// Found by fuzzing: a zero-length INTEGER and a negative one were read as numbers.
    #[test]
    fn pkcs1_integers_that_are_empty_or_negative_are_refused() {
        let key_with = |version: &[u8], n: &[u8]| {
            let mut body = [version, n].concat();
            for _ in 0..7 {
                body.extend([0x02, 0x01, 0x05]);
            }
            [&[0x30, body.len() as u8][..], &body].concat()
        };
        assert!(RsaPrivateComponents::from_pkcs1_der(&key_with(&[0x02, 0x01, 0x00], &[0x02, 0x01, 0x05])).is_some());
        assert!(RsaPrivateComponents::from_pkcs1_der(&key_with(&[0x02, 0x00], &[0x02, 0x01, 0x05])).is_none());
        assert!(RsaPrivateComponents::from_pkcs1_der(&key_with(&[0x02, 0x01, 0x00], &[0x02, 0x01, 0x85])).is_none());
    }
}
