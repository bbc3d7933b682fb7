//! Where vault keeps envelopes, revocations and the audit trail: one trait, with SQLite
//! as the embedded implementation. Every state change and its audit record commit in
//! one transaction.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::audit::{AuditEntry, AuditEvent, AuditRecord};

/// A sealed secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// Row key.
    pub key_id: String,
    /// Owner.
    pub user_id: String,
    /// JWE compact serialization.
    pub envelope: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Seconds since the Unix epoch; not served from then on.
    pub expires_at: u64,
    /// Successful reads left; `None` is unlimited.
    pub reads_left: Option<u32>,
    /// The wrapping key the content key is wrapped to now, when `rewrap` moved it away
    /// from the key named in the envelope's header.
    pub wrap_kid: Option<String>,
}

/// One rewrapped content key, to be written if the row still holds `old_envelope`.
#[derive(Debug, Clone)]
pub struct Rewrapped {
    /// Row key.
    pub key_id: String,
    /// The envelope as read (a concurrent change makes the update a no-op).
    pub old_envelope: String,
    /// The envelope with the content key wrapped to `wrap_kid`.
    pub new_envelope: String,
    /// The key it is wrapped to now.
    pub wrap_kid: String,
}

/// Outcome of [`Store::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The row is new and committed.
    Created,
    /// The same secret was already stored: a retry.
    AlreadyStored,
    /// A different secret holds this key_id.
    Conflict,
}

/// Outcome of [`Store::consume_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadGrant {
    /// The read is counted and audited; the plaintext may be released.
    Granted,
    /// The read limit was reached (by a concurrent reader, possibly).
    Exhausted,
    /// The secret is gone or expired.
    Gone,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired secrets purged.
    pub secrets: u64,
    /// Revocations whose tokens have expired anyway.
    pub revocations: u64,
}

/// Storage failures; all of them are the backend's, so answered with 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or is unreachable.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed at start-up.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored number is out of range.
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
}

/// Storage of envelopes, revocations and audit records. An acknowledged write is
/// durable; a state change and its audit record commit together or not at all.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores `secret` unless its key_id exists; idempotent for an identical secret.
    /// Audits `stored` when the row is created.
    async fn put(&self, secret: &StoredSecret, client: Option<String>) -> Result<PutOutcome, StoreError>;
    /// The secret stored under `key_id`, if any (expired or not).
    async fn get(&self, key_id: &str) -> Result<Option<StoredSecret>, StoreError>;
    /// Atomically counts one read of a live secret and appends `audit`; destroys the
    /// secret when that was its last read. Exactly `reads_left` calls get `Granted`.
    async fn consume_read(&self, key_id: &str, now: u64, audit: AuditEntry) -> Result<ReadGrant, StoreError>;
    /// Deletes the secret and appends `audit`; false when there was nothing to delete.
    async fn destroy(&self, key_id: &str, audit: AuditEntry) -> Result<bool, StoreError>;
    /// Records `jti` as revoked until `expires_at` and appends `audit`; false when it
    /// already was.
    async fn revoke(&self, jti: &str, expires_at: u64, audit: AuditEntry) -> Result<bool, StoreError>;
    /// Whether `jti` is revoked.
    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError>;
    /// Purges secrets expired at `now` (auditing each) and revocations past their token's expiry.
    async fn sweep(&self, now: u64) -> Result<Swept, StoreError>;
    /// Up to `limit` secrets whose content key may not be wrapped to `current_kid` yet
    /// (`wrap_kid` differs or is unknown), in key_id order after `after`.
    async fn rewrap_candidates(
        &self,
        current_kid: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<StoredSecret>, StoreError>;
    /// Writes a batch of rewrapped envelopes in one transaction; returns how many rows
    /// still held their old envelope and were updated.
    async fn apply_rewrap(&self, batch: &[Rewrapped]) -> Result<u64, StoreError>;
    /// Appends an audit record on its own (denials).
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// The whole audit trail in order.
    async fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError>;
    /// A round trip to the backend, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// SQLite in WAL mode with `synchronous=FULL`, so that a commit is on disk before a
/// write returns. Write transactions are `BEGIN IMMEDIATE`, which serialises them and
/// with them the audit chain.
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }
}

fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(what))
}

fn to_u64(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(what))
}

fn unix_now() -> i64 {
    i64::try_from(crate::state::unix_now()).unwrap_or(i64::MAX)
}

