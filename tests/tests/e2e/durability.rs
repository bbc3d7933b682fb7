//! What vault stores stays stored and stays bound to its row.

use std::sync::Arc;

use anyhow::{Result, ensure};
use contract::error_code::ErrorCode;
use e2e::{Launch, System, error_code};
use reqwest::StatusCode;
use sqlx::Connection;
use tokio::task::JoinSet;

#[tokio::test]
async fn every_acknowledged_store_survives_sigkill_of_vault() -> Result<()> {
    let mut system = System::start().await?;
    let shared = Arc::new(system.http().clone());
    let manager_url = system.manager_url("/api/keys");
    let mut tasks = JoinSet::new();
    for i in 0..60 {
        let (http, url) = (shared.clone(), manager_url.clone());
        tasks.spawn(async move {
            let secret = format!("durable-{i}-{}", uuid::Uuid::new_v4());
            let response = http
                .post(&url)
                .json(&serde_json::json!({"user_id": "dora", "key_data": secret}))
                .send()
                .await?;
            ensure!(
                response.status() == StatusCode::CREATED,
                "store {i}: {}",
                response.status()
            );
            let stored: contract::wire::StoreKeyResponse = response.json().await?;
            Ok((secret, stored))
        });
    }
    let mut acknowledged = Vec::new();
    while let Some(result) = tasks.join_next().await {
        acknowledged.push(result??);
    }
    // SIGKILL straight after the last acknowledgement: no graceful shutdown, no checkpoint.
    system.vault.kill().await?;

    let restarted = Launch::vault(system.dir.path()).start().await?;
    for (secret, stored) in &acknowledged {
        let (status, body) = system
            .client
            .read(restarted.addr("public"), &stored.key_id, &stored.access_token)
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decrypted_key"].as_str(), Some(secret.as_str()));
    }
    assert_eq!(acknowledged.len(), 60);
    Ok(())
}

#[tokio::test]
async fn envelopes_swapped_between_rows_do_not_open() -> Result<()> {
    let system = System::start().await?;
    let a = system.store("erin", "secret of row A").await?;
    let b = system.store("erin", "secret of row B").await?;

    let url = format!("sqlite://{}", system.database().display());
    let mut db = sqlx::SqliteConnection::connect(&url).await?;
    let envelope_of = |key_id: &str| {
        sqlx::query_scalar::<_, String>("SELECT envelope FROM secrets WHERE key_id = ?1").bind(key_id.to_owned())
    };
    let envelope_a = envelope_of(&a.key_id).fetch_one(&mut db).await?;
    let envelope_b = envelope_of(&b.key_id).fetch_one(&mut db).await?;
    for (key_id, envelope) in [(&a.key_id, &envelope_b), (&b.key_id, &envelope_a)] {
        sqlx::query("UPDATE secrets SET envelope = ?1 WHERE key_id = ?2")
            .bind(envelope)
            .bind(key_id)
            .execute(&mut db)
            .await?;
    }
    db.close().await?;

    for stored in [&a, &b] {
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(error_code(&body)?, ErrorCode::IntegrityError);
        let text = body.to_string();
        assert!(!text.contains("secret of row"), "no plaintext may leak: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn an_envelope_whose_header_was_rebound_to_another_row_fails_the_gcm_check() -> Result<()> {
    let system = System::start().await?;
    let a = system.store("frank", "secret of row A").await?;
    let b = system.store("frank", "secret of row B").await?;

    // Put B's ciphertext under A with a header rewritten to name A, and to carry A's share
    // check: the header is the GCM additional data, so the tag must fail even though the
    // binding and share checks pass.
    let url = format!("sqlite://{}", system.database().display());
    let mut db = sqlx::SqliteConnection::connect(&url).await?;
    let envelope_of =
        |key_id: String| sqlx::query_scalar::<_, String>("SELECT envelope FROM secrets WHERE key_id = ?1").bind(key_id);
    let envelope_a = envelope_of(a.key_id.clone()).fetch_one(&mut db).await?;
    let envelope_b = envelope_of(b.key_id.clone()).fetch_one(&mut db).await?;
    let mut parts: Vec<String> = envelope_b.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header: serde_json::Value = serde_json::from_slice(&engine.decode(&parts[0])?)?;
    header["key_id"] = serde_json::json!(a.key_id);
    header["share_check"] = e2e::compact_part(&envelope_a, 0)?["share_check"].clone();
    parts[0] = engine.encode(header.to_string());
    sqlx::query("UPDATE secrets SET envelope = ?1 WHERE key_id = ?2")
        .bind(parts.join("."))
        .bind(&a.key_id)
        .execute(&mut db)
        .await?;
    db.close().await?;

    let (status, body) = system.read(&a.key_id, &a.access_token).await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::IntegrityError);
    let (status, _) = system.read(&b.key_id, &b.access_token).await?;
    assert_eq!(status, StatusCode::OK, "the untouched row still opens");
    Ok(())
}
