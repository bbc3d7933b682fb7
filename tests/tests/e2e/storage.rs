//! One storage test suite, run against both backends: SQLite and PostgreSQL.

use std::sync::Arc;

use anyhow::Result;
use vault::audit::{AuditEntry, AuditEvent, verify_chain};
use vault::storage::{CheckpointState, PutOutcome, ReadGrant, Rewrapped, Store, StoredCheckpoint, StoredSecret, Swept};

/// A store plus whatever keeps it alive (a temporary directory).
type Fixture = (Option<tempfile::TempDir>, Arc<Store>);

async fn sqlite() -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("suite.db").display());
    Ok((
        Some(dir),
        Arc::new(Store::open(&url, service_kit::clock::unix_now).await?),
    ))
}

async fn postgres() -> Result<Fixture> {
    let url = e2e::pg::fresh_database().await?;
    Ok((None, Arc::new(Store::open(&url, service_kit::clock::unix_now).await?)))
}

/// Instantiates every case for both backends.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $case() -> anyhow::Result<()> { let (_keep, store) = super::sqlite().await?; super::$case(store).await })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $case() -> anyhow::Result<()> { let (_keep, store) = super::postgres().await?; super::$case(store).await })*
        }
    };
}

suite!(
    put_is_idempotent_for_the_same_secret_and_conflicts_otherwise,
    concurrent_reads_are_granted_exactly_reads_left_times,
    sweep_purges_expired_secrets_and_stale_revocations_with_audit,
    destroy_and_revoke_are_idempotent_and_audited,
    the_audit_chain_verifies_after_concurrent_writes,
    rewrap_updates_only_rows_that_did_not_change_meanwhile,
    a_read_by_a_token_revoked_before_its_commit_is_not_granted,
    checkpoints_are_stored_once_per_record_however_many_replicas_sign_it,
    a_write_that_fails_fails_alone_among_concurrent_writes,
    lookup_tells_revocation_and_the_row_in_one_answer,
);

fn secret(key_id: &str, envelope: &str, reads_left: Option<u32>) -> StoredSecret {
    StoredSecret {
        key_id: key_id.into(),
        user_id: "alice".into(),
        envelope: envelope.into(),
        created_at: 1,
        expires_at: 4_000_000_000,
        reads_left,
        wrap_kid: None,
    }
}

async fn put_is_idempotent_for_the_same_secret_and_conflicts_otherwise(store: Arc<Store>) -> Result<()> {
    assert_eq!(store.put(&secret("k1", "e1", None), None).await?, PutOutcome::Created);
    assert_eq!(
        store.put(&secret("k1", "e1", None), None).await?,
        PutOutcome::AlreadyStored
    );
    assert_eq!(store.put(&secret("k1", "e2", None), None).await?, PutOutcome::Conflict);
    assert_eq!(
        store.put(&secret("k1", "e1", Some(2)), None).await?,
        PutOutcome::Conflict
    );
    assert_eq!(store.get("k1").await?, Some(secret("k1", "e1", None)));
    assert_eq!(store.get("k2").await?, None);
    Ok(())
}

async fn concurrent_reads_are_granted_exactly_reads_left_times(store: Arc<Store>) -> Result<()> {
    store.put(&secret("k", "e", Some(3)), None).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .consume_read("k", "j", 10, AuditEntry::new(AuditEvent::Read, "k"))
                .await
        });
    }
    let mut granted = 0;
    while let Some(result) = tasks.join_next().await {
        if result?? == ReadGrant::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, 3);
    assert_eq!(store.get("k").await?, None, "destroyed after its last read");
    assert_eq!(
        verify_chain(&store.audit_records().await?),
        Ok(5),
        "stored, 3 reads, destroyed"
    );
    Ok(())
}

async fn a_read_by_a_token_revoked_before_its_commit_is_not_granted(store: Arc<Store>) -> Result<()> {
    store.put(&secret("k", "e", Some(2)), None).await?;
    store
        .revoke("revoked", 4_000_000_000, AuditEntry::new(AuditEvent::Revoked, "k"))
        .await?;
    assert_eq!(
        store
            .consume_read(
                "k",
                "revoked",
                10,
                AuditEntry::new(AuditEvent::Read, "k").jti("revoked")
            )
            .await?,
        ReadGrant::Revoked
    );
    assert_eq!(
        store.get("k").await?.and_then(|secret| secret.reads_left),
        Some(2),
        "the refused read is not counted"
    );
    assert_eq!(
        store
            .consume_read("k", "other", 10, AuditEntry::new(AuditEvent::Read, "k").jti("other"))
            .await?,
        ReadGrant::Granted
    );
    let events: Vec<String> = store.audit_records().await?.into_iter().map(|r| r.event).collect();
    assert_eq!(events, ["stored", "revoked", "read"]);
    Ok(())
}