/// Appends `entry` after the current last record, inside the caller's transaction.
async fn append_audit(conn: &mut SqliteConnection, entry: &AuditEntry) -> Result<(), StoreError> {
    let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let last = match last {
        Some(row) => Some((row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?)),
        None => None,
    };
    let record = AuditRecord::next(
        last.as_ref().map(|(seq, hash)| (*seq, hash.as_str())),
        unix_now(),
        entry,
    );
    sqlx::query(
        "INSERT INTO audit (seq, at, event, key_id, user_id, jti, client, outcome, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(record.seq)
    .bind(record.at)
    .bind(&record.event)
    .bind(&record.key_id)
    .bind(&record.user_id)
    .bind(&record.jti)
    .bind(&record.client)
    .bind(&record.outcome)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn secret_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredSecret, StoreError> {
    let reads_left: Option<i64> = row.try_get("reads_left")?;
    Ok(StoredSecret {
        key_id: row.try_get("key_id")?,
        user_id: row.try_get("user_id")?,
        envelope: row.try_get("envelope")?,
        created_at: to_u64(row.try_get("created_at")?, "created_at")?,
        expires_at: to_u64(row.try_get("expires_at")?, "expires_at")?,
        reads_left: reads_left
            .map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt("reads_left")))
            .transpose()?,
        wrap_kid: row.try_get("wrap_kid")?,
    })
}

const SELECT_SECRET: &str =
    "SELECT key_id, user_id, envelope, created_at, expires_at, reads_left, wrap_kid FROM secrets WHERE key_id = ?1";

#[async_trait]
impl Store for SqliteStore {
    async fn put(&self, secret: &StoredSecret, client: Option<String>) -> Result<PutOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(
            "INSERT INTO secrets (key_id, user_id, envelope, created_at, expires_at, reads_left, wrap_kid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&secret.key_id)
        .bind(&secret.user_id)
        .bind(&secret.envelope)
        .bind(to_i64(secret.created_at, "created_at")?)
        .bind(to_i64(secret.expires_at, "expires_at")?)
        .bind(secret.reads_left.map(i64::from))
        .bind(&secret.wrap_kid)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            let entry = AuditEntry::new(AuditEvent::Stored, &secret.key_id)
                .user(&secret.user_id)
                .client(client);
            append_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            return Ok(PutOutcome::Created);
        }
        let existing = sqlx::query(SELECT_SECRET)
            .bind(&secret.key_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        match existing.map(|row| secret_from_row(&row)).transpose()? {
            Some(existing)
                if existing.user_id == secret.user_id
                    && existing.envelope == secret.envelope
                    && existing.expires_at == secret.expires_at
                    && existing.reads_left == secret.reads_left =>
            {
                Ok(PutOutcome::AlreadyStored)
            }
            _ => Ok(PutOutcome::Conflict),
        }
    }

