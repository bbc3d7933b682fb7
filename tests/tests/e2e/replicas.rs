//! Several vault replicas on one PostgreSQL database: every guarantee holds across them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use contract::error_code::ErrorCode;
use e2e::{Replicas, answer, error_code};
use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

async fn two_replicas() -> Result<Replicas> {
    Replicas::start(2, e2e::pg::fresh_database().await?, &[]).await
}

#[tokio::test]
async fn a_secret_stored_through_replica_1_reads_back_at_replica_2() -> Result<()> {
    let replicas = two_replicas().await?;
    let stored = replicas
        .client
        .store_json(&json!({"user_id": "mia", "key_data": "shared by replicas"}))
        .await?;
    let (status, body) = replicas.read(1, &stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decrypted_key"], "shared by replicas");
    Ok(())
}

#[tokio::test]
async fn max_reads_5_under_60_concurrent_reads_across_both_replicas_gives_exactly_5() -> Result<()> {
    let replicas = Arc::new(two_replicas().await?);
    let stored = replicas
        .client
        .store_json(&json!({"user_id": "ned", "key_data": "five times", "max_reads": 5}))
        .await?;
    let mut tasks = JoinSet::new();
    for i in 0..60 {
        let (replicas, stored) = (replicas.clone(), stored.clone());
        tasks.spawn(async move { replicas.read(i % 2, &stored.key_id, &stored.access_token).await });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result??;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::NOT_FOUND | StatusCode::GONE => refused += 1,
            other => bail!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, refused), (5, 55));
    Ok(())
}

#[tokio::test]
async fn a_token_revoked_at_replica_1_is_refused_at_replica_2() -> Result<()> {
    let replicas = two_replicas().await?;
    let stored = replicas
        .client
        .store_json(&json!({"user_id": "oli", "key_data": "revocable"}))
        .await?;
    assert_eq!(
        replicas.read(1, &stored.key_id, &stored.access_token).await?.0,
        StatusCode::OK
    );
    let (status, body) = replicas.client.revoke(replicas.vault(0), &stored.access_token).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = replicas.read(1, &stored.key_id, &stored.access_token).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::RevokedToken);
    Ok(())
}

/// Both replicas sign checkpoints of the shared chain (every 5 records, or once a record is
/// a second old) while they write: neither fails, the table keeps one per record, and every
/// checkpoint verifies.
#[tokio::test]
async fn the_audit_chain_and_its_checkpoints_verify_after_concurrent_writes_from_both_replicas() -> Result<()> {
    let checkpoints = ["--audit-checkpoint-records", "5", "--audit-checkpoint-seconds", "1"];
    let replicas = Arc::new(Replicas::start(2, e2e::pg::fresh_database().await?, &checkpoints).await?);
    let mut tasks = JoinSet::new();
    for i in 0..30 {
        let replicas = replicas.clone();
        tasks.spawn(async move {
            let stored = replicas
                .client
                .store_json(&json!({"user_id": "pat", "key_data": format!("s{i}")}))
                .await?;
            replicas.read(i % 2, &stored.key_id, &stored.access_token).await?;
            replicas.read((i + 1) % 2, &stored.key_id, "forged").await?;
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    // Every record is covered within about two seconds of the last write.
    let store = vault::storage::Store::open(&replicas.database_url, service_kit::clock::unix_now).await?;
    for _ in 0..100 {
        if store.checkpoint_state().await?.covered == 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = std::process::Command::new(e2e::binary("vault-admin")?)
        .args([
            "--database-url",
            &replicas.database_url,
            "audit-verify",
            "--audit-public-key",
        ])
        .arg(e2e::dev_dir()?.join(e2e::dev::AUDIT_PUBLIC_KEY))
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 30 stores and 30 reads; the 30 forged reads were refused before authentication and
    // are counted in the metrics, not stored.
    assert!(stdout.contains("verified: 60 records"), "{stdout}");
    let stored = store.checkpoints().await?.len();
    assert!(
        stored > 0 && stdout.contains(&format!("checkpoints verified: {stored} of {stored}")),
        "{stdout}"
    );
    assert!(stdout.contains("not covered by any checkpoint: no record"), "{stdout}");
    for vault in &replicas.vaults {
        let log = vault.log_text();
        assert!(!log.contains("cannot sign an audit checkpoint"), "{log}");
    }
    Ok(())
}

#[tokio::test]
async fn every_acknowledged_store_reads_back_after_sigkill_of_a_replica_mid_load() -> Result<()> {
    let mut replicas = two_replicas().await?;
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("https://{}/api/keys", replicas.manager.addr("api"));
    let mut workers = JoinSet::new();
    for w in 0..4 {
        let (http, url) = (replicas.client.http.clone(), url.clone());
        let (acknowledged, failed, stop) = (acknowledged.clone(), failed.clone(), stop.clone());
        workers.spawn(async move {
            for i in 0..10_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let secret = format!("load-{w}-{i}");
                let response = http
                    .post(&url)
                    .json(&json!({"user_id": "quinn", "key_data": secret}))
                    .send()
                    .await?;
                let (status, body) = answer(response).await?;
                match status {
                    StatusCode::CREATED => acknowledged
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((body, secret)),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        anyhow::ensure!(body.get("access_token").is_none(), "503 with a token");
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    other => bail!("unexpected {other}: {body}"),
                }
            }
            anyhow::Ok(())
        });
    }
    // SIGKILL replica 1 (the one manager stores through) once stores are flowing; the waits
    // end as soon as their counts are reached, and allow 30 s on a loaded machine.
    for _ in 0..1500 {
        if acknowledged.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas.vaults[0].kill().await?;
    for _ in 0..1500 {
        if failed.load(std::sync::atomic::Ordering::Relaxed) >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(result) = workers.join_next().await {
        result??;
    }
    let acknowledged = acknowledged.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    assert!(acknowledged.len() >= 20 && failed.load(std::sync::atomic::Ordering::Relaxed) >= 10);
    for (body, secret) in &acknowledged {
        let key_id = body["key_id"].as_str().unwrap_or_default();
        let token = body["access_token"].as_str().unwrap_or_default();
        let (status, read) = replicas.read(1, key_id, token).await?;
        assert_eq!(status, StatusCode::OK, "{read}");
        assert_eq!(read["decrypted_key"].as_str(), Some(secret.as_str()));
    }
    Ok(())
}

#[tokio::test]
async fn a_postgres_outage_gives_503s_and_service_resumes_by_itself() -> Result<()> {
    let cluster = e2e::pg::PgCluster::start()?;
    let replicas = Replicas::start(1, cluster.url("postgres"), &[]).await?;
    let stored = replicas
        .client
        .store_json(&json!({"user_id": "rae", "key_data": "outlasting"}))
        .await?;
    let ready = format!("https://{}/readyz", replicas.vault(0));

    cluster.stop()?;
    for _ in 0..2 {
        let (status, body) = replicas.read(0, &stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(error_code(&body)?, ErrorCode::StorageUnavailable);
        let (status, body) = replicas
            .client
            .post_keys(&json!({"user_id": "rae", "key_data": "during outage"}))
            .await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.get("access_token").is_none());
    }
    let (status, body) = answer(replicas.client.http.get(&ready).send().await?).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body)?, ErrorCode::StorageUnavailable);

    cluster.restart()?;
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = replicas.read(0, &stored.key_id, &stored.access_token).await?.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK, "vault resumes without a restart");
    assert_eq!(replicas.client.http.get(&ready).send().await?.status(), StatusCode::OK);
    replicas
        .client
        .store_json(&json!({"user_id": "rae", "key_data": "after outage"}))
        .await?;
    Ok(())
}