async fn sweep_purges_expired_secrets_and_stale_revocations_with_audit(store: Arc<Store>) -> Result<()> {
    let mut short = secret("short", "e", None);
    short.expires_at = 100;
    store.put(&short, None).await?;
    store.put(&secret("long", "e", None), None).await?;
    store
        .revoke("j1", 100, AuditEntry::new(AuditEvent::Revoked, "short"))
        .await?;
    assert_eq!(
        store
            .consume_read("short", "j2", 100, AuditEntry::new(AuditEvent::Read, "short"))
            .await?,
        ReadGrant::Gone
    );
    assert_eq!(
        store.sweep(100).await?,
        Swept {
            secrets: 1,
            revocations: 1
        }
    );
    assert_eq!(store.get("short").await?, None);
    assert!(store.get("long").await?.is_some());
    assert!(!store.is_revoked("j1").await?);
    let events: Vec<String> = store.audit_records().await?.into_iter().map(|r| r.event).collect();
    assert_eq!(events, ["stored", "stored", "revoked", "expired"]);
    Ok(())
}

async fn destroy_and_revoke_are_idempotent_and_audited(store: Arc<Store>) -> Result<()> {
    store.put(&secret("k", "e", None), None).await?;
    assert!(store.destroy("k", AuditEntry::new(AuditEvent::Destroyed, "k")).await?);
    assert!(!store.destroy("k", AuditEntry::new(AuditEvent::Destroyed, "k")).await?);
    assert!(
        store
            .revoke("j", 4_000_000_000, AuditEntry::new(AuditEvent::Revoked, "k"))
            .await?
    );
    assert!(
        !store
            .revoke("j", 4_000_000_000, AuditEntry::new(AuditEvent::Revoked, "k"))
            .await?
    );
    assert!(store.is_revoked("j").await?);
    let outcomes: Vec<(String, String)> = store
        .audit_records()
        .await?
        .into_iter()
        .map(|r| (r.event, r.outcome))
        .collect();
    let expected = [
        ("stored", "ok"),
        ("destroyed", "ok"),
        ("destroyed", "already_gone"),
        ("revoked", "ok"),
        ("revoked", "already_revoked"),
    ];
    assert_eq!(outcomes, expected.map(|(e, o)| (e.to_owned(), o.to_owned())));
    Ok(())
}

async fn the_audit_chain_verifies_after_concurrent_writes(store: Arc<Store>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.spawn(async move {
            let key_id = format!("k{i}");
            store.put(&secret(&key_id, "e", None), None).await?;
            store
                .audit(AuditEntry::new(AuditEvent::Denied, &key_id).outcome("invalid_token"))
                .await?;
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    assert_eq!(verify_chain(&store.audit_records().await?), Ok(80));
    // The same, a page of 7 at a time, as `audit-verify` reads it.
    let paged = store.verify_audit(7).await?.map(|verifier| verifier.count());
    assert_eq!(paged, Ok(80));
    Ok(())
}

/// Writes from concurrent callers share transactions (group commit); one that fails inside
/// its transaction (here: a time no column can hold) fails only its own caller, and every
/// other write commits once, in an unbroken chain.
async fn a_write_that_fails_fails_alone_among_concurrent_writes(store: Arc<Store>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut stored = secret(&format!("k{i}"), "e", Some(2));
            if i % 20 == 7 {
                stored.created_at = u64::MAX;
            }
            (i, store.put(&stored, None).await)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            (_, Ok(outcome)) => assert_eq!(outcome, PutOutcome::Created),
            (i, Err(_)) => failed.push(i),
        }
    }
    failed.sort();
    assert_eq!(failed, [7, 27, 47]);
    for i in 0..60 {
        let expected = !failed.contains(&i);
        assert_eq!(store.get(&format!("k{i}")).await?.is_some(), expected, "k{i}");
    }
    assert_eq!(verify_chain(&store.audit_records().await?), Ok(57));
    Ok(())
}

async fn lookup_tells_revocation_and_the_row_in_one_answer(store: Arc<Store>) -> Result<()> {
    let nothing = store.lookup("absent", "j").await?;
    assert_eq!((nothing.revoked, nothing.secret), (false, None));
    store.put(&secret("k", "e", Some(3)), None).await?;
    store
        .revoke("j", 4_000_000_000, AuditEntry::new(AuditEvent::Revoked, "k"))
        .await?;
    let found = store.lookup("k", "j").await?;
    assert_eq!((found.revoked, found.secret), (true, Some(secret("k", "e", Some(3)))));
    let other = store.lookup("k", "other").await?;
    assert!(!other.revoked);
    assert_eq!(store.lookup("absent", "j").await?.secret, None);
    Ok(())
}

