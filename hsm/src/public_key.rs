//! Public halves of TLS keys — ECDSA P-256 and RSA — as certificates carry them: read from
//! the token or from a `PUBLIC KEY` PEM, as X.509 SubjectPublicKeyInfo.

use std::fmt;
use std::str::FromStr;

use cryptoki::object::{Attribute, AttributeType, KeyType};
use cryptoki::session::Session;

use crate::der;
use crate::error::{Error, Operation, Result};
use crate::key_policy::read_rsa_components;
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;

/// DER of the named-curve OID prime256v1 (1.2.840.10045.3.1.7), the CKA_EC_PARAMS value.
pub(crate) const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// SubjectPublicKeyInfo prefix for an uncompressed P-256 point (id-ecPublicKey, prime256v1,
/// BIT STRING of 66 bytes).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// AlgorithmIdentifier of rsaEncryption with NULL parameters.
const RSA_ALGORITHM_ID: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// The kinds of TLS key this crate generates and signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsKeyType {
    /// ECDSA on P-256 with SHA-256: small, fast in a token, accepted everywhere.
    #[default]
    EcdsaP256,
    /// RSA (generated with 2048 bits): RSA-PSS-SHA256 in TLS 1.3, PKCS#1 v1.5 also in TLS
    /// 1.2 and in certificates, for peers or HSMs without ECDSA.
    Rsa,
}

impl fmt::Display for TlsKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsKeyType::EcdsaP256 => "ecdsa-p256",
            TlsKeyType::Rsa => "rsa-2048",
        })
    }
}

/// A TLS key type this crate does not generate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLS key type {0:?} (expected ecdsa-p256 or rsa-2048)")]
pub struct UnknownTlsKeyType(pub String);

impl FromStr for TlsKeyType {
    type Err = UnknownTlsKeyType;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" => Ok(TlsKeyType::EcdsaP256),
            "rsa-2048" => Ok(TlsKeyType::Rsa),
            other => Err(UnknownTlsKeyType(other.to_owned())),
        }
    }
}

/// The public half of the TLS key labelled `label`, as certificates carry it.
pub async fn tls_public_key(pool: &TokenPool, label: &str) -> Result<PublicKeyInfo> {
    let label = label.to_owned();
    pool.run(Operation::ExportPublicKey, move |session| {
        read_public_key_info(session, &label)
    })
    .await
}

/// The private object (CKA_PRIVATE, so made by a logged-in user) says what type the key is
/// and, for RSA, carries the public half itself. An EC private key has no CKA_EC_POINT, so
/// that comes from the public object; a wrong one there fails the certificate check at
/// start-up (`keys_match`) rather than letting anyone else sign: the handshake signature
/// is always the private key's.
fn read_public_key_info(session: &Session, label: &str) -> Result<PublicKeyInfo> {
    let unusable = |reason| Error::UnusableKey {
        label: label.to_owned(),
        reason,
    };
    let private = find_key(session, KeyClass::Private, label)?;
    let key_type = session
        .get_attributes(private, &[AttributeType::KeyType])
        .map_err(Error::pkcs11(Operation::ReadAttributes))?
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        });
    match key_type {
        Some(KeyType::RSA) => {
            let public =
                match read_rsa_components(session, private)? {
                    Ok(public) => public,
                    // Tokens may leave the public exponent off private objects.
                    Err(_) => read_rsa_components(session, find_key(session, KeyClass::Public, label)?)?.map_err(
                        |reason| Error::KeyIgnored {
                            label: label.to_owned(),
                            reason,
                        },
                    )?,
                };
            let spki = public.spki_der().ok_or_else(|| unusable("invalid RSA public key"))?;
            Ok(PublicKeyInfo {
                key_type: TlsKeyType::Rsa,
                spki,
            })
        }
        Some(KeyType::EC) => {
            let key = find_key(session, KeyClass::Public, label)?;
            let point = session
                .get_attributes(key, &[AttributeType::EcPoint])
                .map_err(Error::pkcs11(Operation::ReadAttributes))?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .unwrap_or_default();
            // CKA_EC_POINT holds the point wrapped in a DER OCTET STRING (67 bytes for P-256).
            let point = match point.as_slice() {
                [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
                raw if raw.len() == 65 && raw[0] == 0x04 => raw,
                _ => return Err(unusable("not an uncompressed P-256 point")),
            };
            Ok(PublicKeyInfo {
                key_type: TlsKeyType::EcdsaP256,
                spki: [P256_SPKI_PREFIX.as_slice(), point].concat(),
            })
        }
        _ => Err(unusable("neither an RSA nor an EC key")),
    }
}

