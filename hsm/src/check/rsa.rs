//! The RSA rows: two throwaway pairs as provisioning makes manager's signing key and
//! vault's wrapping key, judged by the services' key policy, kept secret, and used as the
//! services use them (signatures and OAEP checked with aws-lc).

use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents};
use cryptoki::error::RvError;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use super::session_keys::{Generated, MESSAGE, PairTemplate, Throwaway, row, skipped_after, suffix};
use super::{CheckResult, CkRv, Item, Observed, Outcome, Problem};
use crate::decrypt::OaepHash;
use crate::error::{Error, Operation, rv_of};
use crate::export::RsaPublicComponents;
use crate::key_policy::{IgnoreReason, read_rsa_components, usable_rsa_key};
use crate::provision::KeyUsage;
use crate::restrictions::rsa_mechanisms;
use crate::sign::{RsaScheme, signing_input};

/// The templates of `generate_rsa_key_pair` with CKA_TOKEN false. vault's key may also
/// unwrap, for the C_UnwrapKey row (the key policy does not judge CKA_UNWRAP of a
/// decryption key).
fn rsa_template(usage: KeyUsage) -> PairTemplate {
    let sign = usage == KeyUsage::Sign;
    let common = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Id(vec![0xc4]),
        Attribute::Modifiable(false),
    ];
    let public = [
        Attribute::ModulusBits(2048.into()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Verify(sign),
        Attribute::Encrypt(!sign),
        Attribute::Wrap(false),
    ];
    let private = [
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Derive(false),
        Attribute::Sign(sign),
        Attribute::Decrypt(!sign),
        Attribute::Unwrap(!sign),
    ];
    PairTemplate {
        label: format!("hsm-check-{usage:?}-{:x}", suffix()),
        mechanism: Mechanism::RsaPkcsKeyPairGen,
        public: [common.as_slice(), &public].concat(),
        private: [common.as_slice(), &private].concat(),
        allowed: rsa_mechanisms(usage),
    }
}

/// The RSA rows: key generation, policy and secrecy, signatures, decryption, unwrapping.
pub(super) fn rsa_checks(session: &Session) -> Vec<CheckResult> {
    let mut keys = Throwaway::new(session);
    let pairs = keys.generate_pair(rsa_template(KeyUsage::Sign)).and_then(|signing| {
        let wrapping = keys.generate_pair(rsa_template(KeyUsage::Decrypt))?;
        Ok((signing, wrapping))
    });
    let (signing, wrapping) = match pairs {
        Ok(pairs) => pairs,
        Err(e) => {
            let failed = row(
                Item::RsaKeyPairs,
                Outcome::of_error(Error::pkcs11(Operation::GenerateKeyPair)(e)),
            );
            return skipped_after(failed, &RSA_ROWS);
        }
    };
    let publics = [&signing, &wrapping].map(|pair| read_rsa_components(session, pair.public));
    let (signing_public, wrapping_public) = match publics {
        [Ok(Ok(signing_public)), Ok(Ok(wrapping_public))] => (signing_public, wrapping_public),
        [Err(e), _] | [_, Err(e)] => return skipped_after(row(Item::RsaKeyPairs, Outcome::of_error(e)), &RSA_ROWS),
        [Ok(Err(reason)), _] | [_, Ok(Err(reason))] => {
            let wrong = row(Item::RsaKeyPairs, Outcome::Wrong(Problem::Ignored(reason)));
            return skipped_after(wrong, &RSA_ROWS);
        }
    };
    let allowed = match (signing.allowed_mechanisms, wrapping.allowed_mechanisms) {
        (Ok(()), Ok(())) => Outcome::Works,
        (Err(rv), _) | (_, Err(rv)) => Outcome::Refused(rv),
    };
    vec![
        row(Item::RsaKeyPairs, Outcome::Works),
        row(Item::AllowedMechanisms, allowed),
        key_policy_row(session, [(&signing, KeyUsage::Sign), (&wrapping, KeyUsage::Decrypt)]),
        private_exponent_row(session, [signing.private, wrapping.private]),
        wrap_row(&mut keys, [signing.private, wrapping.private], &wrapping_public),
        signature_row(session, signing.private, &signing_public, RsaScheme::Pkcs1Sha256),
        signature_row(session, signing.private, &signing_public, RsaScheme::PssSha256),
        decrypt_row(session, wrapping.private, &wrapping_public, OaepHash::Sha1),
        decrypt_row(session, wrapping.private, &wrapping_public, OaepHash::Sha256),
        unwrap_row(&mut keys, wrapping.private, &wrapping_public),
    ]
}

/// The rows of [`rsa_checks`] after the key generation, in order.
const RSA_ROWS: [Item; 9] = [
    Item::AllowedMechanisms,
    Item::KeyPolicy,
    Item::PrivateExponentHidden,
    Item::WrapRefused,
    Item::Signature(RsaScheme::Pkcs1Sha256),
    Item::Signature(RsaScheme::PssSha256),
    Item::OaepDecrypt(OaepHash::Sha1),
    Item::OaepDecrypt(OaepHash::Sha256),
    Item::OaepUnwrap,
];

