//! Secret and token lifecycle: expiry, read limits, revocation, destruction, audit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use contract::error_code::ErrorCode;
use e2e::{System, error_code};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Row};
use tokio::task::JoinSet;

async fn database(system: &System) -> Result<sqlx::SqliteConnection> {
    Ok(sqlx::SqliteConnection::connect(&format!("sqlite://{}", system.database().display())).await?)
}

async fn row_exists(system: &System, key_id: &str) -> Result<bool> {
    let mut db = database(system).await?;
    let row = sqlx::query("SELECT 1 FROM secrets WHERE key_id = ?1")
        .bind(key_id)
        .fetch_optional(&mut db)
        .await?;
    db.close().await?;
    Ok(row.is_some())
}

async fn audit_events(system: &System) -> Result<Vec<(String, Option<String>, String)>> {
    let mut db = database(system).await?;
    let rows = sqlx::query("SELECT event, key_id, outcome FROM audit ORDER BY seq")
        .fetch_all(&mut db)
        .await?;
    db.close().await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("event"), r.get("key_id"), r.get("outcome")))
        .collect())
}

/// `audit-verify` as an auditor without the PIN runs it: the audit key's public half from
/// its exported JWK (needed once a checkpoint exists).
fn audit_verify(system: &System) -> Result<std::process::Output> {
    Ok(std::process::Command::new(e2e::binary("vault-admin")?)
        .arg("--database-url")
        .arg(system.database_url())
        .args(["audit-verify", "--audit-public-key"])
        .arg(e2e::dev_dir()?.join(e2e::dev::AUDIT_PUBLIC_KEY))
        .output()?)
}

#[tokio::test]
async fn a_one_second_secret_is_refused_after_expiry_and_purged_by_the_sweep() -> Result<()> {
    let system = System::start_with(&["--leeway-seconds", "0", "--sweep-interval-seconds", "1"], &[]).await?;
    let stored = system
        .store_json(&json!({"user_id": "ann", "key_data": "brief", "ttl_seconds": 1}))
        .await?;
    // No "readable while alive" check: with whole-second timestamps a 1-second secret may
    // expire a few milliseconds after it is stored.
    let expires = std::time::Instant::now() + Duration::from_secs(2);
    // Wait out the lifetime on the wall clock, then for the sweep (bounded).
    while std::time::Instant::now() < expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = system.read(&stored.key_id, &stored.access_token).await?;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::NOT_FOUND,
        "expired secret served: {status}"
    );
    for _ in 0..100 {
        if !row_exists(&system, &stored.key_id).await? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !row_exists(&system, &stored.key_id).await?,
        "the sweep must purge the row"
    );
    let events = audit_events(&system).await?;
    assert!(
        events
            .iter()
            .any(|(event, key, _)| event == "expired" && key.as_deref() == Some(&stored.key_id))
    );
    Ok(())
}

