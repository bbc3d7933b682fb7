//! Where vault keeps envelopes, revocations and the audit trail: one [`Store`] trait
//! with two backends, chosen by `database_url` — SQLite (`sqlite://…`, embedded default)
//! and PostgreSQL (`postgres://…`, for several vault replicas). Every state change and
//! its audit record commit in one transaction on both.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditRecord};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

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
    /// `database_url` is neither `sqlite://` nor `postgres://`.
    #[error("database_url must start with sqlite:// or postgres://")]
    UnsupportedUrl,
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

/// Opens the backend `database_url` names: `sqlite://PATH` (created if missing) or
/// `postgres://…` / `postgresql://…`. Migrations run on open.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    {
        return Ok(Arc::new(SqliteStore::open(std::path::Path::new(path)).await?));
    }
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect(database_url).await?));
    }
    Err(StoreError::UnsupportedUrl)
}
