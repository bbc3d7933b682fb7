//! What differs between the two databases, and only that: connecting (SQLite's durability
//! settings and its race on a fresh file), migrating, and the write lock that serialises
//! audit appends. The queries themselves are shared (`queries.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

use super::StoreError;

/// Key of the transaction-scoped advisory lock that serialises audit appends across
/// every vault replica on PostgreSQL (the chain needs one writer at a time).
const AUDIT_LOCK: i64 = 0x7661_756c_7441_7564;

/// How long a SQLite statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The database behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    /// One file, WAL mode, `synchronous=FULL`: a commit is on disk before a write returns.
    Sqlite,
    /// Shared by any number of replicas; a commit is durable under the server's default
    /// `synchronous_commit = on`.
    Postgres,
}

impl Backend {
    /// Opens the SQLite file at `path` (created if missing), migrates it, and connects the
    /// pool the queries run on.
    pub(super) async fn open_sqlite(path: &Path) -> Result<AnyPool, StoreError> {
        // One plain connection first, with every setting explicit and its errors returned as
        // they are: it creates the file, switches it into WAL (a setting the file keeps) and
        // migrates it.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut first = connect_sqlite(&options).await?;
        // sqlx's migration lock is a no-op on SQLite, so two processes opening one fresh
        // file would both apply the same migration. Holding the write lock for the whole
        // run makes the second wait and then find everything applied (each migration
        // becomes a savepoint inside this transaction).
        let mut migrating = first.begin_with("BEGIN IMMEDIATE").await?;
        // `run_direct` (public, doc-hidden) is sqlx's own way around `run`'s "Acquire is not
        // general enough" error for a connection borrowed from a transaction in a Send future.
        sqlx::migrate!("./migrations/sqlite")
            .run_direct(None, &mut *migrating, false)
            .await?;
        migrating.commit().await?;
        first.close().await?;
        // Through the Any driver SQLite takes only what its URL says (the file and the open
        // mode), so the per-connection settings are pragmas on each new connection; an error
        // there makes the pool retry the connection, up to its acquire timeout.
        let url = sqlite_url(path);
        let pragmas = format!(
            "PRAGMA busy_timeout = {}; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            BUSY_TIMEOUT.as_millis()
        );
        Ok(AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let pragmas = pragmas.clone();
                // Our own text, no input: safe to run as it is.
                Box::pin(async move { conn.execute(sqlx::AssertSqlSafe(pragmas)).await.map(drop) })
            })
            .connect_with(url.parse::<AnyConnectOptions>()?)
            .await?)
    }

    /// Connects to PostgreSQL at `url` and migrates (under sqlx's advisory lock, so replicas
    /// starting together migrate once). While the server is unreachable a request waits at
    /// most 3 s for a connection, then fails (503); the pool reconnects by itself.
    pub(super) async fn open_postgres(url: &str) -> Result<AnyPool, StoreError> {
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(pool)
    }

    /// A write transaction holding the lock that serialises audit appends until it ends:
    /// SQLite's write lock (`BEGIN IMMEDIATE`), PostgreSQL's advisory lock.
    pub(super) async fn begin_write(self, pool: &AnyPool) -> Result<Transaction<'static, Any>, StoreError> {
        match self {
            Backend::Sqlite => Ok(pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = pool.begin().await?;
                // `SELECT 1 FROM`: the function returns `void`, a type the Any driver cannot read.
                sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                    .bind(AUDIT_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }
}

/// Connects, retrying `SQLITE_BUSY` for up to [`BUSY_TIMEOUT`]: switching a fresh file into
/// WAL takes an exclusive lock that SQLite's busy handler does not wait for, so a second
/// process opening the same new file at that instant is refused once instead of waiting.
async fn connect_sqlite(options: &SqliteConnectOptions) -> Result<SqliteConnection, sqlx::Error> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match SqliteConnection::connect_with(options).await {
            Err(sqlx::Error::Database(e)) if is_busy(e.code().as_deref()) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            connected => return connected,
        }
    }
}

/// The Any driver's URL for the SQLite file at `path`, opened read-write (it exists by
/// now). Every byte but the unreserved ones is percent-encoded, `/` included, so that the URL
/// is one opaque segment: nothing in it is normalised away (`..`) or read as a host, and the
/// SQLite driver decodes it back to `path` exactly.
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite:");
    for &byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url.push_str("?mode=rw");
    url
}

/// `SQLITE_BUSY` and its extended codes (`SQLITE_BUSY_RECOVERY`, …), whose low byte is 5.
fn is_busy(extended_code: Option<&str>) -> bool {
    extended_code
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// The path comes back exactly, whatever it holds: spaces, brackets, colons, percent
    /// signs, dot segments, non-ASCII.
    #[test]
    fn the_any_url_names_exactly_the_file() {
        for path in [
            "/var/lib/secret-store/vault.db",
            "vault.db",
            "data/../vault.db",
            "/tmp/a b/[1]:x/%41%/../é.db",
        ] {
            let url = sqlite_url(Path::new(path));
            let parsed = SqliteConnectOptions::from_str(&url).expect("parses");
            assert_eq!(parsed.get_filename(), Path::new(path), "{url}");
            assert!(url.parse::<AnyConnectOptions>().is_ok(), "{url}");
        }
    }

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
