//! The provisioned private keys — the RSA signing, wrapping and audit keys, the TLS keys and
//! the dev CA's key — cannot be read or wrapped out of their tokens, on both PKCS#11
//! implementations `softhsm-setup/setup.sh` provisions: SoftHSM2 (`.dev/`) and Kryoptic
//! (`.dev/kryoptic/`, whose configuration `KRYOPTIC_CONF` comes from `.cargo/config.toml`).
//!
//! Written against raw cryptoki, as an attacker holding the user PIN would use the token,
//! not through the `hsm` crate whose claims are being tested.
//!
//! Keys generated since CKA_MODIFIABLE=false and CKA_ALLOWED_MECHANISMS were added are
//! checked for both here only when a `.dev/` key has them: `.dev/` is provisioned once
//! per checkout and not regenerated, so a key made before then is still accepted here. The
//! unconditional checks run on freshly generated keys in the `hsm-test` token: `hsm`'s
//! `restrictions::tests` (`generated_keys_are_unmodifiable_and_limited_to_the_mechanisms_they_are_used_with`,
//! `a_pin_holder_cannot_widen_a_generated_keys_usage`, `a_mechanism_outside_the_allowed_list_is_refused`).

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use secrecy::SecretString;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn dev() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev")
}

/// Every private key `setup.sh` provisions in SoftHSM2.
const SOFTHSM_KEYS: [(&str, &str); 8] = [
    ("manager", "manager-signing"),
    ("vault", "vault-wrapping"),
    ("vault", "vault-audit"),
    ("manager", "manager-tls"),
    ("manager", "manager-client-tls"),
    ("vault", "vault-tls"),
    ("vault", "vault-internal-tls"),
    ("dev-ca", "dev-ca"),
];

#[test]
fn provisioned_private_keys_cannot_be_read_or_wrapped_out_of_softhsm() -> Result {
    let module = std::env::var_os("PKCS11_MODULE")
        .map_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"), PathBuf::from);
    check_keys(&module, &dev(), &SOFTHSM_KEYS, RvError::KeyUnextractable)
}

/// The same keys in Kryoptic (the dev CA's stays in SoftHSM2). Kryoptic 1.5 refuses to
/// AES-wrap a key whose CKA_EXTRACTABLE is false with CKR_KEY_FUNCTION_NOT_PERMITTED
/// (`check_key_ops(.., CKA_EXTRACTABLE)` in kryoptic-lib's `object/mod.rs`), not the
/// CKR_KEY_UNEXTRACTABLE PKCS#11 names; the same call wraps an extractable key.
#[test]
fn provisioned_private_keys_cannot_be_read_or_wrapped_out_of_kryoptic() -> Result {
    let dir = dev().join("kryoptic");
    check_keys(
        &dir.join("libkryoptic_pkcs11.so"),
        &dir,
        &SOFTHSM_KEYS[..7],
        RvError::KeyFunctionNotPermitted,
    )
}

fn logged_in_session(ctx: &Pkcs11, pins: &Path, token: &str) -> Result<Session> {
    let slot = ctx
        .get_slots_with_token()?
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == token)
        })
        .ok_or_else(|| format!("token {token} not provisioned; run make test"))?;
    let session = ctx.open_rw_session(slot)?;
    let pin = std::fs::read_to_string(pins.join(format!("pins/{token}.pin")))?;
    session.login(UserType::User, Some(&SecretString::from(pin.trim().to_owned())))?;
    Ok(session)
}

fn private_key(session: &Session, label: &str) -> Result<ObjectHandle> {
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    assert_eq!(found.len(), 1, "exactly one private key labelled {label}");
    Ok(found[0])
}

fn bool_attribute(session: &Session, key: ObjectHandle, wanted: AttributeType) -> Result<Option<bool>> {
    Ok(session
        .get_attributes(key, &[wanted])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Sign(v) | Attribute::Decrypt(v) | Attribute::Unwrap(v) | Attribute::Modifiable(v) => Some(v),
            _ => None,
        }))
}

