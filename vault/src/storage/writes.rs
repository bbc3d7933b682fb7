//! The durable writes a request makes — storing, counting a read, destroying, revoking,
//! auditing a denial — as values, so that the committer (`group_commit.rs`) can apply
//! many of them in one transaction. Each write changes its rows and appends its audit
//! records through a [`ChainHead`] the transaction keeps in memory: the chain's last record
//! is read once per transaction, not once per append.

use sqlx::{AnyConnection, Row};

use contract::error_code::ErrorCode;

use crate::audit::{AuditEntry, AuditEvent, AuditRecord};

use super::queries::{SELECT_SECRET, secret_from_row, to_i64};
use super::{PutOutcome, ReadGrant, Store, StoreError, StoredSecret};

/// One durable write, as a request asks for it.
#[derive(Debug)]
pub(super) enum Write {
    /// [`Store::put`].
    Put {
        secret: StoredSecret,
        client: Option<String>,
    },
    /// [`Store::consume_read`].
    ConsumeRead {
        key_id: String,
        jti: String,
        now: i64,
        audit: AuditEntry,
    },
    /// [`Store::destroy`].
    Destroy { key_id: String, audit: AuditEntry },
    /// [`Store::revoke`].
    Revoke {
        jti: String,
        expires_at: i64,
        audit: AuditEntry,
    },
    /// [`Store::audit`].
    Audit(AuditEntry),
}

/// What a write did, once its transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    Put(PutOutcome),
    Read(ReadGrant),
    Destroyed(bool),
    Revoked(bool),
    Audited,
}

/// The audit chain's last record (`seq`, hash) as the current write transaction sees it;
/// `None` while the trail is empty. Valid only under the write lock it was read under.
pub(super) struct ChainHead(Option<(i64, String)>);

impl ChainHead {
    /// Reads the last record; call it after taking the write lock.
    pub(super) async fn load(conn: &mut AnyConnection) -> Result<Self, StoreError> {
        let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        Ok(Self(match last {
            Some(row) => Some((row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?)),
            None => None,
        }))
    }

