//! Reading public keys out of the token, for JWKS and for the other service.

use contract::jwk::RsaPublicKey;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, Result};
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;

/// Reads the RSA public key labelled `label` (the public half stored next to the
/// private key at generation).
pub async fn rsa_public_key(pool: &TokenPool, label: &str) -> Result<RsaPublicKey> {
    let label = label.to_owned();
    pool.run("export public key", move |session| {
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
    pub key: RsaPublicKey,
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
    pool.run("list public keys", move |session| {
        let handles = session
            .find_objects(&[Attribute::Token(true), Attribute::Class(ObjectClass::PUBLIC_KEY)])
            .map_err(Error::pkcs11("find keys"))?;
        let mut keys = Vec::new();
        for handle in handles {
            let label = session
                .get_attributes(handle, &[AttributeType::Label])
                .map_err(Error::pkcs11("read label"))?
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

pub(crate) fn read_rsa_public(session: &Session, key: ObjectHandle, label: &str) -> Result<RsaPublicKey> {
    let wanted = [
        AttributeType::KeyType,
        AttributeType::Modulus,
        AttributeType::PublicExponent,
    ];
    let attributes = session
        .get_attributes(key, &wanted)
        .map_err(Error::pkcs11("read public key"))?;
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
    RsaPublicKey::from_components(&n, &e).map_err(|_| unusable("RSA modulus below 2048 bits or invalid"))
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
