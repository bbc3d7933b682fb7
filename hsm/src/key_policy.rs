//! Which RSA private-key objects may be used, and their public halves read from them.
//!
//! A session that never logged in may create and delete any object whose CKA_PRIVATE is
//! false (PKCS#11 "public objects"; SoftHSM2 2.6 lets `pkcs11-tool --write-object` do it
//! without a PIN, while Kryoptic 1.5 stores no token object without a login; either way
//! such objects exist, from a PIN holder or an older provisioning). So a key is trusted only through its private object — CKA_PRIVATE
//! true, which only a logged-in user can create — and only when that object is the
//! sensitive, non-extractable key with the one usage it is for.

use std::fmt;

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, Operation, Result};
use crate::export::RsaPublicComponents;
use crate::provision::KeyUsage;

/// Why a key object whose label belongs to a key was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IgnoreReason {
    /// A boolean attribute the decision needs could not be read (cryptoki drops
    /// unreadable attributes without an error, so a missing one fails the check).
    Unreadable {
        /// The attribute, e.g. `CKA_SENSITIVE`.
        attribute: &'static str,
    },
    /// Not an RSA key.
    NotRsa,
    /// CKA_PRIVATE is false: a session that never logged in can create such an object.
    NotPrivate,
    /// CKA_SENSITIVE is false: its private components can be read.
    NotSensitive,
    /// CKA_EXTRACTABLE is true: it can be wrapped out of the token.
    Extractable,
    /// Generated in the token (CKA_LOCAL) yet CKA_NEVER_EXTRACTABLE is false: it may have
    /// been wrapped out before it was made non-extractable.
    WasExtractable,
    /// Generated in the token (CKA_LOCAL) yet CKA_ALWAYS_SENSITIVE is false: its private
    /// components may have been read before it was made sensitive.
    WasNotSensitive,
    /// A usage attribute differs from what the key is for.
    WrongUsage {
        /// The attribute, e.g. `CKA_DECRYPT`.
        attribute: &'static str,
        /// The value the key's usage needs.
        needed: bool,
    },
    /// The modulus is below 2048 bits or the public components are malformed.
    InvalidRsaKey,
    /// The private object lacks CKA_PUBLIC_EXPONENT and no single protected (CKA_PRIVATE)
    /// public object with its label and modulus supplies it.
    NoProtectedPublicHalf,
    /// Another usable private key has the same label: which one is meant cannot be told.
    DuplicateLabel,
    /// A public object that is not the public half of a usable private key with its label.
    NotPublicHalfOfUsableKey,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::Unreadable { attribute } => write!(f, "{attribute} cannot be read"),
            IgnoreReason::NotRsa => f.write_str("not an RSA key"),
            IgnoreReason::NotPrivate => {
                f.write_str("CKA_PRIVATE is false (a session that never logged in can create it)")
            }
            IgnoreReason::NotSensitive => f.write_str("CKA_SENSITIVE is false"),
            IgnoreReason::Extractable => f.write_str("CKA_EXTRACTABLE is true"),
            IgnoreReason::WasExtractable => f.write_str("generated in the token but CKA_NEVER_EXTRACTABLE is false"),
            IgnoreReason::WasNotSensitive => f.write_str("generated in the token but CKA_ALWAYS_SENSITIVE is false"),
            IgnoreReason::WrongUsage { attribute, needed } => {
                write!(f, "{attribute} is {} but this key's usage needs {needed}", !needed)
            }
            IgnoreReason::InvalidRsaKey => f.write_str("RSA modulus below 2048 bits or malformed"),
            IgnoreReason::NoProtectedPublicHalf => {
                f.write_str("the private key lacks its public exponent and no single protected public key supplies it")
            }
            IgnoreReason::DuplicateLabel => f.write_str("another usable private key has the same label"),
            IgnoreReason::NotPublicHalfOfUsableKey => {
                f.write_str("not the public half of a usable private key with this label")
            }
        }
    }
}

