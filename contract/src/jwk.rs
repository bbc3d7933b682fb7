//! RSA public keys as JWK (RFC 7517) and SPKI, with RFC 7638 thumbprints as `kid`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PublicKeyComponents;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Smallest modulus accepted anywhere in the system.
pub const MIN_RSA_BITS: usize = 2048;

/// One public key in JWK form. Only RSA keys are used in this system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    /// Key type; `RSA`.
    pub kty: String,
    /// Key id: the RFC 7638 thumbprint of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended algorithm, e.g. `RS256` or `RSA-OAEP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig` or `enc`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Modulus, base64url big-endian.
    pub n: String,
    /// Public exponent, base64url big-endian.
    pub e: String,
}

/// A JWK Set (RFC 7517 §5), as served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Why a public key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not an RSA JWK.
    #[error("key type {0:?} is not RSA")]
    NotRsa(String),
    /// `n` or `e` is not base64url.
    #[error("JWK member {0} is not base64url")]
    Encoding(&'static str),
    /// Modulus too small, or not a key at all.
    #[error("RSA modulus of {bits} bits is below the {MIN_RSA_BITS}-bit minimum")]
    TooSmall {
        /// Modulus length found.
        bits: usize,
    },
    /// The components do not form an RSA key.
    #[error("the modulus and exponent do not form a valid RSA public key")]
    Invalid,
}

/// An RSA public key: big-endian modulus and exponent without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaPublicKey {
    /// Builds a key from big-endian components, as read from CKA_MODULUS and
    /// CKA_PUBLIC_EXPONENT (which may carry leading zero bytes).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let strip = |b: &[u8]| {
            b.iter()
                .position(|&x| x != 0)
                .map_or_else(Vec::new, |i| b[i..].to_vec())
        };
        let key = Self {
            n: strip(n),
            e: strip(e),
        };
        let bits = key.modulus_bits();
        if bits < MIN_RSA_BITS {
            return Err(KeyError::TooSmall { bits });
        }
        if key.e.is_empty() {
            return Err(KeyError::Invalid);
        }
        Ok(key)
    }

    /// Parses an RSA JWK (its `kid`, `alg` and `use` are not checked here).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.kty != "RSA" {
            return Err(KeyError::NotRsa(jwk.kty.clone()));
        }
        let n = URL_SAFE_NO_PAD.decode(&jwk.n).map_err(|_| KeyError::Encoding("n"))?;
        let e = URL_SAFE_NO_PAD.decode(&jwk.e).map_err(|_| KeyError::Encoding("e"))?;
        Self::from_components(&n, &e)
    }

    /// Modulus length in bits.
    pub fn modulus_bits(&self) -> usize {
        self.n
            .first()
            .map_or(0, |top| (self.n.len() - 1) * 8 + (8 - top.leading_zeros() as usize))
    }

    /// Big-endian modulus.
    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    /// Big-endian public exponent.
    pub fn exponent(&self) -> &[u8] {
        &self.e
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&self.e),
            URL_SAFE_NO_PAD.encode(&self.n)
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The JWK for this key with `kid` = thumbprint.
    pub fn to_jwk(&self, alg: &str, use_: &str) -> Jwk {
        Jwk {
            kty: "RSA".into(),
            kid: Some(self.thumbprint()),
            alg: Some(alg.into()),
            use_: Some(use_.into()),
            n: URL_SAFE_NO_PAD.encode(&self.n),
            e: URL_SAFE_NO_PAD.encode(&self.e),
        }
    }

    /// X.509 SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Result<Vec<u8>, KeyError> {
        let components = PublicKeyComponents {
            n: self.n.as_slice(),
            e: self.e.as_slice(),
        };
        let der = components.as_der().map_err(|_| KeyError::Invalid)?;
        Ok(der.as_ref().to_vec())
    }

    /// SubjectPublicKeyInfo as a `PUBLIC KEY` PEM block.
    pub fn spki_pem(&self) -> Result<String, KeyError> {
        Ok(pem_encode("PUBLIC KEY", &self.spki_der()?))
    }
}

/// PEM-encodes `der` with 64-character lines (RFC 7468).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and its published thumbprint.
    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let jwk = Jwk {
            kty: "RSA".into(),
            kid: None,
            alg: None,
            use_: None,
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        };
        let key = RsaPublicKey::from_jwk(&jwk).expect("valid key");
        assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.modulus_bits(), 2048);
    }

    #[test]
    fn spki_der_round_trips_through_an_independent_parser() {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
        let components: PublicKeyComponents<Vec<u8>> = public.into();
        let key = RsaPublicKey::from_components(&[&[0u8][..], &components.n].concat(), &components.e).expect("key");
        let der = key.spki_der().expect("der");
        let expected = public.as_der().expect("aws-lc der");
        assert_eq!(der, expected.as_ref());
        assert!(key.spki_pem().expect("pem").starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }

    #[test]
    fn rejects_keys_below_2048_bits() {
        let err = RsaPublicKey::from_components(&[0xff; 128], &[1, 0, 1]).unwrap_err();
        assert!(matches!(err, KeyError::TooSmall { bits: 1024 }));
    }
}