#[tokio::test]
async fn max_reads_3_under_40_concurrent_reads_gives_exactly_3_successes_and_destroys_the_row() -> Result<()> {
    let system = Arc::new(System::start().await?);
    let stored = system
        .store_json(&json!({"user_id": "bea", "key_data": "thrice", "max_reads": 3}))
        .await?;
    let mut tasks = JoinSet::new();
    for _ in 0..40 {
        let (system, stored) = (system.clone(), stored.clone());
        tasks.spawn(async move { system.read(&stored.key_id, &stored.access_token).await });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result??;
        match status {
            StatusCode::OK => {
                assert_eq!(body["decrypted_key"], "thrice");
                ok += 1;
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => refused += 1,
            other => bail!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, refused), (3, 37));
    assert!(
        !row_exists(&system, &stored.key_id).await?,
        "destroyed after the third read"
    );
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_one_time_secret_reads_once() -> Result<()> {
    let system = System::start().await?;
    let stored = system
        .store_json(&json!({"user_id": "cat", "key_data": "once", "max_reads": 1}))
        .await?;
    assert_eq!(
        system.read(&stored.key_id, &stored.access_token).await?.0,
        StatusCode::OK
    );
    assert_eq!(
        system.read(&stored.key_id, &stored.access_token).await?.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = system
        .post_keys(&json!({"user_id": "cat", "key_data": "x", "max_reads": 0}))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body)?, ErrorCode::InvalidMaxReads);
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_revoking_again_is_harmless() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("dan", "revocable").await?;
    let other = system.store("dan", "unrelated").await?;
    for _ in 0..2 {
        let (status, body) = system.revoke(&stored.access_token).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["revoked"], true);
    }
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::RevokedToken);
    assert_eq!(
        system.read(&other.key_id, &other.access_token).await?.0,
        StatusCode::OK,
        "other tokens unaffected"
    );
    let (status, _) = system.revoke("garbage").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn delete_destroys_the_secret_idempotently() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("eve", "short-lived").await?;
    let other = system.store("eve", "kept").await?;
    let (status, body) = system.destroy(&stored.key_id, &other.access_token).await?;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a token for another key cannot delete: {body}"
    );
    for _ in 0..2 {
        let (status, body) = system.destroy(&stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["destroyed"], true);
    }
    assert_eq!(
        system.read(&stored.key_id, &stored.access_token).await?.0,
        StatusCode::NOT_FOUND
    );
    assert!(!row_exists(&system, &stored.key_id).await?);
    assert_eq!(system.read(&other.key_id, &other.access_token).await?.0, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn the_audit_trail_records_events_in_order_and_verify_names_a_tampered_record() -> Result<()> {
    let system = System::start().await?;
    let secret = format!("audited-{}", uuid::Uuid::new_v4());
    let stored = system.store("fay", &secret).await?;
    assert_eq!(
        system.read(&stored.key_id, &stored.access_token).await?.0,
        StatusCode::OK
    );
    assert_eq!(
        system.read(&stored.key_id, "not-a-token").await?.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(system.revoke(&stored.access_token).await?.0, StatusCode::OK);
    assert_eq!(
        system.read(&stored.key_id, &stored.access_token).await?.0,
        StatusCode::UNAUTHORIZED
    );

    let events: Vec<(String, String)> = audit_events(&system)
        .await?
        .into_iter()
        .map(|(event, _, outcome)| (event, outcome))
        .collect();
    // The refusal of "not-a-token" came before authentication: counted, not stored.
    let expected = [
        ("stored", "ok"),
        ("read", "ok"),
        ("revoked", "ok"),
        ("denied", "revoked_token"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(e, o)| (e.to_string(), o.to_string())).collect();
    assert_eq!(events, expected);

    // Nothing secret in the audit table: neither the plaintext nor any part of the token.
    let mut db = database(&system).await?;
    let dump: Vec<String> = sqlx::query("SELECT * FROM audit")
        .fetch_all(&mut db)
        .await?
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i).ok().flatten().unwrap_or_default())
                .collect()
        })
        .collect();
    let dump = dump.join("\n");
    assert!(!dump.contains(&secret));
    for part in stored.access_token.split('.') {
        assert!(!dump.contains(part), "token material in the audit table");
    }
    let logs = system.vault.log_text();
    assert!(!logs.contains(&secret) && !logs.contains(stored.access_token.rsplit('.').next().unwrap_or("x")));

    let verified = audit_verify(&system)?;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("verified: 4 records"));

    // Edit one record: verify fails and names it.
    sqlx::query("UPDATE audit SET outcome = 'edited' WHERE seq = 3")
        .execute(&mut db)
        .await?;
    let edited = audit_verify(&system)?;
    assert!(!edited.status.success());
    assert!(
        String::from_utf8_lossy(&edited.stdout).contains("broken at record 3"),
        "{edited:?}"
    );

    // Restore it, delete another: verify names the gap.
    sqlx::query("UPDATE audit SET outcome = 'ok' WHERE seq = 3")
        .execute(&mut db)
        .await?;
    assert!(audit_verify(&system)?.status.success(), "restored chain verifies again");
    sqlx::query("DELETE FROM audit WHERE seq = 2").execute(&mut db).await?;
    db.close().await?;
    let deleted = audit_verify(&system)?;
    assert!(!deleted.status.success());
    assert!(
        String::from_utf8_lossy(&deleted.stdout).contains("broken at record 2"),
        "{deleted:?}"
    );
    Ok(())
}