/// What one private-key object says about itself; `None` where the token did not answer.
#[derive(Debug, Default, Clone)]
pub(crate) struct PrivateKeyFacts {
    key_type: Option<KeyType>,
    private: Option<bool>,
    sensitive: Option<bool>,
    extractable: Option<bool>,
    local: Option<bool>,
    never_extractable: Option<bool>,
    always_sensitive: Option<bool>,
    sign: Option<bool>,
    decrypt: Option<bool>,
    unwrap: Option<bool>,
    derive: Option<bool>,
    modulus: Option<Vec<u8>>,
    exponent: Option<Vec<u8>>,
}

impl PrivateKeyFacts {
    fn read(session: &Session, key: ObjectHandle) -> Result<Self> {
        let wanted = [
            AttributeType::KeyType,
            AttributeType::Private,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Local,
            AttributeType::NeverExtractable,
            AttributeType::AlwaysSensitive,
            AttributeType::Sign,
            AttributeType::Decrypt,
            AttributeType::Unwrap,
            AttributeType::Derive,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ];
        let mut facts = Self::default();
        for attribute in session
            .get_attributes(key, &wanted)
            .map_err(Error::pkcs11(Operation::ReadAttributes))?
        {
            match attribute {
                Attribute::KeyType(t) => facts.key_type = Some(t),
                Attribute::Private(b) => facts.private = Some(b),
                Attribute::Sensitive(b) => facts.sensitive = Some(b),
                Attribute::Extractable(b) => facts.extractable = Some(b),
                Attribute::Local(b) => facts.local = Some(b),
                Attribute::NeverExtractable(b) => facts.never_extractable = Some(b),
                Attribute::AlwaysSensitive(b) => facts.always_sensitive = Some(b),
                Attribute::Sign(b) => facts.sign = Some(b),
                Attribute::Decrypt(b) => facts.decrypt = Some(b),
                Attribute::Unwrap(b) => facts.unwrap = Some(b),
                Attribute::Derive(b) => facts.derive = Some(b),
                Attribute::Modulus(m) => facts.modulus = Some(m),
                Attribute::PublicExponent(e) => facts.exponent = Some(e),
                _ => {}
            }
        }
        Ok(facts)
    }

