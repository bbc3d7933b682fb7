//! The keyed audit trail: a running vault signs checkpoints of its chain in its token, and
//! `vault-admin audit-verify` catches what the hash chain alone cannot — an edit with every
//! later hash recomputed — also when the checkpoint rows are deleted or forged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::System;
use e2e::dev::AUDIT_PUBLIC_KEY;
use sqlx::{Connection, Row};
use vault::audit::AuditRecord;
use vault::checkpoint::{Checkpoint, assemble, signing_input};
use vault::storage::Store;

/// Checkpoints every 3 records, and not by age within the test.
const EVERY_3_RECORDS: [&str; 4] = ["--audit-checkpoint-records", "3", "--audit-checkpoint-seconds", "3600"];

async fn connect(database: &Path) -> Result<sqlx::SqliteConnection> {
    Ok(sqlx::SqliteConnection::connect(&format!("sqlite://{}", database.display())).await?)
}

/// The newest checkpointed record in vault's live database (0: none).
async fn newest_checkpoint(system: &System) -> Result<i64> {
    let mut db = connect(&system.database()).await?;
    let row = sqlx::query("SELECT seq FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut db)
        .await?;
    db.close().await?;
    Ok(row.map(|row| row.get::<i64, _>("seq")).unwrap_or(0))
}

/// Waits (up to 20 s) until a checkpoint covers record `seq`.
async fn wait_for_checkpoint(system: &System, seq: i64) -> Result<()> {
    for _ in 0..200 {
        if newest_checkpoint(system).await? >= seq {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "no checkpoint of record {seq} within 20 s; vault's log:\n{}",
        system.vault.log_text()
    )
}

/// A consistent copy of vault's live database (`VACUUM INTO`), to edit as an attacker would.
async fn copy_database(system: &System, name: &str) -> Result<PathBuf> {
    let copy = system.dir.path().join(name);
    let mut db = connect(&system.database()).await?;
    sqlx::query("VACUUM INTO ?1")
        .bind(copy.to_string_lossy().into_owned())
        .execute(&mut db)
        .await?;
    db.close().await?;
    Ok(copy)
}

/// Edits record `k` and recomputes its hash and every one after it, links included: a
/// chain that verifies on its own. Returns the rewritten records.
async fn rewrite_from(database: &Path, k: i64) -> Result<Vec<AuditRecord>> {
    let url = format!("sqlite://{}", database.display());
    let mut records = Store::open(&url, service_kit::clock::unix_now)
        .await?
        .audit_records()
        .await?;
    let mut db = connect(database).await?;
    for i in usize::try_from(k - 1)?..records.len() {
        if records[i].seq == k {
            records[i].outcome = "nothing happened here".into();
        }
        if i > 0 {
            records[i].prev_hash = records[i - 1].hash.clone();
        }
        records[i].hash = records[i].compute_hash();
        sqlx::query("UPDATE audit SET outcome = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4")
            .bind(&records[i].outcome)
            .bind(&records[i].prev_hash)
            .bind(&records[i].hash)
            .bind(records[i].seq)
            .execute(&mut db)
            .await?;
    }
    db.close().await?;
    Ok(records)
}

/// `vault-admin audit-verify` on `database` with the dev configuration (the audit key read
/// from this test's token copy) and `extra` arguments: (success, stdout).
fn audit_verify(system: &System, database: &Path, extra: &[&str]) -> Result<(bool, String)> {
    let url = format!("sqlite://{}", database.display());
    let args: Vec<&str> = ["--database-url", &url, "audit-verify"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let output = system.admin("vault-admin", &args)?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if stdout.is_empty() {
        bail!(
            "vault-admin {args:?} stopped before verifying: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((output.status.success(), stdout))
}

/// The range `audit-verify` names: "records in question: A to B".
fn records_in_question(stdout: &str) -> Option<(i64, i64)> {
    let rest = stdout.split("records in question: ").nth(1)?;
    let mut words = rest.split_whitespace();
    let first = words.next()?.parse().ok()?;
    let _to = words.next()?;
    let last = words.next()?.parse().ok()?;
    Some((first, last))
}

/// vault's checkpoint log lines, as an operator's log pipeline ships them.
fn shipped_checkpoints(system: &System) -> String {
    system
        .vault
        .log_text()
        .lines()
        .filter(|line| line.contains("audit checkpoint") && line.contains(" checkpoint="))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A checkpoint of `record` signed by a key the attacker made, under the audit key's kid.
fn forged_checkpoint(kid: &str, record: &AuditRecord) -> Result<String> {
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?;
    let checkpoint = Checkpoint {
        seq: record.seq,
        hash: record.hash.clone(),
        iat: service_kit::clock::unix_now(),
    };
    let input = signing_input(kid, &checkpoint);
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )?;
    Ok(assemble(&input, &signature))
}

/// The kid in a checkpoint's header.
fn kid_of(jws: &str) -> Result<String> {
    let header = URL_SAFE_NO_PAD.decode(jws.split('.').next().context("no header")?)?;
    let header: serde_json::Value = serde_json::from_slice(&header)?;
    Ok(header["kid"].as_str().context("no kid")?.to_owned())
}

#[tokio::test]
async fn an_edit_with_a_recomputed_tail_is_caught_by_the_checkpoints_also_when_they_are_deleted_or_forged() -> Result<()>
{
    let system = System::start_with(&EVERY_3_RECORDS, &[]).await?;
    // Four rounds of three records (one per store), each followed by its checkpoint, then
    // two records no checkpoint covers yet.
    for round in 1..=4 {
        for i in 0..3 {
            system.store("ida", &format!("round {round} secret {i}")).await?;
        }
        wait_for_checkpoint(&system, 3 * round).await?;
    }
    system.store("ida", "tail 1").await?;
    system.store("ida", "tail 2").await?;

    // Each checkpoint was logged on one line carrying its JWS, as stored.
    let shipped = shipped_checkpoints(&system);
    assert_eq!(shipped.lines().count(), 4, "{shipped}");
    let untouched = copy_database(&system, "untouched.db").await?;
    let stored: Vec<String> = Store::open(
        &format!("sqlite://{}", untouched.display()),
        service_kit::clock::unix_now,
    )
    .await?
    .checkpoints()
    .await?;
    assert_eq!(stored.len(), 4);
    for jws in &stored {
        assert!(shipped.contains(&format!("checkpoint={jws}")), "{jws} not logged");
    }
    // Signed with the audit key: its kid is the thumbprint setup.sh exported.
    let jwk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e2e::dev_dir()?.join(AUDIT_PUBLIC_KEY))?)?;
    let kid = kid_of(&stored[0])?;
    assert_eq!(Some(kid.as_str()), jwk["kid"].as_str());

    // The untouched trail verifies, with the key from the token...
    let (ok, stdout) = audit_verify(&system, &untouched, &[])?;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("audit chain verified: 14 records"), "{stdout}");
    assert!(stdout.contains("checkpoints verified: 4 of 4"), "{stdout}");
    assert!(
        stdout.contains("not covered by any checkpoint: the last 2 records (13 to 14)"),
        "{stdout}"
    );
    // ...and for an auditor without the PIN, with the exported public key (no configuration,
    // so no PIN file: the token is never opened).
    let output = std::process::Command::new(e2e::binary("vault-admin")?)
        .arg("--database-url")
        .arg(format!("sqlite://{}", untouched.display()))
        .args(["audit-verify", "--audit-public-key"])
        .arg(e2e::dev_dir()?.join(AUDIT_PUBLIC_KEY))
        .output()?;
    assert!(output.status.success(), "{output:?}");

    // Record 5 edited and every hash after it recomputed: the chain alone verifies, the
    // checkpoint of record 6 does not.
    let k = 5;
    let edited = copy_database(&system, "edited.db").await?;
    let rewritten = rewrite_from(&edited, k).await?;
    let (ok, stdout) = audit_verify(&system, &edited, &[])?;
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("audit chain hash links intact: 14 records"), "{stdout}");
    assert!(stdout.contains("checkpoint FAILED: record 6"), "{stdout}");
    let (first, last) = records_in_question(&stdout).context(stdout.clone())?;
    assert!(first <= k && k <= last, "{k} not in {first}..={last}: {stdout}");
    assert_eq!((first, last), (4, 6), "{stdout}");

    // The attacker also replaces the checkpoints with ones of the rewritten chain, signed
    // with a key of their own under the audit key's kid: they fail at their signature.
    let mut db = connect(&edited).await?;
    for seq in [6, 9, 12] {
        let jws = forged_checkpoint(&kid, &rewritten[usize::try_from(seq - 1)?])?;
        sqlx::query("UPDATE audit_checkpoints SET jws = ?1, hash = ?2 WHERE seq = ?3")
            .bind(&jws)
            .bind(&rewritten[usize::try_from(seq - 1)?].hash)
            .bind(seq)
            .execute(&mut db)
            .await?;
    }
    let (ok, stdout) = audit_verify(&system, &edited, &[])?;
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("checkpoint FAILED: record 6") && stdout.contains("signature does not verify"),
        "{stdout}"
    );
    assert_eq!(records_in_question(&stdout), Some((4, 6)), "{stdout}");

    // Or deletes them: the database alone then shows nothing signed, the shipped log lines
    // still catch the edit.
    sqlx::query("DELETE FROM audit_checkpoints").execute(&mut db).await?;
    db.close().await?;
    let (ok, stdout) = audit_verify(&system, &edited, &[])?;
    assert!(ok, "without checkpoints only the chain is checked: {stdout}");
    assert!(
        stdout.contains("checkpoints: none") && stdout.contains("the last 14 records"),
        "{stdout}"
    );
    let file = system.dir.path().join("shipped-checkpoints.log");
    std::fs::write(&file, &shipped)?;
    let (ok, stdout) = audit_verify(&system, &edited, &["--checkpoints", &file.to_string_lossy()])?;
    assert!(!ok, "{stdout}");
    let (first, last) = records_in_question(&stdout).context(stdout.clone())?;
    assert!(first <= k && k <= last, "{k} not in {first}..={last}: {stdout}");
    assert!(stdout.contains("shipped-checkpoints.log line"), "{stdout}");

    // The shipped copies agree with an untouched trail.
    let (ok, stdout) = audit_verify(&system, &untouched, &["--checkpoints", &file.to_string_lossy()])?;
    assert!(ok, "{stdout}");
    Ok(())
}

#[tokio::test]
async fn a_quiet_trail_is_checkpointed_once_its_oldest_unsigned_record_is_old_enough() -> Result<()> {
    let system = System::start_with(
        &["--audit-checkpoint-records", "1000", "--audit-checkpoint-seconds", "1"],
        &[],
    )
    .await?;
    system.store("jo", "one").await?;
    wait_for_checkpoint(&system, 1).await?;
    let (ok, stdout) = audit_verify(&system, &system.database(), &[])?;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("not covered by any checkpoint: no record"), "{stdout}");
    Ok(())
}
