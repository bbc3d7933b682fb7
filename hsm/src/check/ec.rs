//! The EC rows: a throwaway P-256 pair as `generate_tls_key_pair` makes TLS keys, and a
//! CKM_ECDSA signature of a SHA-256 digest as a TLS handshake is signed, checked with aws-lc.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

use super::session_keys::{Generated, MESSAGE, PairTemplate, Throwaway, row, skipped_after, suffix};
use super::{CheckResult, Item, Outcome, Problem};
use crate::error::{Error, Operation};
use crate::key_policy::IgnoreReason;
use crate::public_key::P256_PARAMS;
use crate::restrictions::ECDSA_SIGN;

/// The EC rows: a P-256 pair made as `generate_tls_key_pair` makes it (CKA_TOKEN false),
/// and a CKM_ECDSA signature of a SHA-256 digest, verified with aws-lc.
pub(super) fn ec_checks(session: &Session) -> Vec<CheckResult> {
    let mut keys = Throwaway::new(session);
    let common = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Modifiable(false),
    ];
    let public = [
        Attribute::EcParams(P256_PARAMS.to_vec()),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ];
    let private = [
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    let template = PairTemplate {
        label: format!("hsm-check-ec-{:x}", suffix()),
        mechanism: Mechanism::EccKeyPairGen,
        public: [common.as_slice(), &public].concat(),
        private: [common.as_slice(), &private].concat(),
        allowed: ECDSA_SIGN,
    };
    let pair = match keys.generate_pair(template) {
        Ok(pair) => pair,
        Err(e) => {
            let failed = row(
                Item::EcKeyPair,
                Outcome::of_error(Error::pkcs11(Operation::GenerateKeyPair)(e)),
            );
            return skipped_after(failed, &[Item::EcdsaSignature]);
        }
    };
    let secrecy = match ec_secrecy(session, pair.private) {
        Ok(Ok(())) => Outcome::Works,
        Ok(Err(reason)) => Outcome::Wrong(Problem::Ignored(reason)),
        Err(e) => Outcome::of_error(e),
    };
    vec![row(Item::EcKeyPair, secrecy), ecdsa_row(session, &pair)]
}

/// What `key_policy` asks of an RSA key's secrecy, asked of the EC key.
fn ec_secrecy(session: &Session, key: ObjectHandle) -> crate::Result<std::result::Result<(), IgnoreReason>> {
    let wanted = [
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::AlwaysSensitive,
        AttributeType::NeverExtractable,
    ];
    let attributes = session
        .get_attributes(key, &wanted)
        .map_err(Error::pkcs11(Operation::ReadAttributes))?;
    let checks = [
        (Attribute::Sensitive(true), "CKA_SENSITIVE", IgnoreReason::NotSensitive),
        (
            Attribute::Extractable(false),
            "CKA_EXTRACTABLE",
            IgnoreReason::Extractable,
        ),
        (
            Attribute::AlwaysSensitive(true),
            "CKA_ALWAYS_SENSITIVE",
            IgnoreReason::WasNotSensitive,
        ),
        (
            Attribute::NeverExtractable(true),
            "CKA_NEVER_EXTRACTABLE",
            IgnoreReason::WasExtractable,
        ),
    ];
    for (needed, attribute, otherwise) in checks {
        if attributes.contains(&needed) {
            continue;
        }
        let present = attributes.iter().any(|a| a.attribute_type() == needed.attribute_type());
        return Ok(Err(if present {
            otherwise
        } else {
            IgnoreReason::Unreadable { attribute }
        }));
    }
    Ok(Ok(()))
}

fn ecdsa_row(session: &Session, pair: &Generated) -> CheckResult {
    let item = Item::EcdsaSignature;
    let point = match session.get_attributes(pair.public, &[AttributeType::EcPoint]) {
        Ok(attributes) => attributes.into_iter().find_map(|a| match a {
            Attribute::EcPoint(point) => Some(point),
            _ => None,
        }),
        Err(e) => return row(item, Outcome::of_error(Error::pkcs11(Operation::ReadAttributes)(e))),
    };
    // CKA_EC_POINT is the point in a DER OCTET STRING (67 bytes for P-256); some tokens
    // give it bare.
    let point = match point.as_deref() {
        Some([0x04, 0x41, rest @ ..]) if rest.len() == 65 => rest.to_vec(),
        Some(raw) if raw.len() == 65 && raw[0] == 0x04 => raw.to_vec(),
        _ => {
            return row(
                item,
                Outcome::Wrong(Problem::Ignored(IgnoreReason::Unreadable {
                    attribute: "CKA_EC_POINT",
                })),
            );
        }
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, MESSAGE);
    match session.sign(&Mechanism::Ecdsa, pair.private, digest.as_ref()) {
        Ok(signature) => match UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(MESSAGE, &signature) {
            Ok(()) => row(item, Outcome::Works),
            Err(_) => row(item, Outcome::Wrong(Problem::BadSignature)),
        },
        Err(e) => row(item, Outcome::of_error(Error::pkcs11(Operation::Sign)(e))),
    }
}