    /// Whether this object may be used as a private key for `usage`.
    fn judge(&self, usage: KeyUsage) -> std::result::Result<(), IgnoreReason> {
        if self.key_type != Some(KeyType::RSA) {
            return Err(IgnoreReason::NotRsa);
        }
        require(self.private, "CKA_PRIVATE", true, IgnoreReason::NotPrivate)?;
        require(self.sensitive, "CKA_SENSITIVE", true, IgnoreReason::NotSensitive)?;
        require(self.extractable, "CKA_EXTRACTABLE", false, IgnoreReason::Extractable)?;
        // An imported key existed outside the token once (see `import_rsa_key_pair`); for
        // a generated one these say whether it ever left or was read.
        let local = self.local.ok_or(IgnoreReason::Unreadable { attribute: "CKA_LOCAL" })?;
        if local {
            require(
                self.never_extractable,
                "CKA_NEVER_EXTRACTABLE",
                true,
                IgnoreReason::WasExtractable,
            )?;
            require(
                self.always_sensitive,
                "CKA_ALWAYS_SENSITIVE",
                true,
                IgnoreReason::WasNotSensitive,
            )?;
        }
        let usage_attributes: &[(Option<bool>, &'static str, bool)] = match usage {
            KeyUsage::Sign => &[
                (self.sign, "CKA_SIGN", true),
                (self.decrypt, "CKA_DECRYPT", false),
                (self.unwrap, "CKA_UNWRAP", false),
                (self.derive, "CKA_DERIVE", false),
            ],
            // CKA_UNWRAP is not checked: keys generated from now on have it false (nothing
            // calls C_UnwrapKey with them), but wrapping keys provisioned before have it
            // true, and their tokens keep them until rotation.
            KeyUsage::Decrypt => &[
                (self.decrypt, "CKA_DECRYPT", true),
                (self.sign, "CKA_SIGN", false),
                (self.derive, "CKA_DERIVE", false),
            ],
        };
        for &(value, attribute, needed) in usage_attributes {
            require(value, attribute, needed, IgnoreReason::WrongUsage { attribute, needed })?;
        }
        Ok(())
    }
}

fn require(
    value: Option<bool>,
    attribute: &'static str,
    needed: bool,
    otherwise: IgnoreReason,
) -> std::result::Result<(), IgnoreReason> {
    match value {
        Some(v) if v == needed => Ok(()),
        Some(_) => Err(otherwise),
        None => Err(IgnoreReason::Unreadable { attribute }),
    }
}

/// The public half of the private key `key` (labelled `label`) if the key may be used for
/// `usage`, or why not. Outer errors are the token's; the inner one is the object's.
pub(crate) fn usable_rsa_key(
    session: &Session,
    key: ObjectHandle,
    label: &str,
    usage: KeyUsage,
) -> Result<std::result::Result<RsaPublicComponents, IgnoreReason>> {
    let facts = PrivateKeyFacts::read(session, key)?;
    if let Err(reason) = facts.judge(usage) {
        return Ok(Err(reason));
    }
    match (&facts.modulus, &facts.exponent) {
        (Some(n), Some(e)) => Ok(RsaPublicComponents::new(n, e).ok_or(IgnoreReason::InvalidRsaKey)),
        (modulus, None) => protected_public_half(session, label, modulus.as_deref()),
        (None, Some(_)) => Ok(Err(IgnoreReason::Unreadable {
            attribute: "CKA_MODULUS",
        })),
    }
}

/// Tokens may leave CKA_PUBLIC_EXPONENT off private objects: then the public half comes
/// from the one public object with the label that only a logged-in user could have made,
/// and it must carry the private object's modulus.
fn protected_public_half(
    session: &Session,
    label: &str,
    modulus: Option<&[u8]>,
) -> Result<std::result::Result<RsaPublicComponents, IgnoreReason>> {
    let found = session
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(Error::pkcs11(Operation::FindKey))?;
    let [public] = found.as_slice() else {
        return Ok(Err(IgnoreReason::NoProtectedPublicHalf));
    };
    let components = match read_rsa_components(session, *public)? {
        Ok(components) => components,
        Err(_) => return Ok(Err(IgnoreReason::NoProtectedPublicHalf)),
    };
    let matches = modulus.is_none_or(|m| strip_leading_zeros(m) == components.modulus());
    Ok(if matches {
        Ok(components)
    } else {
        Err(IgnoreReason::NoProtectedPublicHalf)
    })
}

/// The RSA modulus and exponent of any key object (public, or private with both), or why
/// it has none this crate accepts. Outer errors are the token's.
pub(crate) fn read_rsa_components(
    session: &Session,
    key: ObjectHandle,
) -> Result<std::result::Result<RsaPublicComponents, IgnoreReason>> {
    let wanted = [
        AttributeType::KeyType,
        AttributeType::Modulus,
        AttributeType::PublicExponent,
    ];
    let (mut key_type, mut n, mut e) = (None, None, None);
    for attribute in session
        .get_attributes(key, &wanted)
        .map_err(Error::pkcs11(Operation::ReadAttributes))?
    {
        match attribute {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Modulus(m) => n = Some(m),
            Attribute::PublicExponent(x) => e = Some(x),
            _ => {}
        }
    }
    if key_type != Some(KeyType::RSA) {
        return Ok(Err(IgnoreReason::NotRsa));
    }
    Ok(match (n, e) {
        (Some(n), Some(e)) => RsaPublicComponents::new(&n, &e).ok_or(IgnoreReason::InvalidRsaKey),
        _ => Err(IgnoreReason::InvalidRsaKey),
    })
}

/// Big-endian integers as PKCS#11 may pad them, as [`RsaPublicComponents`] keeps them.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated RSA signing key as `generate_rsa_key_pair` makes it.
    fn signing_key() -> PrivateKeyFacts {
        PrivateKeyFacts {
            key_type: Some(KeyType::RSA),
            private: Some(true),
            sensitive: Some(true),
            extractable: Some(false),
            local: Some(true),
            never_extractable: Some(true),
            always_sensitive: Some(true),
            sign: Some(true),
            decrypt: Some(false),
            unwrap: Some(false),
            derive: Some(false),
            modulus: None,
            exponent: None,
        }
    }

    /// vault's wrapping key as `generate_rsa_key_pair` makes it now: no CKA_UNWRAP.
    fn wrapping_key() -> PrivateKeyFacts {
        PrivateKeyFacts {
            sign: Some(false),
            decrypt: Some(true),
            unwrap: Some(false),
            ..signing_key()
        }
    }

