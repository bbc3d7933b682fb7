//! vault accepts only manager's genuine, unexpired tokens, and only for their own key.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::error_code::ErrorCode;
use e2e::Implementation;
use e2e::jwt::forge;
use e2e::{System, error_code, read_at};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_part(token: &str, index: usize) -> Result<Value> {
    e2e::compact_part(token, index)
}

/// An RSA-2048 key generated in software: an attacker's key.
fn attacker_key() -> Result<aws_lc_rs::rsa::KeyPair> {
    Ok(aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?)
}

fn rs256(key: &aws_lc_rs::rsa::KeyPair) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |message| {
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature)
            .expect("software signing");
        signature
    }
}

async fn assert_refused_with_401(system: &System, key_id: &str, token: &str, what: &str) -> Result<()> {
    let (status, body) = system.read(key_id, token).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(error_code(&body)?, ErrorCode::InvalidToken, "{what}");
    assert!(body.get("decrypted_key").is_none());
    Ok(())
}

#[tokio::test]
async fn a_token_for_one_key_is_refused_on_another_key_with_403() -> Result<()> {
    let system = System::start().await?;
    let first = system.store("alice", "first").await?;
    let second = system.store("alice", "second").await?;
    let (status, body) = system.read(&second.key_id, &first.access_token).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::TokenNotValidForKey);
    Ok(())
}

on_each_token!(forged_tokens_are_refused_with_401);

async fn forged_tokens_are_refused_with_401(implementation: Implementation) -> Result<()> {
    let system = System::start_on(implementation, &[], &[]).await?;
    let stored = system.store("alice", "the real secret").await?;
    let header = decode_part(&stored.access_token, 0)?;
    let claims = decode_part(&stored.access_token, 1)?;
    let kid = header["kid"].clone();

    let alg_none = forge(&json!({"alg": "none", "typ": "JWT"}), &claims, |_| Vec::new());
    assert_refused_with_401(&system, &stored.key_id, &alg_none, "alg none").await?;
    let alg_none_with_kid = forge(&json!({"alg": "none", "typ": "JWT", "kid": kid}), &claims, |_| {
        Vec::new()
    });
    assert_refused_with_401(&system, &stored.key_id, &alg_none_with_kid, "alg none with kid").await?;

    // The classic confusion: HMAC keyed with the verifier's RSA public key.
    let public_pem = std::fs::read(implementation.dev_dir()?.join("keys/manager-signing.pem"))?;
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public_pem);
    let hs256 = forge(&json!({"alg": "HS256", "typ": "JWT", "kid": kid}), &claims, |m| {
        aws_lc_rs::hmac::sign(&hmac_key, m).as_ref().to_vec()
    });
    assert_refused_with_401(&system, &stored.key_id, &hs256, "HS256 with the public key").await?;

    // Payload edited under the original signature.
    let mut edited = claims.clone();
    edited["sub"] = json!("mallory");
    edited["exp"] = json!(claims["exp"].as_u64().unwrap_or(0) + 86_400);
    let signature = stored.access_token.rsplit('.').next().unwrap_or_default();
    let tampered = format!(
        "{}.{}.{signature}",
        stored.access_token.split('.').next().unwrap_or_default(),
        b64(edited.to_string().as_bytes())
    );
    assert_refused_with_401(&system, &stored.key_id, &tampered, "edited payload").await?;

    // Signed by another RSA key that claims manager's kid.
    let attacker = attacker_key()?;
    let impostor = forge(&header, &claims, rs256(&attacker));
    assert_refused_with_401(&system, &stored.key_id, &impostor, "other key with manager's kid").await?;

    // The attacker's public key embedded in the header, with and without manager's kid.
    let components: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = attacker.public_key().into();
    let jwk = json!({"kty": "RSA", "n": b64(&components.n), "e": b64(&components.e)});
    for embedded in [
        json!({"alg": "RS256", "typ": "JWT", "jwk": jwk}),
        json!({"alg": "RS256", "typ": "JWT", "kid": kid, "jwk": jwk}),
    ] {
        let token = forge(&embedded, &claims, rs256(&attacker));
        assert_refused_with_401(&system, &stored.key_id, &token, "embedded jwk").await?;
    }

    // A genuine token still works afterwards.
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test]
async fn an_expired_token_is_refused_with_401() -> Result<()> {
    let system = System::start_with(&["--leeway-seconds", "0"], &[]).await?;
    let (status, body) = system
        .post_keys(&json!({"user_id": "alice", "key_data": "short-lived", "ttl_seconds": 1}))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key_id = body["key_id"].as_str().unwrap_or_default().to_owned();
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    let exp = decode_part(&token, 1)?["exp"].as_u64().unwrap_or(0);
    // Wait out the token's lifetime on the wall clock (not a readiness wait).
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        <= exp
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_refused_with_401(&system, &key_id, &token, "expired").await
}

