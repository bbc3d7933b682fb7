//! A rotated key's generations in the token — `base`, `base.1`, … — from protected private
//! objects only, and every object under those labels that was passed over.

use std::fmt;

use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, Operation, Result};
use crate::export::RsaPublicComponents;
use crate::key_policy::{IgnoreReason, read_rsa_components, usable_rsa_key};
use crate::keys::KeyClass;
use crate::pool::TokenPool;
use crate::provision::KeyUsage;

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

/// A key object whose label belongs to a rotated key but that was not used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IgnoredKeyObject {
    /// CKA_LABEL.
    pub label: String,
    /// Which half it claims to be.
    pub class: KeyClass,
    /// Why it was not used.
    pub reason: IgnoreReason,
}

impl fmt::Display for IgnoredKeyObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.class, self.label, self.reason)
    }
}

/// A rotated key's generations as the token holds them, and what was passed over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyGenerations {
    /// Usable generations, oldest first; labels are unique.
    pub keys: Vec<LabeledPublicKey>,
    /// Objects with a generation's label that were not used, sorted. The public halves
    /// of usable keys are not listed: tokens provisioned before public halves were made
    /// CKA_PRIVATE hold them as public objects, and that is expected.
    pub ignored: Vec<IgnoredKeyObject>,
}

/// The generation of `label` in a rotated key's sequence: `base` is 0, `base.N` is N,
/// anything else is not part of it.
pub fn key_generation(base: &str, label: &str) -> Option<u64> {
    if label == base {
        return Some(0);
    }
    let generation = label.strip_prefix(base)?.strip_prefix('.')?.parse().ok()?;
    // Only the label `generation_label` makes: `base.01`, `base.+1` or `base.0` would be a
    // second label for one generation.
    (generation_label(base, generation) == label).then_some(generation)
}

/// The label of generation `generation` of `base`.
pub fn generation_label(base: &str, generation: u64) -> String {
    if generation == 0 {
        base.to_owned()
    } else {
        format!("{base}.{generation}")
    }
}

/// Every usable generation of a rotated key (`manager-signing`, `manager-signing.1`, ...)
/// for `usage`, and every other object labelled like one of them.
///
/// Only private objects count: a generation is its protected private key (see
/// [`IgnoreReason`]), its public half is read from it. Public objects are never trusted
/// on their own, since a session that never logged in can create them.
pub async fn rsa_key_generations(pool: &TokenPool, base: &str, usage: KeyUsage) -> Result<KeyGenerations> {
    let base = base.to_owned();
    pool.run(Operation::ExportPublicKey, move |session| {
        let mut found = KeyGenerations::default();
        for (handle, label, generation) in labelled(session, KeyClass::Private, &base)? {
            match usable_rsa_key(session, handle, &label, usage)? {
                Ok(key) => found.keys.push(LabeledPublicKey { label, generation, key }),
                Err(reason) => found.ignored.push(IgnoredKeyObject {
                    label,
                    class: KeyClass::Private,
                    reason,
                }),
            }
        }
        // Two usable keys under one label: whichever a later lookup finds is a guess.
        let mut labels: Vec<&str> = found.keys.iter().map(|key| key.label.as_str()).collect();
        labels.sort_unstable();
        let duplicated: Vec<String> = labels
            .windows(2)
            .filter(|pair| pair[0] == pair[1])
            .map(|pair| pair[0].to_owned())
            .collect();
        let (clashing, keys) = std::mem::take(&mut found.keys)
            .into_iter()
            .partition::<Vec<_>, _>(|key| duplicated.contains(&key.label));
        found.keys = keys;
        found.ignored.extend(clashing.into_iter().map(|key| IgnoredKeyObject {
            label: key.label,
            class: KeyClass::Private,
            reason: IgnoreReason::DuplicateLabel,
        }));
        for (handle, label, _) in labelled(session, KeyClass::Public, &base)? {
            let public_half = read_rsa_components(session, handle)?
                .is_ok_and(|public| found.keys.iter().any(|key| key.label == label && key.key == public));
            if !public_half {
                found.ignored.push(IgnoredKeyObject {
                    label,
                    class: KeyClass::Public,
                    reason: IgnoreReason::NotPublicHalfOfUsableKey,
                });
            }
        }
        found.keys.sort_by_key(|key| key.generation);
        found.ignored.sort();
        Ok(found)
    })
    .await
}