    async fn get(&self, key_id: &str) -> Result<Option<StoredSecret>, StoreError> {
        let row = sqlx::query(SELECT_SECRET)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| secret_from_row(&row)).transpose()
    }

    async fn consume_read(&self, key_id: &str, now: u64, audit: AuditEntry) -> Result<ReadGrant, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // The decrement is conditional, so under any concurrency exactly `reads_left`
        // updates match; a row with NULL (unlimited) matches and stays NULL.
        let updated = sqlx::query(
            "UPDATE secrets SET reads_left = reads_left - 1
             WHERE key_id = ?1 AND expires_at > ?2 AND (reads_left IS NULL OR reads_left > 0)
             RETURNING reads_left",
        )
        .bind(key_id)
        .bind(to_i64(now, "now")?)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = updated else {
            let exists = sqlx::query("SELECT reads_left FROM secrets WHERE key_id = ?1 AND expires_at > ?2")
                .bind(key_id)
                .bind(to_i64(now, "now")?)
                .fetch_optional(&mut *tx)
                .await?;
            tx.rollback().await?;
            return Ok(if exists.is_some() {
                ReadGrant::Exhausted
            } else {
                ReadGrant::Gone
            });
        };
        let left: Option<i64> = row.try_get("reads_left")?;
        append_audit(&mut tx, &audit).await?;
        if left == Some(0) {
            sqlx::query("DELETE FROM secrets WHERE key_id = ?1")
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
            let destroyed = AuditEntry {
                event: AuditEvent::Destroyed,
                outcome: "read_limit_reached".into(),
                ..audit
            };
            append_audit(&mut tx, &destroyed).await?;
        }
        tx.commit().await?;
        Ok(ReadGrant::Granted)
    }

    async fn destroy(&self, key_id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let deleted = sqlx::query("DELETE FROM secrets WHERE key_id = ?1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let audit = if deleted == 1 {
            audit
        } else {
            audit.outcome("already_gone")
        };
        append_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(deleted == 1)
    }

    async fn revoke(&self, jti: &str, expires_at: u64, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted =
            sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2) ON CONFLICT (jti) DO NOTHING")
                .bind(jti)
                .bind(to_i64(expires_at, "expires_at")?)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let audit = if inserted == 1 {
            audit
        } else {
            audit.outcome("already_revoked")
        };
        append_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM revoked_tokens WHERE jti = ?1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn sweep(&self, now: u64) -> Result<Swept, StoreError> {
        let now = to_i64(now, "now")?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let expired = sqlx::query("DELETE FROM secrets WHERE expires_at <= ?1 RETURNING key_id, user_id")
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        for row in &expired {
            let key_id: String = row.try_get("key_id")?;
            let user_id: String = row.try_get("user_id")?;
            append_audit(&mut tx, &AuditEntry::new(AuditEvent::Expired, &key_id).user(&user_id)).await?;
        }
        let revocations = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Swept {
            secrets: expired.len() as u64,
            revocations,
        })
    }

    async fn rewrap_candidates(
        &self,
        current_kid: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, user_id, envelope, created_at, expires_at, reads_left, wrap_kid FROM secrets
             WHERE (wrap_kid IS NULL OR wrap_kid <> ?1) AND key_id > ?2 ORDER BY key_id LIMIT ?3",
        )
        .bind(current_kid)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    async fn apply_rewrap(&self, batch: &[Rewrapped]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut updated = 0;
        for item in batch {
            updated +=
                sqlx::query("UPDATE secrets SET envelope = ?1, wrap_kid = ?2 WHERE key_id = ?3 AND envelope = ?4")
                    .bind(&item.new_envelope)
                    .bind(&item.wrap_kid)
                    .bind(&item.key_id)
                    .bind(&item.old_envelope)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
        }
        tx.commit().await?;
        Ok(updated)
    }

    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        append_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, event, key_id, user_id, jti, client, outcome, prev_hash, hash FROM audit ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    seq: row.try_get("seq")?,
                    at: row.try_get("at")?,
                    event: row.try_get("event")?,
                    key_id: row.try_get("key_id")?,
                    user_id: row.try_get("user_id")?,
                    jti: row.try_get("jti")?,
                    client: row.try_get("client")?,
                    outcome: row.try_get("outcome")?,
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::verify_chain;

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

    async fn store() -> Result<(tempfile::TempDir, SqliteStore), StoreError> {
        let dir = tempfile::tempdir().map_err(|_| StoreError::Corrupt("tempdir"))?;
        let store = SqliteStore::open(&dir.path().join("test.db")).await?;
        Ok((dir, store))
    }

    #[tokio::test]
    async fn put_is_idempotent_for_the_same_secret_and_conflicts_otherwise() -> Result<(), StoreError> {
        let (_dir, store) = store().await?;
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

    #[tokio::test]
    async fn concurrent_reads_are_granted_exactly_reads_left_times() -> Result<(), StoreError> {
        let (_dir, store) = store().await?;
        let store = std::sync::Arc::new(store);
        store.put(&secret("k", "e", Some(3)), None).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = store.clone();
            tasks.spawn(async move {
                store
                    .consume_read("k", 10, AuditEntry::new(AuditEvent::Read, "k"))
                    .await
            });
        }
        let mut granted = 0;
        while let Some(result) = tasks.join_next().await {
            if result.map_err(|_| StoreError::Corrupt("join"))?? == ReadGrant::Granted {
                granted += 1;
            }
        }
        assert_eq!(granted, 3);
        assert_eq!(store.get("k").await?, None, "destroyed after its last read");
        let records = store.audit_records().await?;
        assert_eq!(verify_chain(&records), Ok(5), "stored, 3 reads, destroyed");
        Ok(())
    }

    #[tokio::test]
    async fn sweep_purges_expired_secrets_and_stale_revocations_with_audit() -> Result<(), StoreError> {
        let (_dir, store) = store().await?;
        let mut short = secret("short", "e", None);
        short.expires_at = 100;
        store.put(&short, None).await?;
        store.put(&secret("long", "e", None), None).await?;
        store
            .revoke("j1", 100, AuditEntry::new(AuditEvent::Revoked, "short"))
            .await?;
        assert_eq!(
            store
                .consume_read("short", 100, AuditEntry::new(AuditEvent::Read, "short"))
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
}
