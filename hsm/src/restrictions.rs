//! What a key is fixed to when it is made: CKA_MODIFIABLE false, and CKA_ALLOWED_MECHANISMS
//! listing exactly the mechanisms this crate uses it with.
//!
//! With CKA_MODIFIABLE true a PIN holder could widen a key after the fact (give a signing
//! key CKA_DECRYPT, say) with C_SetAttributeValue; the allowed mechanisms keep a key to its
//! scheme even where its usage flag would allow more (no raw CKM_RSA_PKCS decryption, no
//! SHA-1 signatures).

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::object::Attribute;

use crate::error::rv_of;
use crate::provision::KeyUsage;

/// RSA signing keys, and RSA TLS keys (which sign through the same `sign_in_session`):
/// [`crate::RsaScheme::Pkcs1Sha256`] uses CKM_SHA256_RSA_PKCS, [`crate::RsaScheme::PssSha256`]
/// CKM_RSA_PKCS_PSS over a SHA-256 digest.
const RSA_SIGN: &[MechanismType] = &[MechanismType::SHA256_RSA_PKCS, MechanismType::RSA_PKCS_PSS];

/// vault's wrapping key: RSA-OAEP decryption ([`crate::Decrypter`], SHA-1 or SHA-256).
const RSA_DECRYPT: &[MechanismType] = &[MechanismType::RSA_PKCS_OAEP];

/// ECDSA P-256 TLS and CA keys: CKM_ECDSA over a SHA-256 digest made in software (SoftHSM
/// 2.6.1 has no CKM_ECDSA_SHA256).
pub(crate) const ECDSA_SIGN: &[MechanismType] = &[MechanismType::ECDSA];

/// The mechanisms an RSA private key with `usage` is used with.
pub(crate) fn rsa_mechanisms(usage: KeyUsage) -> &'static [MechanismType] {
    match usage {
        KeyUsage::Sign => RSA_SIGN,
        KeyUsage::Decrypt => RSA_DECRYPT,
    }
}

