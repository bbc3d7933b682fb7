//! Where vault keeps envelopes, revocations and the audit trail: one [`Store`] over sqlx's
//! `Any` driver, so that every query is written once for both backends `database_url` can
//! name — SQLite (`sqlite://…`, the embedded default) and PostgreSQL (`postgres://…`, for
//! several vault replicas). Every state change and its audit record commit in one
//! transaction on both; an acknowledged write is durable. Signed checkpoints of the audit
//! chain live next to it (`checkpoints.rs`).

mod backend;
mod checkpoints;
mod group_commit;
mod queries;
mod writes;

use sqlx::AnyPool;

use backend::Backend;
pub use checkpoints::{CheckpointState, StoredCheckpoint};
use group_commit::Committer;

/// The wall clock audit records are stamped with: seconds since the Unix epoch.
pub type Clock = fn() -> u64;

/// vault's storage: envelopes, revocations and the audit trail. Cloning shares the
/// connection pool and the committer (the checkpoint signer holds a clone). A request's
/// durable writes go through the committer (`group_commit.rs`); reads, sweeps and rewraps
/// use the pool directly.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    clock: Clock,
    committer: Committer,
}

impl Store {
    /// Opens the backend `database_url` names: `sqlite://PATH` (created if missing) or
    /// `postgres://…` / `postgresql://…`. Migrations run on open. Audit records are stamped
    /// with `clock` as they are appended.
    pub async fn open(database_url: &str, clock: Clock) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(path) = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
        {
            let pool = Backend::open_sqlite(std::path::Path::new(path)).await?;
            return Ok(Self::with(pool, Backend::Sqlite, clock));
        }
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            let pool = Backend::open_postgres(database_url).await?;
            return Ok(Self::with(pool, Backend::Postgres, clock));
        }
        Err(StoreError::UnsupportedUrl)
    }

    fn with(pool: AnyPool, backend: Backend, clock: Clock) -> Self {
        Self {
            committer: Committer::start(pool.clone(), backend, clock),
            pool,
            backend,
            clock,
        }
    }
}

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

/// What [`Store::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The token is revoked.
    pub revoked: bool,
    /// The secret, if stored (expired or not).
    pub secret: Option<StoredSecret>,
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
    /// The token was revoked after it was checked, before the read could commit.
    Revoked,
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
    /// `database_url` is neither `sqlite://` nor `postgres://`.
    #[error("database_url must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    /// The transaction this write shared with others could not begin or commit: none of
    /// them is durable.
    #[error("the batch of writes failed")]
    BatchFailed(#[source] std::sync::Arc<StoreError>),
    /// The task that commits writes has stopped (the process is shutting down).
    #[error("the committer has stopped")]
    CommitterGone,
    /// The committer answered a write with the outcome of another kind of write (a bug).
    #[error("a write was answered with another write's outcome")]
    MismatchedAnswer,
}