    #[test]
    fn provisioned_keys_pass_for_their_own_usage_only() {
        assert_eq!(signing_key().judge(KeyUsage::Sign), Ok(()));
        assert_eq!(wrapping_key().judge(KeyUsage::Decrypt), Ok(()));
        let provisioned_before = PrivateKeyFacts {
            unwrap: Some(true),
            ..wrapping_key()
        };
        assert_eq!(provisioned_before.judge(KeyUsage::Decrypt), Ok(()));
        assert_eq!(
            signing_key().judge(KeyUsage::Decrypt),
            Err(IgnoreReason::WrongUsage {
                attribute: "CKA_DECRYPT",
                needed: true
            })
        );
        assert_eq!(
            wrapping_key().judge(KeyUsage::Sign),
            Err(IgnoreReason::WrongUsage {
                attribute: "CKA_SIGN",
                needed: true
            })
        );
        let unwrap_only = PrivateKeyFacts {
            unwrap: Some(true),
            ..signing_key()
        };
        assert_eq!(
            unwrap_only.judge(KeyUsage::Sign),
            Err(IgnoreReason::WrongUsage {
                attribute: "CKA_UNWRAP",
                needed: false
            })
        );
        let deriving = PrivateKeyFacts {
            derive: Some(true),
            ..wrapping_key()
        };
        assert_eq!(
            deriving.judge(KeyUsage::Decrypt),
            Err(IgnoreReason::WrongUsage {
                attribute: "CKA_DERIVE",
                needed: false
            })
        );
    }

    #[test]
    fn unprotected_or_once_exposed_keys_are_refused() {
        let cases = [
            (
                PrivateKeyFacts {
                    private: Some(false),
                    ..signing_key()
                },
                IgnoreReason::NotPrivate,
            ),
            (
                PrivateKeyFacts {
                    sensitive: Some(false),
                    ..signing_key()
                },
                IgnoreReason::NotSensitive,
            ),
            (
                PrivateKeyFacts {
                    extractable: Some(true),
                    ..signing_key()
                },
                IgnoreReason::Extractable,
            ),
            (
                PrivateKeyFacts {
                    never_extractable: Some(false),
                    ..signing_key()
                },
                IgnoreReason::WasExtractable,
            ),
            (
                PrivateKeyFacts {
                    always_sensitive: Some(false),
                    ..signing_key()
                },
                IgnoreReason::WasNotSensitive,
            ),
            (
                PrivateKeyFacts {
                    key_type: Some(KeyType::EC),
                    ..signing_key()
                },
                IgnoreReason::NotRsa,
            ),
        ];
        for (facts, reason) in cases {
            assert_eq!(facts.judge(KeyUsage::Sign), Err(reason));
        }
    }

    #[test]
    fn an_imported_key_needs_only_to_be_sensitive_and_not_extractable_now() {
        let imported = PrivateKeyFacts {
            local: Some(false),
            never_extractable: Some(false),
            always_sensitive: Some(false),
            ..signing_key()
        };
        assert_eq!(imported.judge(KeyUsage::Sign), Ok(()));
        let extractable = PrivateKeyFacts {
            extractable: Some(true),
            ..imported
        };
        assert_eq!(extractable.judge(KeyUsage::Sign), Err(IgnoreReason::Extractable));
    }

    /// cryptoki leaves out what it cannot read; a missing boolean must not pass.
    #[test]
    fn a_boolean_the_token_did_not_return_fails_the_check() {
        let cases = [
            (
                PrivateKeyFacts {
                    private: None,
                    ..signing_key()
                },
                "CKA_PRIVATE",
            ),
            (
                PrivateKeyFacts {
                    local: None,
                    ..signing_key()
                },
                "CKA_LOCAL",
            ),
            (
                PrivateKeyFacts {
                    never_extractable: None,
                    ..signing_key()
                },
                "CKA_NEVER_EXTRACTABLE",
            ),
            (
                PrivateKeyFacts {
                    decrypt: None,
                    ..signing_key()
                },
                "CKA_DECRYPT",
            ),
        ];
        for (facts, attribute) in cases {
            assert_eq!(facts.judge(KeyUsage::Sign), Err(IgnoreReason::Unreadable { attribute }));
        }
    }
}
