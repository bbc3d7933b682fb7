//! How the seeds are made: keys generated here and thrown away, tokens, envelopes, JWKs and
//! DER written the way the system writes them.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::claims::{AccessClaims, JwsAlgorithm, READ_SCOPE};
use contract::envelope::{Binding, Envelope, KeyWrap, Recipient, seal, seal_version_1};
use contract::jwk::{Jwk, JwkSet, RsaPublicKey};
use contract::share::HolderShare;
use contract::wire::StoreEnvelopeRequest;
use fuzzing::{ACCESS_TOKEN_AUDIENCE, ACCESS_TOKEN_ISSUER, FIXED_SHARE};
use serde_json::json;

use crate::{Result, fuzzing_dir, write_seeds};

/// 2100-01-01: seed tokens stay valid for the corpus's lifetime.
const FAR_FUTURE: u64 = 4_102_444_800;

fn rsa_key(size: KeySize) -> Result<(KeyPair, RsaPublicKey)> {
    let pair = KeyPair::generate(size)?;
    let components: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
    let public = RsaPublicKey::from_components(&components.n, &components.e)?;
    Ok((pair, public))
}

/// A compact JWS as manager's issuer writes it: `b64(header).b64(claims).b64(signature)`.
fn sign_jws(
    header: &serde_json::Value,
    claims: &impl serde::Serialize,
    key: &KeyPair,
    alg: JwsAlgorithm,
) -> Result<String> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
    );
    let padding: &'static dyn RsaEncoding = match alg {
        JwsAlgorithm::Rs256 => &RSA_PKCS1_SHA256,
        JwsAlgorithm::Ps256 => &RSA_PSS_SHA256,
    };
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut signature)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

fn claims(now: u64, key_id: &str, share: Option<HolderShare>) -> AccessClaims {
    AccessClaims {
        iss: ACCESS_TOKEN_ISSUER.into(),
        aud: ACCESS_TOKEN_AUDIENCE.into(),
        sub: "alice".into(),
        key_id: key_id.into(),
        jti: format!("0b7c1e9a-54f3-4d8e-9a61-{now:012x}"),
        iat: now,
        nbf: now,
        exp: FAR_FUTURE,
        scope: READ_SCOPE.into(),
        share,
    }
}

const KEY_ID: &str = "6f1d2c3b-8a4e-4b7f-9c2d-1e0f3a5b7c9d";

