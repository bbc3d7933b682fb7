//! Reading public keys out of the token, for JWKS and for the other service.

use aws_lc_rs::encoding::AsDer;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, Operation, Result};
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;

/// Smallest RSA modulus this crate generates or hands out, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// An RSA public key as the token holds it: big-endian modulus and public exponent,
/// without leading zero bytes. What it is called elsewhere (a JWK, its `kid`) is the
/// caller's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicComponents {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl RsaPublicComponents {
    /// Components as read from CKA_MODULUS and CKA_PUBLIC_EXPONENT (which may carry leading
    /// zero bytes); `None` below [`MIN_RSA_BITS`] or without an exponent.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Option<Self> {
        let strip = |b: &[u8]| {
            b.iter()
                .position(|&x| x != 0)
                .map_or_else(Vec::new, |i| b[i..].to_vec())
        };
        let key = Self {
            modulus: strip(modulus),
            exponent: strip(exponent),
        };
        let bits = key.modulus.first().map_or(0, |top| {
            (key.modulus.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
        });
        (bits >= MIN_RSA_BITS && !key.exponent.is_empty()).then_some(key)
    }

    /// Big-endian modulus.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// Big-endian public exponent.
    pub fn exponent(&self) -> &[u8] {
        &self.exponent
    }

    /// X.509 SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Option<Vec<u8>> {
        let components = aws_lc_rs::rsa::PublicKeyComponents {
            n: self.modulus.as_slice(),
            e: self.exponent.as_slice(),
        };
        components.as_der().ok().map(|der| der.as_ref().to_vec())
    }
}

/// Reads the RSA public key labelled `label` (the public half stored next to the
/// private key at generation).
pub async fn rsa_public_key(pool: &TokenPool, label: &str) -> Result<RsaPublicComponents> {
    let label = label.to_owned();
    pool.run(Operation::ExportPublicKey, move |session| {
        let key = find_key(session, KeyClass::Public, &label)?;
        read_rsa_public(session, key, &label)
    })
    .await
}

/// A public key, its label and its generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledPublicKey {
    /// CKA_LABEL.
    pub label: String,
    /// 0 for `base`, N for `base.N`.
    pub generation: u64,
    /// The key.
    pub key: RsaPublicComponents,
}

/// The generation of `label` in a rotated key's sequence: `base` is 0, `base.N` is N,
/// anything else is not part of it.
pub fn key_generation(base: &str, label: &str) -> Option<u64> {
    if label == base {
        return Some(0);
    }
    label.strip_prefix(base)?.strip_prefix('.')?.parse().ok()
}

/// The label of generation `generation` of `base`.
pub fn generation_label(base: &str, generation: u64) -> String {
    if generation == 0 {
        base.to_owned()
    } else {
        format!("{base}.{generation}")
    }
}

/// Every generation of a rotated key (`manager-signing`, `manager-signing.1`, ...),
/// oldest first.
pub async fn rsa_public_keys_labelled(pool: &TokenPool, base: &str) -> Result<Vec<LabeledPublicKey>> {
    let base = base.to_owned();
    pool.run(Operation::ExportPublicKey, move |session| {
        let handles = session
            .find_objects(&[Attribute::Token(true), Attribute::Class(ObjectClass::PUBLIC_KEY)])
            .map_err(Error::pkcs11(Operation::FindKey))?;
        let mut keys = Vec::new();
        for handle in handles {
            let label = session
                .get_attributes(handle, &[AttributeType::Label])
                .map_err(Error::pkcs11(Operation::ReadAttributes))?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Label(bytes) => String::from_utf8(bytes).ok(),
                    _ => None,
                })
                .unwrap_or_default();
            if let Some(generation) = key_generation(&base, &label) {
                keys.push(LabeledPublicKey {
                    key: read_rsa_public(session, handle, &label)?,
                    generation,
                    label,
                });
            }
        }
        keys.sort_by_key(|k| k.generation);
        Ok(keys)
    })
    .await
}

pub(crate) fn read_rsa_public(session: &Session, key: ObjectHandle, label: &str) -> Result<RsaPublicComponents> {
    let wanted = [
        AttributeType::KeyType,
        AttributeType::Modulus,
        AttributeType::PublicExponent,
    ];
    let attributes = session
        .get_attributes(key, &wanted)
        .map_err(Error::pkcs11(Operation::ReadAttributes))?;
    let (mut key_type, mut n, mut e) = (None, None, None);
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Modulus(m) => n = Some(m),
            Attribute::PublicExponent(x) => e = Some(x),
            _ => {}
        }
    }
    let unusable = |reason| Error::UnusableKey {
        label: label.to_owned(),
        reason,
    };
    if key_type != Some(KeyType::RSA) {
        return Err(unusable("not an RSA key"));
    }
    let (Some(n), Some(e)) = (n, e) else {
        return Err(unusable("modulus or exponent unreadable"));
    };
    RsaPublicComponents::new(&n, &e).ok_or_else(|| unusable("RSA modulus below 2048 bits or invalid"))
}

#[cfg(test)]
mod tests {
    use super::{generation_label, key_generation};

    #[test]
    fn generations_are_read_from_labels() {
        assert_eq!(key_generation("manager-signing", "manager-signing"), Some(0));
        assert_eq!(key_generation("manager-signing", "manager-signing.12"), Some(12));
        assert_eq!(key_generation("manager-signing", "manager-signing.x"), None);
        assert_eq!(key_generation("manager-signing", "manager-signing-old"), None);
        assert_eq!(key_generation("manager-signing", "other"), None);
        assert_eq!(generation_label("k", 0), "k");
        assert_eq!(generation_label("k", 3), "k.3");
    }
}
