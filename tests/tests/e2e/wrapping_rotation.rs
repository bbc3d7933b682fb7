//! Wrapping-key rotation: new secrets are sealed to the new key, old ones still open,
//! `rewrap` moves every content key (resuming after SIGKILL), and after it the old key
//! can be destroyed with every secret still readable.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use e2e::{Implementation, System};
use reqwest::StatusCode;
use sqlx::{Connection, Row};
use tokio::io::{AsyncBufReadExt, BufReader};

/// (key_id, kid named in the envelope header, wrap_kid column) of every row.
async fn rows(system: &System) -> Result<Vec<(String, String, Option<String>)>> {
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", system.database().display())).await?;
    let rows = sqlx::query("SELECT key_id, envelope, wrap_kid FROM secrets ORDER BY key_id")
        .fetch_all(&mut db)
        .await?;
    db.close().await?;
    rows.iter()
        .map(|row| {
            let envelope: String = row.get("envelope");
            let header = e2e::compact_part(&envelope, 0)?;
            Ok((
                row.get("key_id"),
                header["kid"].as_str().unwrap_or_default().to_owned(),
                row.get("wrap_kid"),
            ))
        })
        .collect()
}

/// The kid content keys of `key_id` are wrapped to now.
async fn wrapped_to(system: &System, key_id: &str) -> Result<String> {
    let all = rows(system).await?;
    let Some((_, header_kid, wrap_kid)) = all.into_iter().find(|(k, _, _)| k == key_id) else {
        bail!("no row {key_id}")
    };
    Ok(wrap_kid.unwrap_or(header_kid))
}

fn vault_admin(system: &System, args: &[&str]) -> Result<String> {
    let database = system.database_url();
    let all: Vec<&str> = ["--database-url", database.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let output = system.admin("vault-admin", &all)?;
    ensure!(
        output.status.success(),
        "vault-admin {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn generated_kid(output: &str) -> Result<String> {
    match output.lines().next().and_then(|l| l.rsplit(' ').next()) {
        Some(kid) => Ok(kid.to_owned()),
        None => bail!("no kid in {output:?}"),
    }
}

async fn start() -> Result<System> {
    start_on(Implementation::SoftHsm).await
}

async fn start_on(implementation: Implementation) -> Result<System> {
    System::start_on(
        implementation,
        &["--key-refresh-seconds", "1"],
        &["--key-refresh-seconds", "1"],
    )
    .await
}

on_each_token!(after_rotation_new_secrets_use_the_new_key_and_rewrap_lets_the_old_key_go);

async fn after_rotation_new_secrets_use_the_new_key_and_rewrap_lets_the_old_key_go(
    implementation: Implementation,
) -> Result<()> {
    let system = start_on(implementation).await?;
    let before = system.store("kim", "sealed to the first key").await?;
    let old_kid = wrapped_to(&system, &before.key_id).await?;
    let new_kid = generated_kid(&vault_admin(&system, &["rotate-wrapping-key"])?)?;
    ensure!(new_kid != old_kid);

    // Both services pick the new key up at their next refresh.
    let mut after = None;
    for _ in 0..100 {
        let stored = system.store("kim", "sealed to the second key").await?;
        if wrapped_to(&system, &stored.key_id).await? == new_kid {
            after = Some(stored);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(after) = after else {
        bail!("manager never sealed to the new wrapping key")
    };
    assert_eq!(
        system.read(&before.key_id, &before.access_token).await?.0,
        StatusCode::OK,
        "old envelope opens"
    );

    let refused = system.admin(
        "vault-admin",
        &[
            "--database-url",
            &system.database_url(),
            "retire-wrapping-key",
            "--kid",
            &old_kid,
        ],
    )?;
    assert!(!refused.status.success(), "retiring a key still in use must be refused");

    vault_admin(&system, &["rewrap"])?;
    for (key_id, _, wrap_kid) in rows(&system).await? {
        assert_eq!(
            wrap_kid.as_deref(),
            Some(new_kid.as_str()),
            "{key_id} moved to the new key"
        );
    }
    vault_admin(&system, &["retire-wrapping-key", "--kid", &old_kid])?;
    let listed = vault_admin(&system, &["list-wrapping-keys"])?;
    assert!(!listed.contains(&old_kid), "old key destroyed: {listed}");

    // Give vault a refresh so it no longer knows the old key, then read both.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (stored, secret) in [
        (&before, "sealed to the first key"),
        (&after, "sealed to the second key"),
    ] {
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decrypted_key"], secret);
    }
    Ok(())
}

#[tokio::test]
async fn a_rewrap_killed_halfway_completes_when_run_again() -> Result<()> {
    let system = start().await?;
    let mut stored = Vec::new();
    for i in 0..12 {
        stored.push((
            format!("secret {i}"),
            system.store("lee", &format!("secret {i}")).await?,
        ));
    }
    let old_kid = wrapped_to(&system, &stored[0].1.key_id).await?;
    let new_kid = generated_kid(&vault_admin(&system, &["rotate-wrapping-key"])?)?;

    // One secret per batch with a pause, killed (SIGKILL) after the first commits.
    let mut child = tokio::process::Command::new(e2e::binary("vault-admin")?)
        .env("SOFTHSM2_CONF", e2e::tokens::private_softhsm(system.dir.path())?)
        .arg("--config")
        .arg(e2e::dev_dir()?.join("vault.toml"))
        .arg("--database-url")
        .arg(system.database_url())
        .args(["rewrap", "--batch-size", "1", "--batch-delay-ms", "300"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("stdout"))?).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
    ensure!(
        first.is_some_and(|l| l.starts_with("rewrapped 1 so far")),
        "rewrap did not start"
    );
    child.kill().await?;

    let moved = rows(&system)
        .await?
        .iter()
        .filter(|(_, _, w)| w.as_deref() == Some(new_kid.as_str()))
        .count();
    assert!((1..12).contains(&moved), "killed halfway: {moved} of 12 moved");

    vault_admin(&system, &["rewrap"])?;
    let all = rows(&system).await?;
    assert_eq!(all.len(), 12);
    assert!(
        all.iter().all(|(_, _, w)| w.as_deref() == Some(new_kid.as_str())),
        "every content key moved"
    );

    vault_admin(&system, &["retire-wrapping-key", "--kid", &old_kid])?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (secret, stored) in &stored {
        let (status, body) = system.read(&stored.key_id, &stored.access_token).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decrypted_key"].as_str(), Some(secret.as_str()));
    }
    Ok(())
}