#[tokio::test]
async fn reads_fail_closed_with_503_when_the_audit_trail_cannot_be_written() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("gus", "guarded").await?;
    // Make every audit insert fail, as a full disk or broken table would.
    let mut db = database(&system).await?;
    sqlx::query("CREATE TRIGGER audit_broken BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit offline'); END")
        .execute(&mut db)
        .await?;
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.get("decrypted_key").is_none());
    sqlx::query("DROP TRIGGER audit_broken").execute(&mut db).await?;
    db.close().await?;
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

/// `http_refusals_total` for `reason` on vault's public listener, summed over routes.
async fn refusals_counted(system: &System, reason: &str) -> Result<u64> {
    let metrics = system.text(&system.vault_url("/metrics")).await?;
    let label = format!("reason=\"{reason}\"}}");
    Ok(metrics
        .lines()
        .filter(|line| line.starts_with("http_refusals_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

#[tokio::test]
async fn refusals_after_authentication_are_audited_and_those_before_it_only_counted() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("hal", "refused twice").await?;
    // `%FF` decodes to a byte that is no UTF-8: refused in the JSON shape, before any token check.
    let (status, body) = system.read("%FF", &stored.access_token).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::InvalidKeyId);
    // A token for another secret: authenticated, so audited.
    let (status, body) = system.read("another-key", &stored.access_token).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // The database refuses the revocation (as a broken table would): 503, and the refusal
    // is on the trail all the same.
    let mut db = database(&system).await?;
    sqlx::query(
        "CREATE TRIGGER revocations_broken BEFORE INSERT ON revoked_tokens BEGIN SELECT RAISE(ABORT, 'offline'); END",
    )
    .execute(&mut db)
    .await?;
    let (status, body) = system.revoke(&stored.access_token).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::StorageUnavailable);
    sqlx::query("DROP TRIGGER revocations_broken").execute(&mut db).await?;
    db.close().await?;
    let events = audit_events(&system).await?;
    let expected = [
        ("stored".to_owned(), Some(stored.key_id.clone()), "ok".to_owned()),
        (
            "denied".to_owned(),
            Some("another-key".to_owned()),
            "token_not_valid_for_key".to_owned(),
        ),
        ("denied".to_owned(), None, "storage_unavailable".to_owned()),
    ];
    assert_eq!(events, expected);
    assert_eq!(refusals_counted(&system, "invalid_key_id").await?, 1);
    assert_eq!(refusals_counted(&system, "token_not_valid_for_key").await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_flood_of_unauthenticated_refusals_with_long_paths_writes_nothing_durable() -> Result<()> {
    let system = System::start().await?;
    let stored = system.store("ida", "still readable").await?;
    // 60 KB paths are refused by the HTTP layer (431: over HTTP/2's header-list limit);
    // 8 KB ones reach vault, which refuses their key_id before anything else.
    let huge = system.vault_url(&format!("/api/keys/{}", "k".repeat(60 * 1024)));
    let long = system.vault_url(&format!("/api/keys/{}", "k".repeat(8 * 1024)));
    let short = system.vault_url(&format!("/api/keys/{}", stored.key_id));
    let mut flood = JoinSet::new();
    for i in 0..200 {
        let http = system.http().clone();
        let url = [&huge, &long, &short, &short][i % 4].clone();
        flood.spawn(async move {
            let request = match i % 4 {
                2 => http.get(&url),
                _ => http.get(&url).bearer_auth("not.a.token"),
            };
            request.send().await.map(|response| response.status())
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = flood.join_next().await {
        statuses.push(status??);
    }
    assert!(
        statuses.iter().all(|s| [
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED
        ]
        .contains(s)),
        "{statuses:?}"
    );
    // The holder still reads, and the trail holds the store and that read only.
    let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events: Vec<String> = audit_events(&system).await?.into_iter().map(|(e, _, _)| e).collect();
    assert_eq!(events, ["stored", "read"]);
    assert_eq!(refusals_counted(&system, "invalid_key_id").await?, 50);
    assert_eq!(refusals_counted(&system, "missing_token").await?, 50);
    assert_eq!(refusals_counted(&system, "invalid_token").await?, 50);
    Ok(())
}
