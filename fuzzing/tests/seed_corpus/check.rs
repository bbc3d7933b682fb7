//! What each checked-in seed is: it parses, and a token verifies or fails as its name says.

use std::fs;
use std::time::Duration;

use contract::claims::{AccessClaims, JwsAlgorithm};
use contract::envelope::{Envelope, Version};
use contract::jwk::{Jwk, JwkSet, RsaPublicKey};
use contract::share::HolderShare;
use contract::wire::{StoreEnvelopeRequest, StoreKeyRequest};
use fuzzing::{ACCESS_TOKEN_AUDIENCE, ACCESS_TOKEN_ISSUER, FIXED_SHARE};
use vault::access_token::{AccessTokenError, Expectations, Verifier};
use vault::jwks::JwksSource;

use crate::{Result, fuzzing_dir, seeds};

/// The checked-in verifier fixture, as the access-token target builds it.
fn fixture_verifier(runtime: &tokio::runtime::Runtime) -> Result<Verifier> {
    let jwks = tempfile::NamedTempFile::new()?;
    fs::copy(fuzzing_dir().join("fixtures/manager-jwks.json"), jwks.path())?;
    let expect = Expectations {
        algorithms: vec![JwsAlgorithm::Rs256, JwsAlgorithm::Ps256],
        issuer: ACCESS_TOKEN_ISSUER.into(),
        audience: ACCESS_TOKEN_AUDIENCE.into(),
        leeway_seconds: 60,
    };
    let source = JwksSource::File(jwks.path().to_owned());
    Ok(runtime.block_on(Verifier::new(source, &expect, Duration::from_secs(3600)))?)
}

#[test]
fn seed_tokens_verify_or_fail_as_their_names_say() -> Result {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let verifier = fixture_verifier(&runtime)?;
    let signed = fs::read_to_string(fuzzing_dir().join("fixtures/signed-tokens.txt"))?;
    for (name, token) in seeds("access_token")? {
        let token = String::from_utf8(token)?;
        let result = runtime.block_on(verifier.verify(&token));
        assert_eq!(
            signed.lines().any(|t| t == token),
            !name.starts_with("forged"),
            "{name}"
        );
        match name.as_str() {
            n if n.starts_with("valid") => assert!(result.is_ok(), "{name}: {result:?}"),
            "signed-wrong-scope" => assert!(matches!(result, Err(AccessTokenError::Scope)), "{name}"),
            "forged-own-kid" | "forged-no-kid" => {
                assert!(matches!(result, Err(AccessTokenError::UnknownKey(_))), "{name}")
            }
            "forged-hs256" => assert!(
                matches!(result, Err(AccessTokenError::AlgorithmNotAccepted(_))),
                "{name}"
            ),
            "forged-alg-none" => assert!(matches!(result, Err(AccessTokenError::Malformed(_))), "{name}"),
            _ => assert!(
                matches!(result, Err(AccessTokenError::Rejected(_))),
                "{name}: {result:?}"
            ),
        }
    }
    Ok(())
}

#[test]
fn every_other_seed_is_accepted_by_its_parser() -> Result {
    let fixed = HolderShare::from_base64url(FIXED_SHARE)?;
    for (name, seed) in seeds("envelope")? {
        let envelope = Envelope::parse(std::str::from_utf8(&seed)?)?;
        let fits_fixed = name.contains("fixed-share");
        assert_eq!(envelope.check_share(Some(&fixed)).is_ok(), fits_fixed, "{name}");
        assert_eq!(envelope.version() == Version::V1, name.starts_with("v1"), "{name}");
    }
    for (name, seed) in seeds("jwk_document")? {
        let keys = match serde_json::from_slice::<JwkSet>(&seed) {
            Ok(set) => set.keys,
            Err(_) => vec![serde_json::from_slice::<Jwk>(&seed)?],
        };
        for jwk in &keys {
            RsaPublicKey::from_jwk(jwk).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    for (name, seed) in seeds("access_claims")? {
        let parsed = serde_json::from_slice::<AccessClaims>(&seed).is_ok()
            || std::str::from_utf8(&seed)?.parse::<JwsAlgorithm>().is_ok();
        assert!(parsed, "{name}");
    }
    for (name, seed) in seeds("holder_share")? {
        let parsed = HolderShare::from_base64url(std::str::from_utf8(&seed)?).is_ok()
            || serde_json::from_slice::<HolderShare>(&seed).is_ok();
        assert!(parsed, "{name}");
    }
    for (_, seed) in seeds("store_key_request")? {
        serde_json::from_slice::<StoreKeyRequest>(&seed)?;
    }
    for (_, seed) in seeds("store_envelope_request")? {
        let request: StoreEnvelopeRequest = serde_json::from_slice(&seed)?;
        Envelope::parse(&request.envelope)?;
    }
    for (name, seed) in seeds("spki")? {
        assert!(hsm::PublicKeyInfo::from_spki_der(&seed).is_some(), "{name}");
    }
    for (name, seed) in seeds("pkcs1_private_key")? {
        assert!(hsm::RsaPrivateComponents::from_pkcs1_der(&seed).is_some(), "{name}");
    }
    for (name, seed) in seeds("der_element")? {
        let (tag, input) = seed.split_first().ok_or("empty seed")?;
        assert!(hsm::der::value(input, *tag).is_some(), "{name}");
    }
    for (name, seed) in seeds("rsa_components")? {
        let (len, rest) = seed.split_first_chunk::<2>().ok_or("short seed")?;
        let (n, e) = rest.split_at(usize::from(u16::from_be_bytes(*len)));
        assert!(hsm::RsaPublicComponents::new(n, e).is_some(), "{name}");
    }
    Ok(())
}
