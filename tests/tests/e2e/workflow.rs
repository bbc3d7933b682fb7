//! The seed's workflow through the real services: store at manager, read at vault.

use anyhow::{Result, ensure};
use e2e::{Implementation, System};
use reqwest::StatusCode;
use tokio::task::JoinSet;

on_each_token!(stores_a_secret_and_reads_it_back_with_the_token);

/// The content key is wrapped with the OAEP vault's token opens, found out by vault at
/// start-up and followed by manager (`key_wrap = "auto"`): SHA-256 on Kryoptic, SHA-1
/// on SoftHSM2 2.6.1, which refuses OAEP with SHA-256.
async fn stores_a_secret_and_reads_it_back_with_the_token(implementation: Implementation) -> Result<()> {
    let system = System::start_on(implementation, &[], &[]).await?;
    let stored = system.store("alice", "correct horse battery staple").await?;
    assert_eq!(stored.message, "Key stored successfully");
    assert_eq!(stored.token_type, "Bearer");
    assert!(stored.expires_at.ends_with('Z'), "RFC 3339 UTC: {}", stored.expires_at);
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "correct horse battery staple");
    let expected = match implementation {
        Implementation::SoftHsm => "RSA-OAEP",
        Implementation::Kryoptic => "RSA-OAEP-256",
    };
    assert_eq!(system.envelope_header(&stored.key_id).await?["alg"], expected);
    Ok(())
}

#[tokio::test]
async fn unicode_and_60_kib_secrets_round_trip_unchanged() -> Result<()> {
    let system = System::start().await?;
    let unicode = "pässwörd 🔐 秘密 ключ \u{0} \"quoted\" \\ tab\t";
    let large: String = "0123456789abcdef".repeat(60 * 1024 / 16);
    assert_eq!(large.len(), 60 * 1024);
    for secret in [unicode, large.as_str()] {
        let stored = system.store("bob", secret).await?;
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["decrypted_key"].as_str(), Some(secret));
    }
    Ok(())
}

#[tokio::test]
async fn a_hundred_concurrent_store_and_read_pairs_all_return_their_own_secret() -> Result<()> {
    let system = std::sync::Arc::new(System::start().await?);
    let mut tasks = JoinSet::new();
    for i in 0..100 {
        let system = system.clone();
        tasks.spawn(async move {
            let secret = format!("secret number {i} {}", uuid::Uuid::new_v4());
            let stored = system.store(&format!("user{i}"), &secret).await?;
            let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
            ensure!(status == StatusCode::OK, "read {i}: {status} {body}");
            ensure!(
                body["decrypted_key"].as_str() == Some(secret.as_str()),
                "pair {i} got {body}"
            );
            Ok(())
        });
    }
    let mut done = 0;
    while let Some(result) = tasks.join_next().await {
        result??;
        done += 1;
    }
    assert_eq!(done, 100);
    Ok(())
}

#[tokio::test]
async fn tokens_carry_the_kid_published_in_managers_jwks() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("carol", "x").await?;
    let jwks = system.manager_jwks().await?;
    let header = e2e::compact_part(&stored.access_token, 0)?;
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    let payload = e2e::compact_part(&stored.access_token, 1)?;
    for claim in ["iss", "aud", "sub", "key_id", "jti", "iat", "nbf", "exp", "scope"] {
        assert!(payload.get(claim).is_some(), "missing claim {claim}: {payload}");
    }
    assert_eq!(payload["sub"], "carol");
    assert_eq!(payload["key_id"].as_str(), Some(stored.key_id.as_str()));
    Ok(())
}

#[tokio::test]
async fn both_services_report_ready_and_healthy() -> Result<()> {
    let system = System::start().await?;
    for url in [
        system.manager_url("/healthz"),
        system.manager_url("/readyz"),
        system.vault_url("/healthz"),
        system.vault_url("/readyz"),
    ] {
        let response = system.http().get(&url).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
    }
    Ok(())
}

#[tokio::test]
async fn neither_secrets_nor_tokens_appear_in_the_logs() -> Result<()> {
    let system = System::start().await?;
    let secret = format!("log-canary-{}", uuid::Uuid::new_v4());
    let stored = system.store("dave", &secret).await?;
    system.read(&stored.key_id, &stored.access_token).await?;
    system.read(&stored.key_id, "not-a-token").await?;
    let logs = system.vault.log_text() + &system.manager.log_text();
    assert!(
        logs.contains(&stored.key_id),
        "the logs should record the key_id at least"
    );
    assert!(!logs.contains(&secret), "secret leaked into logs");
    let signature = stored.access_token.rsplit('.').next().unwrap_or_default();
    assert!(!logs.contains(signature), "token leaked into logs");
    for pin in ["manager.pin", "vault.pin"] {
        let pin = std::fs::read_to_string(e2e::dev_dir()?.join("pins").join(pin))?;
        assert!(!logs.contains(pin.trim()), "PIN leaked into logs");
    }
    Ok(())
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_without_key_ids() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("grace", "metered").await?;
    system.read(&stored.key_id, &stored.access_token).await?;
    system.read(&stored.key_id, "bogus").await?;
    let vault = system.text(&system.vault_url("/metrics")).await?;
    assert!(
        vault.contains(r#"http_requests_total{method="GET",route="/api/keys/{key_id}",status="200"} 1"#),
        "{vault}"
    );
    assert!(
        vault.contains(r#"http_requests_total{method="GET",route="/api/keys/{key_id}",status="401"} 1"#),
        "{vault}"
    );
    assert!(!vault.contains(&stored.key_id), "metrics must not carry key ids");
    let manager = system.text(&system.manager_url("/metrics")).await?;
    assert!(
        manager.contains(r#"http_requests_total{method="POST",route="/api/keys",status="201"} 1"#),
        "{manager}"
    );
    Ok(())
}

/// manager forced to RSA-OAEP-256 in front of SoftHSM2 (which opens only SHA-1 OAEP): vault
/// refuses the envelope at the door, so no secret is stored that could never be read.
#[tokio::test]
async fn an_envelope_the_vault_token_cannot_open_is_refused_and_nothing_is_stored() -> Result<()> {
    let system = System::start_with(&[], &["--key-wrap", "RSA-OAEP-256"]).await?;
    let (status, body) = system
        .post_keys(&serde_json::json!({"user_id": "alice", "key_data": "never stored"}))
        .await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(e2e::error_code(&body)?, contract::error_code::ErrorCode::VaultRejected);
    let vault_log = system.vault.log_text();
    assert!(
        vault_log.contains("RSA-OAEP-256, which this vault's token does not open"),
        "{vault_log}"
    );
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&system.database_url()).await?;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets")
        .fetch_one(&mut db)
        .await?;
    assert_eq!(rows, 0);
    // Left to choose (auto), manager seals with what vault publishes and the store works.
    let auto = System::start().await?;
    let stored = auto.store("alice", "stored").await?;
    assert_eq!(auto.envelope_header(&stored.key_id).await?["alg"], "RSA-OAEP");
    Ok(())
}