/// Access tokens (and their claims and shares), manager's JWKS and the signed-token list.
fn access_token_seeds(now: u64) -> Result {
    let (rs_key, rs_public) = rsa_key(KeySize::Rsa2048)?;
    let (ps_key, ps_public) = rsa_key(KeySize::Rsa2048)?;
    let (outsider, outsider_public) = rsa_key(KeySize::Rsa2048)?;
    let header = |alg: JwsAlgorithm, kid: &str| json!({"alg": alg.jose_name(), "typ": "JWT", "kid": kid});
    let rs = header(JwsAlgorithm::Rs256, &rs_public.thumbprint());
    let ps = header(JwsAlgorithm::Ps256, &ps_public.thumbprint());
    let share = HolderShare::generate()?;

    let with_share = claims(now, KEY_ID, Some(share.clone()));
    let without_share = claims(now, KEY_ID, None);
    let other_scope = AccessClaims {
        scope: "secrets:write".into(),
        ..with_share.clone()
    };
    let expired = AccessClaims {
        iat: 1_600_000_000,
        nbf: 1_600_000_000,
        exp: 1_600_000_600,
        ..with_share.clone()
    };
    let signed = [
        (
            "valid-rs256-share",
            sign_jws(&rs, &with_share, &rs_key, JwsAlgorithm::Rs256)?,
        ),
        (
            "valid-ps256-share",
            sign_jws(&ps, &with_share, &ps_key, JwsAlgorithm::Ps256)?,
        ),
        (
            "valid-rs256-no-share",
            sign_jws(&rs, &without_share, &rs_key, JwsAlgorithm::Rs256)?,
        ),
        (
            "signed-wrong-scope",
            sign_jws(&rs, &other_scope, &rs_key, JwsAlgorithm::Rs256)?,
        ),
        ("signed-expired", sign_jws(&rs, &expired, &rs_key, JwsAlgorithm::Rs256)?),
    ];
    let outsider_kid = outsider_public.thumbprint();
    let forged = [
        (
            "forged-managers-kid",
            sign_jws(&rs, &with_share, &outsider, JwsAlgorithm::Rs256)?,
        ),
        (
            "forged-own-kid",
            sign_jws(
                &header(JwsAlgorithm::Rs256, &outsider_kid),
                &with_share,
                &outsider,
                JwsAlgorithm::Rs256,
            )?,
        ),
        (
            "forged-no-kid",
            sign_jws(
                &json!({"alg": "RS256", "typ": "JWT"}),
                &with_share,
                &outsider,
                JwsAlgorithm::Rs256,
            )?,
        ),
        (
            "forged-hs256",
            sign_jws(
                &json!({"alg": "HS256", "typ": "JWT", "kid": rs_public.thumbprint()}),
                &with_share,
                &outsider,
                JwsAlgorithm::Rs256,
            )?,
        ),
        (
            "forged-alg-none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with_share)?)
            ),
        ),
    ];
    let token_seeds: Vec<(&str, Vec<u8>)> = signed
        .iter()
        .chain(&forged)
        .map(|(name, token)| (*name, token.clone().into_bytes()))
        .collect();
    write_seeds("access_token", &token_seeds)?;

    let jwks = JwkSet {
        keys: vec![rs_public.to_jwk("RS256", "sig"), ps_public.to_jwk("PS256", "sig")],
    };
    fs::write(
        fuzzing_dir().join("fixtures/manager-jwks.json"),
        serde_json::to_string_pretty(&jwks)? + "\n",
    )?;
    let list: String = signed.iter().map(|(_, token)| format!("{token}\n")).collect();
    fs::write(fuzzing_dir().join("fixtures/signed-tokens.txt"), list)?;

    write_seeds(
        "access_claims",
        &[
            ("claims-share.json", serde_json::to_vec(&with_share)?),
            ("claims-no-share.json", serde_json::to_vec(&without_share)?),
            ("claims-pretty.json", serde_json::to_vec_pretty(&other_scope)?),
            ("alg-rs256", b"RS256".to_vec()),
            ("alg-ps256", b"PS256".to_vec()),
        ],
    )?;
    write_seeds(
        "holder_share",
        &[
            ("share", share.to_base64url().as_bytes().to_vec()),
            ("fixed-share", FIXED_SHARE.as_bytes().to_vec()),
            ("share-json", serde_json::to_vec(&share)?),
        ],
    )?;
    write_seeds(
        "jwk_document",
        &[
            ("manager-jwks.json", serde_json::to_vec(&jwks)?),
            ("manager-jwk-rs256.json", serde_json::to_vec(&jwks.keys[0])?),
            (
                "outsider-jwk-no-kid.json",
                serde_json::to_vec(&Jwk {
                    kid: None,
                    alg: None,
                    use_: None,
                    ..outsider_public.to_jwk("RS256", "sig")
                })?,
            ),
        ],
    )?;
    Ok(())
}

