//! Split trust, tried as an attacker who owns one server would: vault's token, PIN and
//! database do not open a stored secret, nor does a token minted with manager's key; a
//! revocation or destruction that commits while a read waits at the token releases
//! nothing; vault does not call a valid token invalid before it can judge it; rows sealed
//! before split trust still read back.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::envelope::{Binding, Envelope, EnvelopeError, KeyWrap, Recipient, Version, seal_version_1};
use contract::error_code::ErrorCode;
use contract::jwk::Jwk;
use contract::share::HolderShare;
use e2e::jwt::signed_by_managers_token;
use e2e::tokens::dev_pool;
use e2e::{Answer, Client, Launch, System, TokenServer, compact_part, dev_dir, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use service_kit::clock::unix_now;
use vault::storage::{Store, StoredSecret};

/// AES-256-GCM over a compact envelope's parts with `key` as the content key, bypassing every
/// check of the envelope's: what vault did with the key it unwraps before split trust.
fn decrypt_with_unwrapped_key(compact: &str, key: &[u8]) -> Result<Vec<u8>, &'static str> {
    let parts: Vec<&str> = compact.split('.').collect();
    let decode = |i: usize| URL_SAFE_NO_PAD.decode(parts[i]).map_err(|_| "base64");
    let iv: [u8; 12] = decode(2)?.try_into().map_err(|_| "iv")?;
    let mut buffer = [decode(3)?, decode(4)?].concat();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| "key")?);
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(parts[0].as_bytes()),
            &mut buffer,
        )
        .map_err(|_| "the GCM tag does not verify")?;
    Ok(plain.to_vec())
}

/// The share claim of an access token.
fn share_of(access_token: &str) -> Result<HolderShare> {
    Ok(serde_json::from_value(compact_part(access_token, 1)?["share"].clone())?)
}

/// Every file of vault's SQLite database (main file, WAL), concatenated.
fn database_bytes(system: &System) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(system.dir.path())? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("vault.db"))
        {
            bytes.extend(std::fs::read(path)?);
        }
    }
    Ok(bytes)
}

#[tokio::test]
async fn a_compromised_vault_with_its_token_pin_and_database_cannot_read_a_stored_secret() -> Result<()> {
    let system = System::start().await?;
    let secret = "correct horse battery staple";
    let stored = system.store("alice", secret).await?;
    println!("1. stored {secret:?} through manager: key_id {}", stored.key_id);

    // What the attacker holds: vault's database...
    let store = Store::open(&system.database_url(), unix_now).await?;
    let row = store.get(&stored.key_id).await?.context("the row")?;
    let header = compact_part(&row.envelope, 0)?;
    println!("2. read the row from vault's database; envelope header: {header}");
    assert!(
        !database_bytes(&system)?
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );
    println!("3. the plaintext is nowhere in the database files");

    // ...and vault's token with its PIN: the RSA-OAEP unwrap, inside the token.
    let envelope = Envelope::parse(&row.envelope)?;
    assert_eq!(envelope.version(), Version::V2);
    let hash = match envelope.key_wrap() {
        KeyWrap::RsaOaep => hsm::OaepHash::Sha1,
        KeyWrap::RsaOaep256 => hsm::OaepHash::Sha256,
    };
    let unwrapped = hsm::Decrypter::new(dev_pool("vault").await?, "vault-wrapping")
        .decrypt_oaep(hash, envelope.encrypted_key())
        .await?;
    println!(
        "4. unwrapped the row's key in vault's token, logged in with vault's PIN: {} bytes",
        unwrapped.len()
    );

    let direct = decrypt_with_unwrapped_key(&row.envelope, &unwrapped);
    println!(
        "5. AES-256-GCM with the unwrapped key as the content key: {:?}",
        direct.as_ref().err()
    );
    assert!(direct.is_err());
    let without_share = envelope.open(&unwrapped, None);
    println!(
        "6. the envelope opened with the unwrapped key and no share: {:?}",
        without_share.as_ref().err()
    );
    assert!(matches!(without_share, Err(EnvelopeError::ShareMismatch)));
    // Skipping the envelope's share check: the content key derived with a guessed share.
    let guessed_key = HolderShare::generate()?.content_key(&unwrapped);
    let guessed = decrypt_with_unwrapped_key(&row.envelope, guessed_key.as_ref());
    println!(
        "7. AES-256-GCM under HKDF(unwrapped key, a share of the attacker's choosing): {:?}",
        guessed.as_ref().err()
    );
    assert!(guessed.is_err());

    // The unwrap was the real one: the holder's share is exactly what was missing.
    let opened = envelope.open(&unwrapped, Some(&share_of(&stored.access_token)?))?;
    assert_eq!(opened.as_slice(), secret.as_bytes());
    println!("8. with the share from the holder's access token, the same unwrapped key opens it");
    Ok(())
}

