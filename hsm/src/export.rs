//! Reading public keys out of the token, for JWKS and for the other service: from
//! protected private objects only (see [`crate::key_policy`]).

use aws_lc_rs::encoding::AsDer;

use crate::error::{Error, Operation, Result};
use crate::key_policy::{strip_leading_zeros, usable_rsa_key};
use crate::keys::{KeyClass, find_key};
use crate::pool::TokenPool;
use crate::provision::KeyUsage;

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
        let key = Self {
            modulus: strip_leading_zeros(modulus).to_vec(),
            exponent: strip_leading_zeros(exponent).to_vec(),
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

/// Reads the public half of the RSA key labelled `label` from its private object, if that
/// key may be used for `usage` (see [`crate::IgnoreReason`] for what is refused).
///
/// # Errors
/// [`Error::KeyNotFound`] when no protected (CKA_PRIVATE) private key has the label,
/// [`Error::KeyIgnored`] when one has but may not be used.
pub async fn rsa_public_key(pool: &TokenPool, label: &str, usage: KeyUsage) -> Result<RsaPublicComponents> {
    let label = label.to_owned();
    pool.run(Operation::ExportPublicKey, move |session| {
        let key = find_key(session, KeyClass::Private, &label)?;
        usable_rsa_key(session, key, &label, usage)?.map_err(|reason| Error::KeyIgnored {
            label: label.clone(),
            reason,
        })
    })
    .await
}