async fn rewrap_updates_only_rows_that_did_not_change_meanwhile(store: Arc<Store>) -> Result<()> {
    for key_id in ["a", "b", "c"] {
        store.put(&secret(key_id, &format!("old-{key_id}"), None), None).await?;
    }
    let candidates = store.rewrap_candidates("new", "", 2).await?;
    assert_eq!(
        candidates.iter().map(|s| s.key_id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let rest = store.rewrap_candidates("new", "b", 10).await?;
    assert_eq!(rest.iter().map(|s| s.key_id.as_str()).collect::<Vec<_>>(), ["c"]);
    let update = |key_id: &str, old: &str| Rewrapped {
        key_id: key_id.into(),
        old_envelope: old.into(),
        new_envelope: format!("new-{key_id}"),
        wrap_kid: "new".into(),
    };
    // "b" changed since it was read: its update must not apply.
    let applied = store
        .apply_rewrap(&[update("a", "old-a"), update("b", "stale"), update("c", "old-c")])
        .await?;
    assert_eq!(applied, 2);
    assert_eq!(store.get("a").await?.and_then(|s| s.wrap_kid), Some("new".into()));
    assert_eq!(store.get("b").await?.and_then(|s| s.wrap_kid), None);
    let left = store.rewrap_candidates("new", "", 10).await?;
    assert_eq!(left.iter().map(|s| s.key_id.as_str()).collect::<Vec<_>>(), ["b"]);
    Ok(())
}

/// Replicas (or a restart overlapping the old process) open one fresh database at the same
/// time; each must see the others' migrations instead of applying them twice.
async fn stores_opening_one_fresh_database_at_once_all_migrate_it(url: &str) -> Result<()> {
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = url.to_owned();
        opening.spawn(async move { Store::open(&url, service_kit::clock::unix_now).await });
    }
    let mut stores = Vec::new();
    while let Some(opened) = opening.join_next().await {
        stores.push(opened??);
    }
    for (n, store) in stores.iter().enumerate() {
        let key_id = format!("k{n}");
        assert_eq!(store.put(&secret(&key_id, "e", None), None).await?, PutOutcome::Created);
        assert!(stores[0].get(&key_id).await?.is_some());
    }
    Ok(())
}

#[tokio::test]
async fn sqlite_stores_opening_one_fresh_database_at_once_all_migrate_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    stores_opening_one_fresh_database_at_once_all_migrate_it(&url).await
}

#[tokio::test]
async fn postgres_stores_opening_one_fresh_database_at_once_all_migrate_it() -> Result<()> {
    stores_opening_one_fresh_database_at_once_all_migrate_it(&e2e::pg::fresh_database().await?).await
}

/// The file opened is exactly the one the URL names, whatever its path holds: spaces,
/// brackets, a colon, percent signs and a dot segment (a URL parser would read some of these
/// as syntax, collapse `..` or decode `%41`).
#[tokio::test]
async fn sqlite_opens_exactly_the_file_its_url_names() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let odd = dir.path().join("a b [1]:x %41");
    std::fs::create_dir_all(odd.join("sub"))?;
    let path = odd.join("sub/../vault %2F.db");
    let store = Store::open(&format!("sqlite://{}", path.display()), service_kit::clock::unix_now).await?;
    store.put(&secret("k", "e", None), None).await?;
    assert!(odd.join("vault %2F.db").is_file(), "the file is where the path says");
    let again = Store::open(&format!("sqlite://{}", path.display()), service_kit::clock::unix_now).await?;
    assert_eq!(again.get("k").await?, Some(secret("k", "e", None)));
    Ok(())
}

/// Replicas sharing a database sign the same head at about the same time: every insert
/// succeeds, one row per record is kept, and the newest checkpoint is found by record.
async fn checkpoints_are_stored_once_per_record_however_many_replicas_sign_it(store: Arc<Store>) -> Result<()> {
    assert_eq!(
        store.checkpoint_state().await?,
        CheckpointState {
            head: None,
            covered: 0,
            oldest_uncovered_at: None
        }
    );
    for i in 0..5 {
        store.put(&secret(&format!("k{i}"), "e", None), None).await?;
    }
    let records = store.audit_records().await?;
    let checkpoint = |seq: i64, signer: &str| StoredCheckpoint {
        seq,
        hash: records[usize::try_from(seq - 1).unwrap_or_default()].hash.clone(),
        signed_at: 1,
        kid: "kid".into(),
        jws: format!("jws of {seq} by {signer}"),
    };
    let mut signing = tokio::task::JoinSet::new();
    for replica in 0..8 {
        let (store, checkpoint) = (store.clone(), checkpoint(3, &format!("replica {replica}")));
        signing.spawn(async move { store.add_checkpoint(&checkpoint).await });
    }
    let mut stored = 0;
    while let Some(inserted) = signing.join_next().await {
        stored += usize::from(inserted??);
    }
    assert_eq!(stored, 1, "exactly one replica's checkpoint is kept");
    assert_eq!(store.checkpoints().await?.len(), 1);
    let state = store.checkpoint_state().await?;
    assert_eq!(state.head, Some((5, records[4].hash.clone())));
    assert_eq!(state.covered, 3);
    assert_eq!(state.oldest_uncovered_at, Some(records[3].at));
    // A row claiming a record the chain does not have yet is not taken as coverage.
    assert!(
        store
            .add_checkpoint(&StoredCheckpoint {
                seq: 99,
                ..checkpoint(5, "forger")
            })
            .await?
    );
    assert_eq!(store.checkpoint_state().await?.covered, 3);
    assert_eq!(store.checkpoints().await?[1], "jws of 5 by forger");
    Ok(())
}