#[tokio::test]
async fn a_token_minted_with_managers_key_from_its_log_opens_nothing() -> Result<()> {
    let system = System::start().await?;
    let stored = system
        .store_json(&json!({"user_id": "alice", "key_data": "only for the holder", "max_reads": 1}))
        .await?;

    // manager's log names the key_id with its owner; the share is in no log.
    let manager_log = system.manager.log_text();
    let line = manager_log
        .lines()
        .find(|line| line.contains("secret stored") && line.contains(&stored.key_id))
        .context("manager logs each store")?;
    assert!(line.contains("alice"), "{line}");
    let share_text = compact_part(&stored.access_token, 1)?["share"]
        .as_str()
        .context("the token carries a share")?
        .to_owned();
    assert!(!manager_log.contains(&share_text), "manager logged the share");
    assert!(!system.vault.log_text().contains(&share_text), "vault logged the share");

    // What a compromised manager can do: sign any claims with its key in its token.
    let header = compact_part(&stored.access_token, 0)?;
    let mut claims = compact_part(&stored.access_token, 1)?;
    let claims_map = claims.as_object_mut().context("claims")?;
    claims_map.remove("share");
    claims_map.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    let without_share = signed_by_managers_token(&header, &claims).await?;
    claims["share"] = json!(HolderShare::generate()?.to_base64url().as_str());
    let with_a_share_of_its_own = signed_by_managers_token(&header, &claims).await?;
    for (what, token) in [
        ("without a share", &without_share),
        ("with a share of its own", &with_a_share_of_its_own),
    ] {
        let (status, body) = system.read(&stored.key_id, token).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
        assert_eq!(error_code(&body)?, ErrorCode::TokenNotValidForKey, "{what}");
        assert!(body.get("decrypted_key").is_none(), "{what}");
    }

    // Nothing was consumed: the holder's one read is still there.
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "only for the holder");
    Ok(())
}

/// What lands while the read waits at the token.
#[derive(Debug, Clone, Copy)]
enum Meanwhile {
    Revoke,
    Destroy,
}

/// Stores a secret, stops vault's token server, starts a read (which waits at the token
/// for the unwrap), does `meanwhile` (which needs no token), resumes the token server and
/// returns what the read answered.
async fn read_held_at_the_token_while(meanwhile: Meanwhile) -> Result<Answer> {
    let dir = tempfile::tempdir()?;
    let vault_tokens = TokenServer::start(dir.path(), "vault").await?;
    let vault = Launch::vault(dir.path()).token_server(&vault_tokens).start().await?;
    let manager = Launch::manager(dir.path(), vault.addr("internal")).start().await?;
    let public = vault.addr("public");
    let stored = Client::new(manager.addr("api"))?
        .store("uma", "held at the token")
        .await?;

    // Two users, each with a connection open before the token stops: a new connection would
    // wait for a handshake signature from the stopped token.
    let (reader, other) = (Client::new(manager.addr("api"))?, Client::new(manager.addr("api"))?);
    for user in [&reader, &other] {
        let warm = user.http.get(format!("https://{public}/healthz")).send().await?;
        assert_eq!(warm.status(), StatusCode::OK);
    }

    vault_tokens.pause()?;
    let read = tokio::spawn({
        let (key_id, token) = (stored.key_id.clone(), stored.access_token.clone());
        async move { reader.read(public, &key_id, &token).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!read.is_finished(), "the read must be waiting for the stopped token");
    let (status, body) = match meanwhile {
        Meanwhile::Revoke => other.revoke(public, &stored.access_token).await?,
        Meanwhile::Destroy => other.destroy(public, &stored.key_id, &stored.access_token).await?,
    };
    assert_eq!(status, StatusCode::OK, "{meanwhile:?} while the read waits: {body}");
    assert!(
        !read.is_finished(),
        "the read must still be waiting for the stopped token"
    );
    vault_tokens.resume()?;
    read.await?
}

#[tokio::test]
async fn a_read_waiting_at_the_token_releases_nothing_once_its_token_is_revoked() -> Result<()> {
    let (status, body) = read_held_at_the_token_while(Meanwhile::Revoke).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::RevokedToken);
    assert!(body.get("decrypted_key").is_none());
    Ok(())
}

#[tokio::test]
async fn a_read_waiting_at_the_token_releases_nothing_once_the_secret_is_destroyed() -> Result<()> {
    let (status, body) = read_held_at_the_token_while(Meanwhile::Destroy).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::KeyNotFound);
    assert!(body.get("decrypted_key").is_none());
    Ok(())
}