/// Every token object of `class` whose label is a generation of `base`, whatever its
/// other attributes: with its label and generation.
fn labelled(session: &Session, class: KeyClass, base: &str) -> Result<Vec<(ObjectHandle, String, u64)>> {
    let handles = session
        .find_objects(&[Attribute::Token(true), Attribute::Class(class.object_class())])
        .map_err(Error::pkcs11(Operation::FindKey))?;
    let mut found = Vec::new();
    for handle in handles {
        let label = session
            .get_attributes(handle, &[AttributeType::Label])
            .map_err(Error::pkcs11(Operation::ReadAttributes))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Label(bytes) => String::from_utf8(bytes).ok(),
                _ => None,
            });
        if let Some((label, generation)) = label.and_then(|l| key_generation(base, &l).map(|g| (l, g))) {
            found.push((handle, label, generation));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};

    use super::*;
    use crate::keys::find_all;
    use crate::test_support::{PlantedKey, Token, connect, hsm_test_config, rand_suffix, token_tests};
    use crate::{RsaKeySpec, RsaScheme, Signer, destroy_key_pair, generate_rsa_key_pair, rsa_public_key};

    #[test]
    fn generations_are_read_from_labels() {
        assert_eq!(key_generation("manager-signing", "manager-signing"), Some(0));
        assert_eq!(key_generation("manager-signing", "manager-signing.12"), Some(12));
        assert_eq!(key_generation("manager-signing", "manager-signing.x"), None);
        assert_eq!(key_generation("manager-signing", "manager-signing-old"), None);
        assert_eq!(key_generation("manager-signing", "other"), None);
        for second_name in ["manager-signing.01", "manager-signing.+1", "manager-signing.0"] {
            assert_eq!(key_generation("manager-signing", second_name), None, "{second_name}");
        }
        assert_eq!(generation_label("k", 0), "k");
        assert_eq!(generation_label("k", 3), "k.3");
    }

    token_tests!(
        a_planted_public_key_is_ignored_and_reported,
        extractable_wrong_usage_and_duplicated_private_keys_are_ignored,
    );

    fn unique_base() -> String {
        format!("ring-{}-{:x}", std::process::id(), rand_suffix())
    }

    fn spec(label: &str, usage: KeyUsage) -> RsaKeySpec {
        RsaKeySpec {
            label: label.to_owned(),
            id: vec![0x6e],
            bits: 2048,
            usage,
        }
    }

    /// CKA_PRIVATE of every public-key object labelled `label`.
    async fn public_objects_private(pool: &TokenPool, label: &str) -> Result<Vec<bool>> {
        let label = label.to_owned();
        pool.run(Operation::ReadAttributes, move |session| {
            let mut flags = Vec::new();
            for handle in find_all(session, KeyClass::Public, &label)? {
                for attribute in session
                    .get_attributes(handle, &[AttributeType::Private])
                    .map_err(Error::pkcs11(Operation::ReadAttributes))?
                {
                    if let Attribute::Private(private) = attribute {
                        flags.push(private);
                    }
                }
            }
            Ok(flags)
        })
        .await
    }

    fn ignored(label: &str, class: KeyClass, reason: IgnoreReason) -> IgnoredKeyObject {
        IgnoredKeyObject {
            label: label.to_owned(),
            class,
            reason,
        }
    }

    /// The attack this module exists for: a public key planted as the next generation (and
    /// one under the current generation's own label) is neither used nor mistaken for the
    /// real key, and both are reported. SoftHSM2 lets a session that never logged in plant
    /// them; Kryoptic refuses that, so there they are made as a PIN holder (or an older
    /// token's provisioning) would leave them: the same CKA_PRIVATE=false objects.
    async fn a_planted_public_key_is_ignored_and_reported(token: Token) -> Result<()> {
        let (pool, _login) = connect(token, hsm_test_config(token)?).await?;
        let base = unique_base();
        let next = generation_label(&base, 1);
        generate_rsa_key_pair(&pool, spec(&base, KeyUsage::Sign)).await?;
        let attacker = PlantedKey::generate();
        for label in [&next, &base] {
            let planted = attacker.plant_without_login(token, label);
            match token {
                Token::SoftHsm => planted.expect("SoftHSM2 takes public objects from a session without login"),
                Token::Kryoptic => {
                    let refused = planted.expect_err("Kryoptic stores no token object without a login");
                    assert!(
                        !public_objects_private(&pool, label).await?.contains(&false),
                        "nothing planted: {refused}"
                    );
                    add_unprotected_public_half(&pool, label, &attacker.public).await?;
                }
            }
        }
        assert_eq!(
            public_objects_private(&pool, &next).await?,
            vec![false],
            "the planted object: CKA_PRIVATE is false"
        );
        let mut flags = public_objects_private(&pool, &base).await?;
        flags.sort();
        assert_eq!(
            flags,
            vec![false, true],
            "the planted object, and our CKA_PRIVATE public half"
        );

        let found = rsa_key_generations(&pool, &base, KeyUsage::Sign).await?;
        assert_eq!(found.keys.len(), 1, "{found:?}");
        assert_eq!(
            (found.keys[0].label.as_str(), found.keys[0].generation),
            (base.as_str(), 0)
        );
        assert_ne!(found.keys[0].key, attacker.public);
        assert_eq!(
            found.ignored,
            vec![
                ignored(&base, KeyClass::Public, IgnoreReason::NotPublicHalfOfUsableKey),
                ignored(&next, KeyClass::Public, IgnoreReason::NotPublicHalfOfUsableKey),
            ]
        );

        // The key handed out is the one the token signs with.
        let message = b"signed by the real key";
        let signature = Signer::new(pool.clone(), base.clone(), RsaScheme::Pkcs1Sha256)
            .sign(message)
            .await?;
        let real = aws_lc_rs::signature::RsaPublicKeyComponents {
            n: found.keys[0].key.modulus(),
            e: found.keys[0].key.exponent(),
        };
        assert!(
            real.verify(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, message, &signature)
                .is_ok()
        );
        assert_eq!(rsa_public_key(&pool, &base, KeyUsage::Sign).await?, found.keys[0].key);
        let error = rsa_public_key(&pool, &next, KeyUsage::Sign)
            .await
            .expect_err("no private key");
        assert!(matches!(error, Error::KeyNotFound { .. }), "{error:?}");

        destroy_key_pair(&pool, &next).await?;
        destroy_key_pair(&pool, &base).await?;
        assert!(
            public_objects_private(&pool, &base).await?.is_empty(),
            "retiring removes planted objects too"
        );
        Ok(())
    }

    /// Generates an RSA key pair labelled `label` whose private key is sign-only,
    /// sensitive and, as `extractable` says, extractable or not.
    async fn generate_raw(pool: &TokenPool, label: &str, extractable: bool) -> Result<()> {
        let label = label.to_owned();
        pool.run_writing(Operation::GenerateKeyPair, move |session| {
            let public = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Sensitive(true),
                Attribute::Extractable(extractable),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
            ];
            session
                .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
                .map_err(Error::pkcs11(Operation::GenerateKeyPair))?;
            Ok(())
        })
        .await
    }

    /// `key` as a CKA_PRIVATE=false public object labelled `label`, made by a logged-in
    /// session: as tokens provisioned before public halves were made CKA_PRIVATE hold them,
    /// or as a PIN holder could plant one.
    async fn add_unprotected_public_half(pool: &TokenPool, label: &str, key: &RsaPublicComponents) -> Result<()> {
        let (label, n, e) = (label.to_owned(), key.modulus().to_vec(), key.exponent().to_vec());
        pool.run_writing(Operation::ImportKeyPair, move |session| {
            session
                .create_object(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(cryptoki::object::KeyType::RSA),
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Verify(true),
                    Attribute::Modulus(n.clone()),
                    Attribute::PublicExponent(e.clone()),
                ])
                .map_err(Error::pkcs11(Operation::ImportKeyPair))?;
            Ok(())
        })
        .await
    }

    /// Keys a logged-in user made carelessly are passed over with the check they fail; the
    /// one good generation is used, and its unprotected public half (an older token's) is
    /// not reported.
    async fn extractable_wrong_usage_and_duplicated_private_keys_are_ignored(token: Token) -> Result<()> {
        let (pool, _login) = connect(token, hsm_test_config(token)?).await?;
        let base = unique_base();
        let [extractable, wrapping, good, twice] = [0, 1, 2, 3].map(|g| generation_label(&base, g));
        generate_raw(&pool, &extractable, true).await?;
        generate_rsa_key_pair(&pool, spec(&wrapping, KeyUsage::Decrypt)).await?;
        generate_rsa_key_pair(&pool, spec(&good, KeyUsage::Sign)).await?;
        generate_raw(&pool, &twice, false).await?;
        generate_raw(&pool, &twice, false).await?;
        let good_key = rsa_public_key(&pool, &good, KeyUsage::Sign).await?;
        add_unprotected_public_half(&pool, &good, &good_key).await?;

        let found = rsa_key_generations(&pool, &base, KeyUsage::Sign).await?;
        let labels: Vec<_> = found.keys.iter().map(|k| (k.label.as_str(), k.generation)).collect();
        assert_eq!(labels, vec![(good.as_str(), 2)]);
        assert_eq!(found.keys[0].key, good_key);
        let private: Vec<_> = found
            .ignored
            .iter()
            .filter(|o| o.class == KeyClass::Private)
            .cloned()
            .collect();
        assert_eq!(
            private,
            vec![
                ignored(&extractable, KeyClass::Private, IgnoreReason::Extractable),
                ignored(
                    &wrapping,
                    KeyClass::Private,
                    IgnoreReason::WrongUsage {
                        attribute: "CKA_SIGN",
                        needed: true
                    }
                ),
                ignored(&twice, KeyClass::Private, IgnoreReason::DuplicateLabel),
                ignored(&twice, KeyClass::Private, IgnoreReason::DuplicateLabel),
            ]
        );
        let public: Vec<_> = found
            .ignored
            .iter()
            .filter(|o| o.class == KeyClass::Public)
            .map(|o| o.label.as_str())
            .collect();
        assert_eq!(
            public,
            vec![extractable.as_str(), wrapping.as_str(), twice.as_str(), twice.as_str()],
            "the public halves of ignored keys, but not the good key's two"
        );

        // The same objects read as wrapping keys: only the decrypt key qualifies.
        let wrapping_ring = rsa_key_generations(&pool, &base, KeyUsage::Decrypt).await?;
        let labels: Vec<_> = wrapping_ring.keys.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(labels, vec![wrapping.as_str()]);
        let refused = rsa_public_key(&pool, &extractable, KeyUsage::Sign)
            .await
            .expect_err("extractable");
        assert!(
            matches!(
                refused,
                Error::KeyIgnored {
                    reason: IgnoreReason::Extractable,
                    ..
                }
            ),
            "{refused:?}"
        );

        for label in [&extractable, &wrapping, &good] {
            destroy_key_pair(&pool, label).await?;
        }
        destroy_twice(&pool, &twice).await
    }

    /// Two private keys share `label`, so `destroy_key_pair` refuses to guess: remove all.
    async fn destroy_twice(pool: &TokenPool, label: &str) -> Result<()> {
        let label = label.to_owned();
        pool.run_writing(Operation::DestroyKeyPair, move |session| {
            for class in [KeyClass::Private, KeyClass::Public] {
                for handle in find_all(session, class, &label)? {
                    session
                        .destroy_object(handle)
                        .map_err(Error::pkcs11(Operation::DestroyKeyPair))?;
                }
            }
            Ok(())
        })
        .await
    }
}