/// Runs `create` (a key generation or an object creation) with the private key's extra
/// attributes: CKA_ALLOWED_MECHANISMS = `allowed`. A token that does not know the attribute
/// answers CKR_ATTRIBUTE_TYPE_INVALID (it is PKCS#11 v2.40); then `create` runs once more
/// without it and a warning names the key. The key is still CKA_MODIFIABLE false and has
/// one usage: the list narrows a usage to a scheme, it is not what grants or denies one.
pub(crate) fn with_allowed_mechanisms<T>(
    label: &str,
    allowed: &[MechanismType],
    create: impl Fn(&[Attribute]) -> Result<T, CkError>,
) -> Result<T, CkError> {
    match create(&[Attribute::AllowedMechanisms(allowed.to_vec())]) {
        Err(e) if rv_of(&e) == Some(RvError::AttributeTypeInvalid) => {
            tracing::warn!(
                label,
                "the token does not support CKA_ALLOWED_MECHANISMS; creating the key without it"
            );
            create(&[])
        }
        other => other,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
    use cryptoki::object::{AttributeType, ObjectHandle};
    use cryptoki::session::Session;

    use super::*;
    use crate::error::{Error, Operation, Result};
    use crate::keys::{KeyClass, find_key};
    use crate::pool::TokenPool;
    use crate::test_support::{TestKey, Token, connect, hsm_test_config, rand_suffix, token_tests};
    use crate::{Generated, TlsKeyType, generate_tls_key_pair};

    /// CKA_MODIFIABLE of the private and the public half, and the private half's
    /// CKA_ALLOWED_MECHANISMS, of the key pair labelled `label`.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Restrictions {
        pub(crate) private_modifiable: Option<bool>,
        pub(crate) public_modifiable: Option<bool>,
        pub(crate) allowed: Option<Vec<MechanismType>>,
    }

    fn read_bool(session: &Session, key: ObjectHandle, wanted: AttributeType) -> Result<Option<bool>> {
        let attributes = session
            .get_attributes(key, &[wanted])
            .map_err(Error::pkcs11(Operation::ReadAttributes))?;
        Ok(attributes.into_iter().find_map(|a| match a {
            Attribute::Modifiable(v)
            | Attribute::Sensitive(v)
            | Attribute::Sign(v)
            | Attribute::Verify(v)
            | Attribute::Decrypt(v)
            | Attribute::Unwrap(v)
            | Attribute::Wrap(v)
            | Attribute::Encrypt(v) => Some(v),
            _ => None,
        }))
    }

    pub(crate) async fn read_restrictions(pool: &TokenPool, label: &str) -> Result<Restrictions> {
        let label = label.to_owned();
        pool.run(Operation::ReadAttributes, move |session| {
            let private = find_key(session, KeyClass::Private, &label)?;
            let public = find_key(session, KeyClass::Public, &label)?;
            let allowed = session
                .get_attributes(private, &[AttributeType::AllowedMechanisms])
                .map_err(Error::pkcs11(Operation::ReadAttributes))?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::AllowedMechanisms(m) => Some(sorted(m)),
                    _ => None,
                });
            Ok(Restrictions {
                private_modifiable: read_bool(session, private, AttributeType::Modifiable)?,
                public_modifiable: read_bool(session, public, AttributeType::Modifiable)?,
                allowed,
            })
        })
        .await
    }

    /// Tokens may return the list in their own order (SoftHSM keeps it as a set).
    fn sorted(mut mechanisms: Vec<MechanismType>) -> Vec<MechanismType> {
        mechanisms.sort_by_key(|m| u64::from(*m));
        mechanisms
    }

    pub(crate) fn fixed_to(allowed: &[MechanismType]) -> Restrictions {
        Restrictions {
            private_modifiable: Some(false),
            public_modifiable: Some(false),
            allowed: Some(sorted(allowed.to_vec())),
        }
    }

    /// One direct token call on a private key, as a PIN holder could make it.
    type Attempt = fn(&Session, ObjectHandle) -> std::result::Result<(), CkError>;

    /// The PKCS#11 return value of what a logged-in session (a PIN holder using the token
    /// directly, not through this crate) gets for `attempt` on the private key `label`.
    async fn attempt_on_private_key(pool: &TokenPool, label: &str, attempt: Attempt) -> Result<Option<RvError>> {
        let label = label.to_owned();
        pool.run(Operation::ReadAttributes, move |session| {
            let key = find_key(session, KeyClass::Private, &label)?;
            Ok(attempt(session, key).err().map(|e| rv_of(&e).expect("a PKCS#11 error")))
        })
        .await
    }

    token_tests!(
        generated_keys_are_unmodifiable_and_limited_to_the_mechanisms_they_are_used_with,
        a_pin_holder_cannot_widen_a_generated_keys_usage,
        a_mechanism_outside_the_allowed_list_is_refused,
        generated_keys_spell_out_every_usage_where_the_tokens_defaults_differ,
    );

    async fn generated_keys_are_unmodifiable_and_limited_to_the_mechanisms_they_are_used_with(
        token: Token,
    ) -> Result<()> {
        let signing = TestKey::generate(token, KeyUsage::Sign).await?;
        assert_eq!(
            read_restrictions(&signing.pool, &signing.label).await?,
            fixed_to(&[MechanismType::SHA256_RSA_PKCS, MechanismType::RSA_PKCS_PSS])
        );
        signing.destroy().await?;

        let wrapping = TestKey::generate(token, KeyUsage::Decrypt).await?;
        assert_eq!(
            read_restrictions(&wrapping.pool, &wrapping.label).await?,
            fixed_to(&[MechanismType::RSA_PKCS_OAEP])
        );
        // vault only decrypts with it: no CKA_UNWRAP, and no CKA_WRAP on the public half.
        let label = wrapping.label.clone();
        let (unwrap, wrap) = wrapping
            .pool
            .run(Operation::ReadAttributes, move |session| {
                let private = find_key(session, KeyClass::Private, &label)?;
                let public = find_key(session, KeyClass::Public, &label)?;
                Ok((
                    read_bool(session, private, AttributeType::Unwrap)?,
                    read_bool(session, public, AttributeType::Wrap)?,
                ))
            })
            .await?;
        assert_eq!((unwrap, wrap), (Some(false), Some(false)));
        wrapping.destroy().await?;

        let (pool, _login) = connect(token, hsm_test_config(token)?).await?;
        for (key_type, allowed) in [(TlsKeyType::EcdsaP256, ECDSA_SIGN), (TlsKeyType::Rsa, RSA_SIGN)] {
            let label = format!("fixed-tls-{key_type:?}-{}-{:x}", std::process::id(), rand_suffix());
            assert_eq!(
                generate_tls_key_pair(&pool, &label, &[4], key_type).await?,
                Generated::Created
            );
            assert_eq!(
                read_restrictions(&pool, &label).await?,
                fixed_to(allowed),
                "{key_type:?}"
            );
            crate::destroy_key_pair(&pool, &label).await?;
        }
        Ok(())
    }

    /// The attack CKA_MODIFIABLE=false closes: with the PIN, a generated key's usage cannot
    /// be widened, nor its mechanism list, nor the flag itself. SoftHSM2 2.6.1 and Kryoptic
    /// 1.5 answer CKR_ACTION_PROHIBITED to each.
    async fn a_pin_holder_cannot_widen_a_generated_keys_usage(token: Token) -> Result<()> {
        let signing = TestKey::generate(token, KeyUsage::Sign).await?;
        let attempts: [Attempt; 3] = [
            |session, key| session.update_attributes(key, &[Attribute::Decrypt(true)]),
            |session, key| {
                session.update_attributes(key, &[Attribute::AllowedMechanisms(vec![MechanismType::SHA1_RSA_PKCS])])
            },
            |session, key| session.update_attributes(key, &[Attribute::Modifiable(true)]),
        ];
        for attempt in attempts {
            let refused = attempt_on_private_key(&signing.pool, &signing.label, attempt).await?;
            assert_eq!(refused, Some(RvError::ActionProhibited));
        }
        assert_eq!(
            read_restrictions(&signing.pool, &signing.label).await?,
            fixed_to(RSA_SIGN),
            "unchanged"
        );
        let label = signing.label.clone();
        let decrypts = signing
            .pool
            .run(Operation::ReadAttributes, move |session| {
                read_bool(
                    session,
                    find_key(session, KeyClass::Private, &label)?,
                    AttributeType::Decrypt,
                )
            })
            .await?;
        assert_eq!(decrypts, Some(false), "CKA_DECRYPT unchanged");
        signing.destroy().await?;

        let wrapping = TestKey::generate(token, KeyUsage::Decrypt).await?;
        let refused = attempt_on_private_key(&wrapping.pool, &wrapping.label, |session, key| {
            session.update_attributes(key, &[Attribute::Sign(true)])
        })
        .await?;
        assert_eq!(refused, Some(RvError::ActionProhibited));
        let refused = attempt_on_private_key(&wrapping.pool, &wrapping.label, |session, key| {
            session.update_attributes(key, &[Attribute::Unwrap(true)])
        })
        .await?;
        assert_eq!(refused, Some(RvError::ActionProhibited));
        wrapping.destroy().await
    }

    /// A usage flag allows a family of mechanisms; the list keeps the key to the one scheme
    /// it is used with. SoftHSM2 2.6.1 and Kryoptic 1.5 answer CKR_MECHANISM_INVALID at
    /// C_SignInit / C_DecryptInit, while the listed mechanisms still work.
    async fn a_mechanism_outside_the_allowed_list_is_refused(token: Token) -> Result<()> {
        let signing = TestKey::generate(token, KeyUsage::Sign).await?;
        let attempts: [Attempt; 3] = [
            |session, key| session.sign(&Mechanism::Sha1RsaPkcs, key, b"message").map(drop),
            // PKCS#1 v1.5 over a caller-made DigestInfo: any hash, not only SHA-256.
            |session, key| session.sign(&Mechanism::RsaPkcs, key, &[0u8; 35]).map(drop),
            |session, key| {
                let params = PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: 32.into(),
                };
                session
                    .sign(&Mechanism::Sha256RsaPkcsPss(params), key, b"message")
                    .map(drop)
            },
        ];
        for attempt in attempts {
            let refused = attempt_on_private_key(&signing.pool, &signing.label, attempt).await?;
            assert_eq!(refused, Some(RvError::MechanismInvalid));
        }
        for scheme in [crate::RsaScheme::Pkcs1Sha256, crate::RsaScheme::PssSha256] {
            let signature = crate::Signer::new(signing.pool.clone(), signing.label.clone(), scheme)
                .sign(b"message")
                .await?;
            assert_eq!(signature.len(), 256, "{scheme:?} still signs");
        }
        signing.destroy().await?;

        // Raw PKCS#1 v1.5 decryption is the padding oracle OAEP avoids.
        let wrapping = TestKey::generate(token, KeyUsage::Decrypt).await?;
        let refused = attempt_on_private_key(&wrapping.pool, &wrapping.label, |session, key| {
            session.decrypt(&Mechanism::RsaPkcs, key, &[1u8; 256]).map(drop)
        })
        .await?;
        assert_eq!(refused, Some(RvError::MechanismInvalid));
        wrapping.destroy().await
    }

    /// The usage flags of a key pair, read back.
    #[derive(Debug, PartialEq, Eq)]
    struct Usage {
        /// The private half's CKA_SENSITIVE, CKA_SIGN, CKA_DECRYPT and CKA_UNWRAP.
        private: [Option<bool>; 4],
        /// The public half's CKA_VERIFY, CKA_ENCRYPT and CKA_WRAP.
        public: [Option<bool>; 3],
    }

    fn read_usage(session: &Session, private: ObjectHandle, public: ObjectHandle) -> Result<Usage> {
        let [sensitive, sign, decrypt, unwrap] = [
            AttributeType::Sensitive,
            AttributeType::Sign,
            AttributeType::Decrypt,
            AttributeType::Unwrap,
        ]
        .map(|wanted| read_bool(session, private, wanted));
        let [verify, encrypt, wrap] = [AttributeType::Verify, AttributeType::Encrypt, AttributeType::Wrap]
            .map(|wanted| read_bool(session, public, wanted));
        Ok(Usage {
            private: [sensitive?, sign?, decrypt?, unwrap?],
            public: [verify?, encrypt?, wrap?],
        })
    }

    /// Tokens' defaults differ: an RSA key pair made without usage attributes may sign,
    /// decrypt, unwrap, verify, encrypt and wrap on SoftHSM2, its private half not
    /// sensitive; on Kryoptic it may do none of these, its private half sensitive. So
    /// provisioning spells out every flag, and makes the same keys on both.
    async fn generated_keys_spell_out_every_usage_where_the_tokens_defaults_differ(token: Token) -> Result<()> {
        let (pool, _login) = connect(token, hsm_test_config(token)?).await?;
        let defaults = pool
            .run_writing(Operation::GenerateKeyPair, |session| {
                let (public, private) = session
                    .generate_key_pair(
                        &Mechanism::RsaPkcsKeyPairGen,
                        &[Attribute::Token(false), Attribute::ModulusBits(2048.into())],
                        &[Attribute::Token(false)],
                    )
                    .map_err(Error::pkcs11(Operation::GenerateKeyPair))?;
                let usage = read_usage(session, private, public);
                for object in [private, public] {
                    session
                        .destroy_object(object)
                        .map_err(Error::pkcs11(Operation::DestroyKeyPair))?;
                }
                usage
            })
            .await?;
        let (t, f) = (Some(true), Some(false));
        let expected = match token {
            Token::SoftHsm => Usage {
                private: [f, t, t, t],
                public: [t, t, t],
            },
            Token::Kryoptic => Usage {
                private: [t, f, f, f],
                public: [f, f, f],
            },
        };
        assert_eq!(defaults, expected, "the token's defaults");

        for (usage, expected) in [
            (
                KeyUsage::Sign,
                Usage {
                    private: [t, t, f, f],
                    public: [t, f, f],
                },
            ),
            (
                KeyUsage::Decrypt,
                Usage {
                    private: [t, f, t, f],
                    public: [f, t, f],
                },
            ),
        ] {
            let label = format!("usage-{usage:?}-{}-{:x}", std::process::id(), rand_suffix());
            let spec = crate::RsaKeySpec {
                label: label.clone(),
                id: vec![5],
                bits: 2048,
                usage,
            };
            assert_eq!(crate::generate_rsa_key_pair(&pool, spec).await?, Generated::Created);
            let read_label = label.clone();
            let made = pool
                .run(Operation::ReadAttributes, move |session| {
                    read_usage(
                        session,
                        find_key(session, KeyClass::Private, &read_label)?,
                        find_key(session, KeyClass::Public, &read_label)?,
                    )
                })
                .await?;
            assert_eq!(made, expected, "{usage:?}");
            crate::destroy_key_pair(&pool, &label).await?;
        }
        Ok(())
    }

    /// A token without CKA_ALLOWED_MECHANISMS gets the key without it; any other refusal
    /// is passed on, not retried.
    #[test]
    fn only_an_unknown_attribute_type_is_retried_without_the_list() {
        use cryptoki::context::Function;
        let unknown = |extra: &[Attribute]| {
            if extra.is_empty() {
                Ok(extra.len())
            } else {
                Err(CkError::Pkcs11(
                    RvError::AttributeTypeInvalid,
                    Function::GenerateKeyPair,
                ))
            }
        };
        assert_eq!(with_allowed_mechanisms("k", ECDSA_SIGN, unknown).ok(), Some(0));
        let known = |extra: &[Attribute]| Ok::<_, CkError>(extra.len());
        assert_eq!(with_allowed_mechanisms("k", ECDSA_SIGN, known).ok(), Some(1));
        let calls = std::cell::Cell::new(0);
        let refusing = |_: &[Attribute]| {
            calls.set(calls.get() + 1);
            Err::<(), _>(CkError::Pkcs11(
                RvError::TemplateInconsistent,
                Function::GenerateKeyPair,
            ))
        };
        let error = with_allowed_mechanisms("k", ECDSA_SIGN, refusing).expect_err("refused");
        assert_eq!(rv_of(&error), Some(RvError::TemplateInconsistent));
        assert_eq!(calls.get(), 1);
    }
}