#[tokio::test]
async fn vault_answers_503_never_401_until_it_has_loaded_managers_keys() -> Result<()> {
    let mut system = System::start_with_jwks_url(&[], &[]).await?;
    let stored = system.store("vic", "worth the wait").await?;
    let manager_addr = system.manager.addr("api");
    let jwks = format!("https://{manager_addr}/.well-known/jwks.json");

    // manager is down while vault restarts: vault cannot load manager's keys.
    system.manager.kill().await?;
    system.vault.kill().await?;
    let vault = Launch::vault(system.dir.path())
        .args(&["--manager-jwks", &jwks])
        .start()
        .await?;
    let http = system.http();
    let read_url = format!("https://{}/api/keys/{}", vault.addr("public"), stored.key_id);
    for _ in 0..3 {
        let response = http.get(&read_url).bearer_auth(&stored.access_token).send().await?;
        let retry_after = response.headers().get("retry-after").cloned();
        let (status, body) = e2e::answer(response).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(error_code(&body)?, ErrorCode::JwksUnavailable);
        assert!(retry_after.is_some(), "503 without Retry-After");
    }
    let ready = http
        .get(format!("https://{}/readyz", vault.addr("public")))
        .send()
        .await?;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // manager is back on its address: vault loads its keys and the same token reads.
    let _manager = Launch::manager(system.dir.path(), vault.addr("internal"))
        .args(&["--listen", &manager_addr.to_string()])
        .start()
        .await?;
    e2e::wait_ready(http, &format!("https://{}/readyz", vault.addr("public"))).await?;
    let response = http.get(&read_url).bearer_auth(&stored.access_token).send().await?;
    let (status, body) = e2e::answer(response).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "worth the wait");
    Ok(())
}

#[tokio::test]
async fn an_envelope_stored_before_split_trust_still_reads_back() -> Result<()> {
    let system = System::start().await?;
    // A genuine token of today, for manager's kid, issuer and audience.
    let genuine = system.store("old", "a new secret").await?;
    let header = compact_part(&genuine.access_token, 0)?;
    let today = compact_part(&genuine.access_token, 1)?;

    // A row as manager wrote it before version 2: sealed to vault's wrapping key with no
    // share, its token without a share claim.
    let jwk: Jwk = serde_json::from_str(&std::fs::read_to_string(
        dev_dir()?.join("keys/vault-wrapping.jwk.json"),
    )?)?;
    let key_id = uuid::Uuid::new_v4().to_string();
    let envelope = seal_version_1(
        &Recipient::from_jwk(&jwk)?,
        KeyWrap::RsaOaep,
        Binding {
            key_id: &key_id,
            user_id: "old",
        },
        b"sealed before split trust",
    )?;
    let now = unix_now();
    let store = Store::open(&system.database_url(), unix_now).await?;
    store
        .put(
            &StoredSecret {
                key_id: key_id.clone(),
                user_id: "old".into(),
                envelope,
                created_at: now,
                expires_at: now + 3600,
                reads_left: None,
                wrap_kid: None,
            },
            None,
        )
        .await?;
    let claims = |share: Option<String>| -> Value {
        let mut claims = json!({
            "iss": today["iss"], "aud": today["aud"], "sub": "old", "key_id": key_id,
            "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "nbf": now, "exp": now + 3600,
            "scope": today["scope"],
        });
        if let Some(share) = share {
            claims["share"] = json!(share);
        }
        claims
    };
    let old_token = signed_by_managers_token(&header, &claims(None)).await?;
    let (status, body) = system.read(&key_id, &old_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "sealed before split trust");

    // A token with a share is for a version-2 secret: it does not open a version-1 row (an
    // attacker who can write the database cannot downgrade a secret to what vault opens
    // alone).
    let share = HolderShare::generate()?.to_base64url().to_string();
    let with_share = signed_by_managers_token(&header, &claims(Some(share))).await?;
    let (status, body) = system.read(&key_id, &with_share).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::TokenNotValidForKey);
    Ok(())
}