#[tokio::test]
async fn missing_or_garbage_authorization_is_refused_with_401_and_a_bearer_challenge() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("alice", "s").await?;
    let vault = system.vault.addr("public");
    for (authorization, code) in [
        (None, ErrorCode::MissingToken),
        (Some("Basic YWxpY2U6cHc="), ErrorCode::MissingToken),
        (Some("Bearer"), ErrorCode::MissingToken),
        (Some("Bearer not.a.jwt"), ErrorCode::InvalidToken),
        (Some("Bearer ¿garbage?"), ErrorCode::InvalidToken),
        (Some("Bearer eyJhbGciOiJSUzI1NiJ9.e30.AAAA"), ErrorCode::InvalidToken),
    ] {
        let response = {
            let mut request = system.http().get(format!("https://{vault}/api/keys/{}", stored.key_id));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            request.send().await?
        };
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{authorization:?}: {challenge:?}");
        let body: Value = response.json().await?;
        assert_eq!(error_code(&body)?, code, "{authorization:?}");
    }
    let (status, _) = read_at(
        system.http(),
        vault,
        &stored.key_id,
        Some(&format!("Bearer {}", stored.access_token)),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_slow_jwks_fetch_does_not_hold_up_other_tokens_with_unknown_kids() -> Result<()> {
    use std::sync::Arc;
    use vault::access_token::{AccessTokenError, Expectations, Verifier};
    use vault::jwks::JwksSource;

    // A "manager" that answers the first connection with bytes that are no TLS (vault's
    // start-up fetch fails at once) and then accepts connections and never answers (a
    // fetch hangs until its timeout).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}/.well-known/jwks.json", listener.local_addr()?);
    let (in_flight, mut fetching) = tokio::sync::mpsc::channel::<()>(8);
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        let mut first = true;
        while let Ok((socket, _)) = listener.accept().await {
            if std::mem::take(&mut first) {
                use tokio::io::AsyncWriteExt as _;
                let mut socket = socket;
                let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            } else {
                held.push(socket);
                let _ = in_flight.send(()).await;
            }
        }
    });
    let source = JwksSource::new(&url, &e2e::dev_dir()?.join("tls/ca.pem"))?;
    let expect = Expectations {
        algorithms: vec![contract::claims::JwsAlgorithm::Rs256],
        issuer: "https://manager".into(),
        audience: "vault".into(),
        leeway_seconds: 5,
    };
    let verifier = Arc::new(Verifier::new(source, &expect, Duration::from_secs(60)).await?);
    // While no key is loaded, vault fetches at most once a second: let the start-up fetch's
    // second pass, so that the next unknown kid starts a fetch.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let token = |kid: &str| {
        forge(&json!({"alg": "RS256", "typ": "JWT", "kid": kid}), &json!({}), |_| {
            vec![1]
        })
    };

    // One token with an unknown kid starts a fetch, which hangs...
    let first = tokio::spawn({
        let (verifier, token) = (verifier.clone(), token("first"));
        async move { verifier.verify(&token).await.map(|_| ()) }
    });
    fetching.recv().await.context("the first fetch never connected")?;
    // ...and another is answered meanwhile, without waiting for it.
    let second = verifier.verify(&token("second")).await;
    assert!(matches!(second, Err(AccessTokenError::KeysNotLoaded)), "{second:?}");
    assert!(
        !first.is_finished(),
        "the second answer must not wait for the first fetch"
    );
    first.abort();
    server.abort();
    Ok(())
}