/// The judgement manager and vault pass on a key before using it (`key_policy`).
fn key_policy_row(session: &Session, keys: [(&Generated, KeyUsage); 2]) -> CheckResult {
    for (key, usage) in keys {
        match usable_rsa_key(session, key.private, &key.label, usage) {
            Ok(Ok(_)) => {}
            Ok(Err(reason)) => return row(Item::KeyPolicy, Outcome::Wrong(Problem::Ignored(reason))),
            Err(e) => return row(Item::KeyPolicy, Outcome::of_error(e)),
        }
    }
    row(Item::KeyPolicy, Outcome::Works)
}

/// cryptoki's `get_attributes` drops sensitive attributes without an error: the attribute
/// info says whether the value would be given.
fn private_exponent_row(session: &Session, keys: [ObjectHandle; 2]) -> CheckResult {
    let mut answer = None;
    for key in keys {
        match session.get_attribute_info(key, &[AttributeType::PrivateExponent, AttributeType::Prime1]) {
            Ok(infos) => {
                if infos.iter().any(|info| matches!(info, AttributeInfo::Available(_))) {
                    return row(Item::PrivateExponentHidden, Outcome::Wrong(Problem::Readable));
                }
                if infos.iter().all(|info| matches!(info, AttributeInfo::Sensitive)) {
                    answer = Some(CkRv(RvError::AttributeSensitive));
                }
            }
            Err(e) => {
                return row(
                    Item::PrivateExponentHidden,
                    Outcome::of_error(Error::pkcs11(Operation::ReadAttributes)(e)),
                );
            }
        }
    }
    CheckResult {
        item: Item::PrivateExponentHidden,
        outcome: Outcome::Works,
        observed: answer.map(Observed::Answered),
    }
}

/// Tries to wrap each private key with an AES key by each mechanism that could: none may
/// give a key out. A refusal says something only where the same call wraps an extractable
/// key (the control): its answer is shown; where nothing wraps even that (a module without
/// these mechanisms, p11-kit 0.24 which forwards none of them), the row says the refusal is
/// unverified, and CKA_EXTRACTABLE (the key policy row) is what remains.
fn wrap_row(keys: &mut Throwaway<'_>, private_keys: [ObjectHandle; 2], public: &RsaPublicComponents) -> CheckResult {
    let item = Item::WrapRefused;
    let session = keys.session;
    let aes = keys.generate_aes_key(true).and_then(|wrapping| {
        let control = keys.generate_aes_key(false)?;
        Ok((wrapping, control))
    });
    let (wrapping, control) = match aes {
        Ok(aes) => aes,
        Err(e) => {
            return CheckResult {
                item,
                outcome: Outcome::Works,
                observed: rv_of(&e).map(|rv| Observed::Unverified(CkRv(rv))),
            };
        }
    };
    let mut attempts = vec![
        (Mechanism::AesKeyWrapPad, wrapping),
        (Mechanism::AesKeyWrap, wrapping),
        (Mechanism::AesCbcPad([0; 16]), wrapping),
    ];
    // RSA-OAEP, which p11-kit 0.24 forwards, with a public key that may wrap.
    match keys.create_rsa_wrapping_key(public) {
        Ok(rsa) => attempts.push((oaep(OaepHash::Sha1), rsa)),
        Err(e) => tracing::debug!(error = %e, "no RSA wrapping key for the wrap row"),
    }
    let (mut shown, mut control_refusal) = (None, None);
    for (mechanism, wrapping) in &attempts {
        let (mechanism, wrapping) = (mechanism, *wrapping);
        let control_wraps = match session.wrap_key(mechanism, wrapping, control) {
            Ok(_) => true,
            Err(e) => {
                control_refusal = control_refusal.or(rv_of(&e));
                false
            }
        };
        for &key in &private_keys {
            match session.wrap_key(mechanism, wrapping, key) {
                Ok(_) => return row(item, Outcome::Wrong(Problem::Wrapped)),
                Err(e) if control_wraps => shown = shown.or(rv_of(&e)),
                Err(_) => {}
            }
        }
    }
    let observed = match (shown, control_refusal) {
        (Some(rv), _) => Some(Observed::Answered(CkRv(rv))),
        (None, Some(rv)) => Some(Observed::Unverified(CkRv(rv))),
        (None, None) => None,
    };
    CheckResult {
        item,
        outcome: Outcome::Works,
        observed,
    }
}

