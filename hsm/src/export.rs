//! Reading public keys out of the token, for JWKS and for the other service.

use contract::jwk::RsaPublicKey;
use cryptoki::object::{Attribute, AttributeType, KeyType};

use crate::error::{Error, Result};
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;

/// Reads the RSA public key labelled `label` (the public half stored next to the
/// private key at generation).
pub async fn rsa_public_key(pool: &TokenPool, label: &str) -> Result<RsaPublicKey> {
    let label = label.to_owned();
    pool.run("export public key", move |session| {
        let key = find_key(session, KeyClass::Public, &label)?;
        let attributes = session
            .get_attributes(
                key,
                &[
                    AttributeType::KeyType,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
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
            label: label.clone(),
            reason,
        };
        if key_type != Some(KeyType::RSA) {
            return Err(unusable("not an RSA key"));
        }
        let (Some(n), Some(e)) = (n, e) else {
            return Err(unusable("modulus or exponent unreadable"));
        };
        RsaPublicKey::from_components(&n, &e).map_err(|_| unusable("RSA modulus below 2048 bits or invalid"))
    })
    .await
}
