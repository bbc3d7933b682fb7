//! Where vault keeps envelopes: one trait, with SQLite as the embedded implementation.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

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
    /// Seconds since the Unix epoch; not served after this.
    pub expires_at: u64,
}

/// Outcome of [`Store::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The row is new and committed.
    Created,
    /// The same envelope, owner and expiry were already stored: a retry.
    AlreadyStored,
    /// A different secret holds this key_id.
    Conflict,
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

/// Envelope storage. An acknowledged `put` is durable: it survives `kill -9` and power loss
/// as far as the backend's fsync does.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores `secret` unless its key_id exists; idempotent for an identical secret.
    async fn put(&self, secret: &StoredSecret) -> Result<PutOutcome, StoreError>;
    /// The secret stored under `key_id`, if any.
    async fn get(&self, key_id: &str) -> Result<Option<StoredSecret>, StoreError>;
    /// A round trip to the backend, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// SQLite in WAL mode with `synchronous=FULL`, so that a commit is on disk before `put`
/// returns.
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
            .busy_timeout(Duration::from_secs(5))
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

#[async_trait]
impl Store for SqliteStore {
    async fn put(&self, secret: &StoredSecret) -> Result<PutOutcome, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO secrets (key_id, user_id, envelope, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&secret.key_id)
        .bind(&secret.user_id)
        .bind(&secret.envelope)
        .bind(to_i64(secret.created_at, "created_at")?)
        .bind(to_i64(secret.expires_at, "expires_at")?)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(PutOutcome::Created);
        }
        match self.get(&secret.key_id).await? {
            Some(existing)
                if existing.user_id == secret.user_id
                    && existing.envelope == secret.envelope
                    && existing.expires_at == secret.expires_at =>
            {
                Ok(PutOutcome::AlreadyStored)
            }
            _ => Ok(PutOutcome::Conflict),
        }
    }

    async fn get(&self, key_id: &str) -> Result<Option<StoredSecret>, StoreError> {
        let row =
            sqlx::query("SELECT key_id, user_id, envelope, created_at, expires_at FROM secrets WHERE key_id = ?1")
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(StoredSecret {
                key_id: row.try_get("key_id")?,
                user_id: row.try_get("user_id")?,
                envelope: row.try_get("envelope")?,
                created_at: to_u64(row.try_get("created_at")?, "created_at")?,
                expires_at: to_u64(row.try_get("expires_at")?, "expires_at")?,
            })
        })
        .transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key_id: &str, envelope: &str) -> StoredSecret {
        StoredSecret {
            key_id: key_id.into(),
            user_id: "alice".into(),
            envelope: envelope.into(),
            created_at: 1,
            expires_at: 2,
        }
    }

    #[tokio::test]
    async fn put_is_idempotent_for_the_same_secret_and_conflicts_otherwise() -> Result<(), StoreError> {
        let dir = std::env::temp_dir().join(format!("vault-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|_| StoreError::Corrupt("tempdir"))?;
        let store = SqliteStore::open(&dir.join("idempotent.db")).await?;
        assert_eq!(store.put(&secret("k1", "e1")).await?, PutOutcome::Created);
        assert_eq!(store.put(&secret("k1", "e1")).await?, PutOutcome::AlreadyStored);
        assert_eq!(store.put(&secret("k1", "e2")).await?, PutOutcome::Conflict);
        assert_eq!(store.get("k1").await?, Some(secret("k1", "e1")));
        assert_eq!(store.get("k2").await?, None);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