/// A public key of a supported type and its X.509 SubjectPublicKeyInfo DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    key_type: TlsKeyType,
    spki: Vec<u8>,
}

impl PublicKeyInfo {
    /// Parses a SubjectPublicKeyInfo (e.g. from a `PUBLIC KEY` PEM file) of a P-256 or RSA
    /// key; `None` for anything else. The key itself is checked too (a P-256 point on the
    /// curve, by aws-lc; an RSA key that is a modulus and an exponent), so that what is
    /// certified is a key.
    pub fn from_spki_der(spki: &[u8]) -> Option<Self> {
        let key_type = if spki.len() == P256_SPKI_PREFIX.len() + 65 && spki.starts_with(&P256_SPKI_PREFIX) {
            let point = &spki[P256_SPKI_PREFIX.len()..];
            aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1, point).ok()?;
            TlsKeyType::EcdsaP256
        } else {
            let (outer, rest) = der::value(spki, 0x30)?;
            let bits = outer.strip_prefix(&RSA_ALGORITHM_ID)?;
            let (key, after) = der::value(bits, 0x03)?;
            let (tag, _) = key.strip_prefix(&[0x00])?.split_first()?;
            if !rest.is_empty() || !after.is_empty() || *tag != 0x30 {
                return None;
            }
            // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }, nothing
            // after: the key's size and exponent are judged where the key is used.
            let (sequence, after) = der::value(&key[1..], 0x30)?;
            let (_, exponent) = der::value(sequence, 0x02)?;
            let (_, end) = der::value(exponent, 0x02)?;
            if !after.is_empty() || !end.is_empty() {
                return None;
            }
            TlsKeyType::Rsa
        };
        Some(Self {
            key_type,
            spki: spki.to_vec(),
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> TlsKeyType {
        self.key_type
    }

    /// SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The BIT STRING inside the SubjectPublicKeyInfo: the EC point, or the PKCS#1
    /// RSAPublicKey.
    pub fn subject_public_key(&self) -> &[u8] {
        match self.key_type {
            TlsKeyType::EcdsaP256 => &self.spki[P256_SPKI_PREFIX.len()..],
            TlsKeyType::Rsa => {
                let skip = der::value(&self.spki, 0x30)
                    .and_then(|(outer, _)| der::value(&outer[RSA_ALGORITHM_ID.len()..], 0x03))
                    .map_or(0, |(bits, _)| self.spki.len() - bits.len() + 1);
                &self.spki[skip..]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_infos_parse_p256_and_rsa_and_refuse_anything_else() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen");
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("parse");
        let spki = ec.public_key().as_der().expect("spki");
        let info = PublicKeyInfo::from_spki_der(spki.as_ref()).expect("P-256 SPKI");
        assert_eq!(info.key_type(), TlsKeyType::EcdsaP256);
        assert_eq!(info.subject_public_key(), ec.public_key().as_ref());

        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let spki = rsa.public_key().as_der().expect("spki");
        let info = PublicKeyInfo::from_spki_der(spki.as_ref()).expect("RSA SPKI");
        assert_eq!(info.key_type(), TlsKeyType::Rsa);
        assert_eq!(
            info.subject_public_key(),
            rsa.public_key().as_ref(),
            "PKCS#1 RSAPublicKey"
        );

        let mut trailing = spki.as_ref().to_vec();
        trailing.push(0);
        assert!(PublicKeyInfo::from_spki_der(&trailing).is_none());
        assert!(PublicKeyInfo::from_spki_der(&spki.as_ref()[..100]).is_none());
        assert!(PublicKeyInfo::from_spki_der(b"").is_none());
        assert!(PublicKeyInfo::from_spki_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
    }

    /// Found by fuzzing: well-formed wrappers around something that is not a key.
    #[test]
    fn an_spki_whose_key_is_not_a_key_is_refused() {
        let rsa_of_one_byte = [
            0x30, 0x13, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x03,
            0x02, 0x00, 0x30,
        ];
        assert!(PublicKeyInfo::from_spki_der(&rsa_of_one_byte).is_none());
        let mut zero_point = P256_SPKI_PREFIX.to_vec();
        zero_point.push(0x04);
        zero_point.extend([0u8; 64]);
        assert!(
            PublicKeyInfo::from_spki_der(&zero_point).is_none(),
            "a point off the curve"
        );
    }

    #[test]
    fn tls_key_type_names_round_trip() {
        for key_type in [TlsKeyType::EcdsaP256, TlsKeyType::Rsa] {
            assert_eq!(key_type.to_string().parse::<TlsKeyType>(), Ok(key_type));
        }
        assert!("ed25519".parse::<TlsKeyType>().is_err());
    }
}