    /// The sequence number of the last record (0 for an empty chain).
    pub(super) fn seq(&self) -> i64 {
        self.0.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// Appends `entry` at `at` after the head, and makes it the head.
    pub(super) async fn append(
        &mut self,
        conn: &mut AnyConnection,
        at: i64,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        let record = AuditRecord::next(self.0.as_ref().map(|(seq, hash)| (*seq, hash.as_str())), at, entry);
        sqlx::query(
            "INSERT INTO audit (seq, at, event, key_id, user_id, jti, client, outcome, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        self.0 = Some((record.seq, record.hash));
        Ok(())
    }
}

impl Write {
    /// Applies the write inside the caller's write transaction. `now` stamps audit records;
    /// it is read under the write lock, so times never decrease along the chain. Nothing is
    /// durable until the caller commits; an error leaves the transaction to be rolled back.
    pub(super) async fn apply(
        &self,
        conn: &mut AnyConnection,
        head: &mut ChainHead,
        now: impl Fn() -> Result<i64, StoreError>,
    ) -> Result<Written, StoreError> {
        match self {
            Write::Put { secret, client } => put(conn, head, now()?, secret, client).await.map(Written::Put),
            Write::ConsumeRead {
                key_id,
                jti,
                now: live_at,
                audit,
            } => consume_read(conn, head, &now, key_id, jti, *live_at, audit)
                .await
                .map(Written::Read),
            Write::Destroy { key_id, audit } => {
                let deleted = sqlx::query("DELETE FROM secrets WHERE key_id = $1")
                    .bind(key_id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    == 1;
                head.append(conn, now()?, &outcome_unless(deleted, audit, "already_gone"))
                    .await?;
                Ok(Written::Destroyed(deleted))
            }
            Write::Revoke { jti, expires_at, audit } => {
                let inserted = sqlx::query(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(*expires_at)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    == 1;
                head.append(conn, now()?, &outcome_unless(inserted, audit, "already_revoked"))
                    .await?;
                Ok(Written::Revoked(inserted))
            }
            Write::Audit(entry) => {
                head.append(conn, now()?, entry).await?;
                Ok(Written::Audited)
            }
        }
    }
}

/// `audit` as it is when the write changed something; otherwise with `outcome`, which
/// says why nothing changed (an idempotent repeat).
fn outcome_unless(changed: bool, audit: &AuditEntry, outcome: &str) -> AuditEntry {
    if changed {
        audit.clone()
    } else {
        audit.clone().outcome(outcome)
    }
}

/// Inserts `secret` unless its key_id exists; tells a retry of the same secret from a
/// different one.
async fn put(
    conn: &mut AnyConnection,
    head: &mut ChainHead,
    at: i64,
    secret: &StoredSecret,
    client: &Option<String>,
) -> Result<PutOutcome, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO secrets (key_id, user_id, envelope, created_at, expires_at, reads_left, wrap_kid)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(&secret.key_id)
    .bind(&secret.user_id)
    .bind(&secret.envelope)
    .bind(to_i64(secret.created_at, "created_at")?)
    .bind(to_i64(secret.expires_at, "expires_at")?)
    .bind(secret.reads_left.map(i64::from))
    .bind(&secret.wrap_kid)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        let entry = AuditEntry::new(AuditEvent::Stored, &secret.key_id)
            .user(&secret.user_id)
            .client(client.clone());
        head.append(conn, at, &entry).await?;
        return Ok(PutOutcome::Created);
    }
    let existing = sqlx::query(SELECT_SECRET)
        .bind(&secret.key_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match existing.map(|row| secret_from_row(&row)).transpose()? {
        Some(existing)
            if existing.user_id == secret.user_id
                && existing.envelope == secret.envelope
                && existing.expires_at == secret.expires_at
                && existing.reads_left == secret.reads_left =>
        {
            PutOutcome::AlreadyStored
        }
        _ => PutOutcome::Conflict,
    })
}

/// Counts one read of `key_id` live at `live_at` by `jti`, audits it, and destroys the
/// secret when that was its last read.
async fn consume_read(
    conn: &mut AnyConnection,
    head: &mut ChainHead,
    now: impl Fn() -> Result<i64, StoreError>,
    key_id: &str,
    jti: &str,
    live_at: i64,
    audit: &AuditEntry,
) -> Result<ReadGrant, StoreError> {
    // The decrement is conditional, so under any concurrency exactly `reads_left`
    // updates match; a row with NULL (unlimited) matches and stays NULL. One statement
    // on the way that grants, inside the lock every writer takes.
    let updated = sqlx::query(
        "UPDATE secrets SET reads_left = reads_left - 1
         WHERE key_id = $1 AND expires_at > $2 AND (reads_left IS NULL OR reads_left > 0)
           AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $3)
         RETURNING reads_left",
    )
    .bind(key_id)
    .bind(live_at)
    .bind(jti)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = updated else {
        // Nothing changed: say why, with two reads that write nothing.
        let revoked = sqlx::query("SELECT 1 FROM revoked_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&mut *conn)
            .await?;
        if revoked.is_some() {
            return Ok(ReadGrant::Revoked);
        }
        let exists = sqlx::query("SELECT reads_left FROM secrets WHERE key_id = $1 AND expires_at > $2")
            .bind(key_id)
            .bind(live_at)
            .fetch_optional(&mut *conn)
            .await?;
        return Ok(if exists.is_some() {
            ReadGrant::Exhausted
        } else {
            ReadGrant::Gone
        });
    };
    let left: Option<i64> = row.try_get("reads_left")?;
    let at = now()?;
    head.append(conn, at, audit).await?;
    if left == Some(0) {
        sqlx::query("DELETE FROM secrets WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *conn)
            .await?;
        let destroyed = AuditEntry {
            event: AuditEvent::Destroyed,
            outcome: ErrorCode::ReadLimitReached.as_str().to_owned(),
            ..audit.clone()
        };
        head.append(conn, at, &destroyed).await?;
    }
    Ok(ReadGrant::Granted)
}

impl Store {
    /// Stores `secret` unless its key_id exists; idempotent for an identical secret.
    /// Audits `stored` (from `client`) when the row is created. Returns once committed.
    pub async fn put(&self, secret: &StoredSecret, client: Option<String>) -> Result<PutOutcome, StoreError> {
        let write = Write::Put {
            secret: secret.clone(),
            client,
        };
        let Written::Put(outcome) = self.committer.write(write).await? else {
            return Err(StoreError::MismatchedAnswer);
        };
        Ok(outcome)
    }

    /// Atomically counts one read of a secret live at `now` by the token `jti` and appends
    /// `audit`; destroys the secret when that was its last read. Exactly `reads_left` calls
    /// get `Granted`. Revocation, expiry and existence are checked again here, under the
    /// write lock every revocation and destruction also takes: one that committed before
    /// this read's commit releases nothing, however long the token took to unwrap.
    pub async fn consume_read(
        &self,
        key_id: &str,
        jti: &str,
        now: u64,
        audit: AuditEntry,
    ) -> Result<ReadGrant, StoreError> {
        let write = Write::ConsumeRead {
            key_id: key_id.to_owned(),
            jti: jti.to_owned(),
            now: to_i64(now, "now")?,
            audit,
        };
        let Written::Read(grant) = self.committer.write(write).await? else {
            return Err(StoreError::MismatchedAnswer);
        };
        Ok(grant)
    }

    /// Deletes the secret and appends `audit`; false when there was nothing to delete.
    pub async fn destroy(&self, key_id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let write = Write::Destroy {
            key_id: key_id.to_owned(),
            audit,
        };
        let Written::Destroyed(deleted) = self.committer.write(write).await? else {
            return Err(StoreError::MismatchedAnswer);
        };
        Ok(deleted)
    }

    /// Records `jti` as revoked until `expires_at` and appends `audit`; false when it
    /// already was.
    pub async fn revoke(&self, jti: &str, expires_at: u64, audit: AuditEntry) -> Result<bool, StoreError> {
        let write = Write::Revoke {
            jti: jti.to_owned(),
            expires_at: to_i64(expires_at, "expires_at")?,
            audit,
        };
        let Written::Revoked(inserted) = self.committer.write(write).await? else {
            return Err(StoreError::MismatchedAnswer);
        };
        Ok(inserted)
    }

    /// Appends an audit record on its own (denials).
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let Written::Audited = self.committer.write(Write::Audit(entry)).await? else {
            return Err(StoreError::MismatchedAnswer);
        };
        Ok(())
    }
}