/// A throwaway session private key of `key_type` that may be wrapped out: the control that
/// shows a wrapping mechanism works on such keys at all.
fn extractable_private_key(session: &Session, key_type: Option<KeyType>) -> Result<ObjectHandle> {
    let private = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Sign(true),
    ];
    let (mechanism, public) = match key_type {
        Some(KeyType::EC) => (
            Mechanism::EccKeyPairGen,
            // P-256's OID, DER-encoded.
            vec![
                Attribute::Token(false),
                Attribute::EcParams(vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            ],
        ),
        _ => (
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::Token(false),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ],
        ),
    };
    let (public, private) = session.generate_key_pair(&mechanism, &public, &private)?;
    session.destroy_object(public)?;
    Ok(private)
}

fn rv(error: &Error) -> Option<RvError> {
    match error {
        Error::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Checks `keys` (token, label) in the tokens of `module`, whose PINs are under `dir/pins`;
/// the token refuses to wrap them out with `unextractable`.
fn check_keys(module: &Path, dir: &Path, keys: &[(&str, &str)], unextractable: RvError) -> Result {
    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    for &(token, label) in keys {
        let session = logged_in_session(&ctx, dir, token)?;
        let key = private_key(&session, label)?;
        let key_type = session
            .get_attributes(key, &[AttributeType::KeyType])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::KeyType(t) => Some(t),
                _ => None,
            });

        // The private components are sensitive: the token will not return them.
        // (cryptoki's get_attributes silently drops sensitive attributes, so ask for
        // their info, which reports the refusal.)
        let secret_parts: &[AttributeType] = match key_type {
            Some(KeyType::RSA) => &[
                AttributeType::PrivateExponent,
                AttributeType::Prime1,
                AttributeType::Prime2,
                AttributeType::Exponent1,
                AttributeType::Exponent2,
                AttributeType::Coefficient,
            ],
            // An EC private key's secret is its CKA_VALUE (the scalar).
            Some(KeyType::EC) => &[AttributeType::Value],
            other => panic!("{token}/{label}: unexpected key type {other:?}"),
        };
        for info in session.get_attribute_info(key, secret_parts)? {
            assert!(matches!(info, AttributeInfo::Sensitive), "{token}/{label}: {info:?}");
        }
        let read = session.get_attributes(key, secret_parts)?;
        assert!(
            read.is_empty(),
            "{token}/{label}: a private component was returned: {read:?}"
        );

        // Least privilege: only vault's wrapping key decrypts; every other key only signs.
        // The wrapping key's CKA_UNWRAP is true on keys provisioned before it was dropped,
        // false since: either is accepted (nothing calls C_UnwrapKey with it).
        let decrypts = label == "vault-wrapping";
        for (usage, allowed) in [
            (AttributeType::Sign, Some(!decrypts)),
            (AttributeType::Decrypt, Some(decrypts)),
            (AttributeType::Unwrap, if decrypts { None } else { Some(false) }),
        ] {
            let value = bool_attribute(&session, key, usage)?;
            assert!(value.is_some(), "{token}/{label}: {usage:?} readable");
            if let Some(allowed) = allowed {
                assert_eq!(value, Some(allowed), "{token}/{label}: {usage:?}");
            }
        }

        // Provisioned since keys are made unmodifiable: limited to their mechanisms, and a
        // PIN holder cannot widen their usage. (On a key provisioned before, the widening
        // would succeed and change the `.dev/` key, so it is not tried.)
        if bool_attribute(&session, key, AttributeType::Modifiable)? == Some(false) {
            let mut expected = match (key_type, decrypts) {
                (Some(KeyType::EC), _) => vec![MechanismType::ECDSA],
                (_, true) => vec![MechanismType::RSA_PKCS_OAEP],
                (_, false) => vec![MechanismType::SHA256_RSA_PKCS, MechanismType::RSA_PKCS_PSS],
            };
            let mut allowed = session
                .get_attributes(key, &[AttributeType::AllowedMechanisms])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::AllowedMechanisms(m) => Some(m),
                    _ => None,
                })
                .ok_or_else(|| format!("{token}/{label}: no CKA_ALLOWED_MECHANISMS"))?;
            // SoftHSM returns the list in its own order.
            allowed.sort_by_key(|m| u64::from(*m));
            expected.sort_by_key(|m| u64::from(*m));
            assert_eq!(allowed, expected, "{token}/{label}: CKA_ALLOWED_MECHANISMS");
            let widen = if decrypts {
                Attribute::Sign(true)
            } else {
                Attribute::Decrypt(true)
            };
            let error = session
                .update_attributes(key, std::slice::from_ref(&widen))
                .expect_err("widening an unmodifiable key must fail");
            assert_eq!(rv(&error), Some(RvError::ActionProhibited), "{token}/{label}: {error}");
        } else {
            eprintln!("{token}/{label}: provisioned before keys were made unmodifiable; rerun setup.sh to check");
        }

        // The flags say so, and say it was always so (generated inside the token).
        let flags = session.get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Private,
                AttributeType::Token,
                AttributeType::Local,
            ],
        )?;
        for flag in &flags {
            let ok = match flag {
                Attribute::Sensitive(v) | Attribute::AlwaysSensitive(v) | Attribute::NeverExtractable(v) => *v,
                Attribute::Private(v) | Attribute::Token(v) | Attribute::Local(v) => *v,
                Attribute::Extractable(v) => !*v,
                _ => true,
            };
            assert!(ok, "{token}/{label}: {flag:?}");
        }
        assert_eq!(flags.len(), 7, "{token}/{label}: all flags readable");

        // Wrapping it out under a key we control is refused.
        let wrapping_key = session.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
                Attribute::Encrypt(true),
            ],
        )?;
        // Every AES wrapping the token offers that wraps an extractable private key of the
        // same type (a throwaway session key: the control) must refuse this one for being
        // unextractable; a refusal for the mechanism would prove nothing. SoftHSM2 wraps
        // private keys with CKM_AES_KEY_WRAP_PAD; Kryoptic lacks it and answers
        // CKM_AES_KEY_WRAP and CKM_AES_CBC_PAD for them.
        let slot = session.get_session_info()?.slot_id();
        let offered = ctx.get_mechanism_list(slot)?;
        let control = extractable_private_key(&session, key_type)?;
        let mut refused = Vec::new();
        for mechanism in [
            Mechanism::AesKeyWrapPad,
            Mechanism::AesKeyWrap,
            Mechanism::AesCbcPad([0u8; 16]),
        ] {
            if !offered.contains(&mechanism.mechanism_type())
                || session.wrap_key(&mechanism, wrapping_key, control).is_err()
            {
                continue;
            }
            let error = session
                .wrap_key(&mechanism, wrapping_key, key)
                .expect_err("wrapping a non-extractable key must fail");
            assert_eq!(
                rv(&error),
                Some(unextractable),
                "{token}/{label} with {mechanism:?}: {error}"
            );
            refused.push(mechanism.mechanism_type());
        }
        assert!(
            !refused.is_empty(),
            "{token}/{label}: no AES wrapping of {offered:?} wraps even an extractable key"
        );
        session.destroy_object(control)?;

        // And the flags cannot be relaxed after the fact.
        for relax in [Attribute::Extractable(true), Attribute::Sensitive(false)] {
            let changed = session.update_attributes(key, std::slice::from_ref(&relax));
            assert!(changed.is_err(), "{token}/{label}: {relax:?} was accepted");
        }
        session.destroy_object(wrapping_key)?;
    }
    Ok(())
}
