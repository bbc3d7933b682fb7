//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::audit::{AuditEntry, AuditEvent, AuditRecord};

use super::{PutOutcome, ReadGrant, Rewrapped, Store, StoreError, StoredSecret, Swept};

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
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = connect(options).await?;
        // sqlx's migration lock is a no-op on SQLite, so two processes opening one fresh
        // file would both apply the same migration. Holding the write lock for the whole
        // run makes the second wait and then find everything applied (each migration
        // becomes a savepoint inside this transaction).
        let mut migrating = pool.begin_with("BEGIN IMMEDIATE").await?;
        // `run_direct` (public, doc-hidden) is sqlx's own way around `run`'s "Acquire is not
        // general enough" error for a connection borrowed from a transaction in a Send future.
        sqlx::migrate!("./migrations/sqlite")
            .run_direct(None, &mut *migrating, false)
            .await?;
        migrating.commit().await?;
        Ok(Self { pool })
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front, which serialises writers and
    /// with them the audit chain.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects, retrying `SQLITE_BUSY` for up to [`BUSY_TIMEOUT`]: switching a fresh file into
/// WAL takes an exclusive lock that SQLite's busy handler does not wait for, so a second
/// process opening the same new file at that instant is refused once instead of waiting.
async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
        {
            Err(sqlx::Error::Database(e)) if is_busy(e.code().as_deref()) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            connected => return connected,
        }
    }
}

/// `SQLITE_BUSY` and its extended codes (`SQLITE_BUSY_RECOVERY`, …), whose low byte is 5.
fn is_busy(extended_code: Option<&str>) -> bool {
    extended_code
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

super::sql::sql_store!(SqliteStore, Sqlite);

#[cfg(test)]
mod tests {
    use super::is_busy;

    #[test]
    fn busy_is_recognised_in_its_extended_forms_only() {
        assert!(is_busy(Some("5")));
        assert!(is_busy(Some("261"))); // SQLITE_BUSY_RECOVERY
        assert!(is_busy(Some("517"))); // SQLITE_BUSY_SNAPSHOT
        assert!(!is_busy(Some("6"))); // SQLITE_LOCKED
        assert!(!is_busy(Some("2067"))); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!is_busy(None));
    }
}