/// Signs [`MESSAGE`] as `sign::sign_in_session` does (the same input and mechanism) and
/// verifies the signature with aws-lc.
fn signature_row(session: &Session, key: ObjectHandle, public: &RsaPublicComponents, scheme: RsaScheme) -> CheckResult {
    let item = Item::Signature(scheme);
    let (mechanism, algorithm) = match scheme {
        RsaScheme::Pkcs1Sha256 => (Mechanism::Sha256RsaPkcs, &RSA_PKCS1_2048_8192_SHA256),
        RsaScheme::PssSha256 => (
            Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32.into(),
            }),
            &RSA_PSS_2048_8192_SHA256,
        ),
    };
    let signature = match session.sign(&mechanism, key, &signing_input(scheme, MESSAGE)) {
        Ok(signature) => signature,
        Err(e) => return row(item, Outcome::of_error(Error::pkcs11(Operation::Sign)(e))),
    };
    let components = RsaPublicKeyComponents {
        n: public.modulus(),
        e: public.exponent(),
    };
    match components.verify(algorithm, MESSAGE, &signature) {
        Ok(()) => row(item, Outcome::Works),
        Err(_) => row(item, Outcome::Wrong(Problem::BadSignature)),
    }
}

/// The mechanism `Decrypter::decrypt_oaep` uses: empty label, MGF1 with the same hash.
fn oaep(hash: OaepHash) -> Mechanism<'static> {
    let (hash_alg, mgf) = match hash {
        OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash_alg, mgf, PkcsOaepSource::empty()))
}

/// A fresh 32-byte content key and its OAEP encryption to `public`, made by aws-lc as
/// manager makes them.
fn seal(public: &RsaPublicComponents, hash: OaepHash) -> Option<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let mut content_key = Zeroizing::new(vec![0u8; 32]);
    aws_lc_rs::rand::fill(&mut content_key).ok()?;
    let key = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&public.spki_der()?).ok()?).ok()?;
    let algorithm = match hash {
        OaepHash::Sha1 => &OAEP_SHA1_MGF1SHA1,
        OaepHash::Sha256 => &OAEP_SHA256_MGF1SHA256,
    };
    let mut ciphertext = vec![0u8; key.ciphertext_size()];
    let length = key.encrypt(algorithm, &content_key, &mut ciphertext, None).ok()?.len();
    ciphertext.truncate(length);
    Some((content_key, ciphertext))
}

fn decrypt_row(session: &Session, key: ObjectHandle, public: &RsaPublicComponents, hash: OaepHash) -> CheckResult {
    let item = Item::OaepDecrypt(hash);
    let Some((content_key, ciphertext)) = seal(public, hash) else {
        return row(item, Outcome::Wrong(Problem::Ignored(IgnoreReason::InvalidRsaKey)));
    };
    match session.decrypt(&oaep(hash), key, &ciphertext).map(Zeroizing::new) {
        Ok(plain) if plain == content_key => row(item, Outcome::Works),
        Ok(_) => row(item, Outcome::Wrong(Problem::WrongPlaintext)),
        Err(e) => row(item, Outcome::of_error(Error::pkcs11(Operation::Decrypt)(e))),
    }
}

/// C_UnwrapKey of a content key as an AES key, without CKA_VALUE_LEN in the template
/// (SoftHSM refuses it, and leaks a session object; without it SoftHSM reports a
/// CKA_VALUE_LEN of 0): the key is judged by a check value instead, a zero block encrypted
/// with AES-ECB in the token and by aws-lc.
fn unwrap_row(keys: &mut Throwaway<'_>, key: ObjectHandle, public: &RsaPublicComponents) -> CheckResult {
    let item = Item::OaepUnwrap;
    let session = keys.session;
    let Some((content_key, wrapped)) = seal(public, OaepHash::Sha1) else {
        return row(item, Outcome::Wrong(Problem::Ignored(IgnoreReason::InvalidRsaKey)));
    };
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
    ];
    let unwrapped = match session.unwrap_key(&oaep(OaepHash::Sha1), key, &wrapped, &template) {
        Ok(unwrapped) => unwrapped,
        Err(e) => return row(item, Outcome::of_error(Error::pkcs11(Operation::Decrypt)(e))),
    };
    keys.keep(unwrapped);
    let Some(expected) = check_value(&content_key) else {
        return row(item, Outcome::Wrong(Problem::WrongPlaintext));
    };
    match session.encrypt(&Mechanism::AesEcb, unwrapped, &[0u8; 16]) {
        Ok(value) if value == expected => row(item, Outcome::Works),
        Ok(_) => row(item, Outcome::Wrong(Problem::WrongPlaintext)),
        // Unwrapped, but the token would not show what: the row says so.
        Err(e) => CheckResult {
            item,
            outcome: Outcome::Works,
            observed: rv_of(&e).map(|rv| Observed::Unverified(CkRv(rv))),
        },
    }
}

/// A zero block encrypted with `key` (AES-256-ECB), by aws-lc.
fn check_value(key: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::cipher::{AES_256, EncryptingKey, UnboundCipherKey};
    let mut block = vec![0u8; 16];
    EncryptingKey::ecb(UnboundCipherKey::new(&AES_256, key).ok()?)
        .ok()?
        .encrypt(&mut block)
        .ok()?;
    Some(block)
}