/// Envelopes sealed to a vault wrapping key, and the bodies that carry them.
fn envelope_seeds(now: u64) -> Result {
    let (_, vault_2048) = rsa_key(KeySize::Rsa2048)?;
    let (_, vault_3072) = rsa_key(KeySize::Rsa3072)?;
    let small = Recipient::from_public_key(&vault_2048)?;
    let large = Recipient::from_public_key(&vault_3072)?;
    let fixed = HolderShare::from_base64url(FIXED_SHARE)?;
    let random = HolderShare::generate()?;
    let alice = Binding {
        key_id: KEY_ID,
        user_id: "alice",
    };
    let bob = Binding {
        key_id: "0c8e2b4d-1f3a-4c5e-8d7f-9a0b1c2d3e4f",
        user_id: "bob_77",
    };
    let envelopes = [
        (
            "v2-oaep-fixed-share",
            seal(&small, KeyWrap::RsaOaep, alice, &fixed, b"hunter2")?,
        ),
        (
            "v2-oaep256-fixed-share",
            seal(&small, KeyWrap::RsaOaep256, bob, &fixed, "pässwörd ✓".as_bytes())?,
        ),
        (
            "v2-oaep-3072",
            seal(&large, KeyWrap::RsaOaep, alice, &random, &[b'x'; 300])?,
        ),
        ("v2-oaep-empty", seal(&small, KeyWrap::RsaOaep, bob, &random, b"")?),
        (
            "v1-oaep",
            seal_version_1(&small, KeyWrap::RsaOaep, alice, b"from before split trust")?,
        ),
    ];
    let seeds: Vec<(&str, Vec<u8>)> = envelopes.iter().map(|(n, e)| (*n, e.clone().into_bytes())).collect();
    write_seeds("envelope", &seeds)?;

    let bodies: Vec<(&str, Vec<u8>)> = envelopes[..3]
        .iter()
        .zip([Some(1), None, Some(5)])
        .map(|((name, envelope), max_reads)| {
            let request = StoreEnvelopeRequest {
                user_id: Envelope::parse(envelope)
                    .map(|e| e.header().user_id.clone())
                    .unwrap_or_default(),
                envelope: envelope.clone(),
                expires_at: now + 3600,
                max_reads,
            };
            serde_json::to_vec(&request).map(|body| (*name, body))
        })
        .collect::<std::result::Result<_, _>>()?;
    write_seeds("store_envelope_request", &bodies)?;

    write_seeds(
        "store_key_request",
        &[
            ("minimal.json", br#"{"user_id":"alice","key_data":"s3cr3t"}"#.to_vec()),
            (
                "ttl.json",
                br#"{"user_id": "alice", "key_data": "hunter2", "ttl_seconds": 3600}"#.to_vec(),
            ),
            (
                "one-time.json",
                br#"{"user_id":"bob_77","key_data":"4111111111111111","ttl_seconds":60,"max_reads":1}"#.to_vec(),
            ),
            (
                "unicode.json",
                "{\"user_id\":\"carol\",\"key_data\":\"p\\u00e4ss \\\"w\\u00f6rd\\\" \u{2713}\\n\",\"max_reads\":3}"
                    .as_bytes()
                    .to_vec(),
            ),
        ],
    )?;
    Ok(())
}

/// SPKI, PKCS#1, DER elements and token-reported RSA components.
fn der_seeds() -> Result {
    let (rsa_2048, public_2048) = rsa_key(KeySize::Rsa2048)?;
    let (rsa_3072, public_3072) = rsa_key(KeySize::Rsa3072)?;
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)?;
    let spki_2048 = rsa_2048.public_key().as_der()?.as_ref().to_vec();
    let spki_3072 = rsa_3072.public_key().as_der()?.as_ref().to_vec();
    let spki_ec = ec.public_key().as_der()?.as_ref().to_vec();
    write_seeds(
        "spki",
        &[
            ("rsa-2048.der", spki_2048.clone()),
            ("rsa-3072.der", spki_3072),
            ("p256.der", spki_ec),
        ],
    )?;

    // PKCS#8 PrivateKeyInfo ::= SEQUENCE { version, algorithm, OCTET STRING RSAPrivateKey }
    let pkcs1 = |pair: &KeyPair| -> Result<Vec<u8>> {
        let pkcs8 = pair.as_der()?;
        let (info, _) = hsm::der::value(pkcs8.as_ref(), 0x30).ok_or("PKCS#8")?;
        let (_, rest) = hsm::der::value(info, 0x02).ok_or("version")?;
        let (_, rest) = hsm::der::value(rest, 0x30).ok_or("algorithm")?;
        let (key, _) = hsm::der::value(rest, 0x04).ok_or("private key")?;
        Ok(key.to_vec())
    };
    write_seeds(
        "pkcs1_private_key",
        &[
            ("throwaway-2048.der", pkcs1(&rsa_2048)?),
            ("throwaway-3072.der", pkcs1(&rsa_3072)?),
        ],
    )?;

    let point = ec.public_key().as_ref();
    let (spki_body, _) = hsm::der::value(&spki_2048, 0x30).ok_or("SPKI")?;
    let tagged = |tag: u8, element: &[u8]| [&[tag][..], element].concat();
    write_seeds(
        "der_element",
        &[
            ("spki-sequence", tagged(0x30, &spki_2048)),
            ("bit-string", tagged(0x03, &spki_body[15..])),
            ("ec-point-octets", tagged(0x04, &[&[0x04, 0x41][..], point].concat())),
            ("integer-zero", tagged(0x02, &[0x02, 0x01, 0x00, 0xff])),
        ],
    )?;

    let components = |public: &RsaPublicKey, pad: usize, exponent_pad: usize| {
        let n = [vec![0; pad], public.modulus().to_vec()].concat();
        let e = [vec![0; exponent_pad], public.exponent().to_vec()].concat();
        let len = u16::try_from(n.len()).unwrap_or(u16::MAX).to_be_bytes();
        [&len[..], &n, &e].concat()
    };
    write_seeds(
        "rsa_components",
        &[
            ("rsa-2048", components(&public_2048, 0, 0)),
            ("rsa-2048-leading-zeros", components(&public_2048, 1, 5)),
            ("rsa-3072", components(&public_3072, 0, 0)),
        ],
    )?;
    Ok(())
}

#[test]
#[ignore = "rewrites fuzz/corpus and fuzzing/fixtures: run by hand, then review and commit"]
fn write_seed_corpus() -> Result {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    access_token_seeds(now)?;
    envelope_seeds(now)?;
    der_seeds()
}
