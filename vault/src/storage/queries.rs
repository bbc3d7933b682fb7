//! The queries, written once for both backends: placeholders are `$N` in ascending order
//! (SQLite and PostgreSQL both bind them by number), and the only backend-specific step,
//! the write lock that serialises audit appends, is [`Backend::begin_write`](super::backend).

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};

use contract::error_code::ErrorCode;

use crate::audit::{AuditEntry, AuditEvent, AuditRecord, ChainBreak, ChainVerifier};

use super::{PutOutcome, ReadGrant, Rewrapped, Store, StoreError, StoredSecret, Swept};

const SELECT_SECRET: &str =
    "SELECT key_id, user_id, envelope, created_at, expires_at, reads_left, wrap_kid FROM secrets WHERE key_id = $1";

fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(what))
}

fn to_u64(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(what))
}

/// Appends `entry` at `at` after the current last record, inside the caller's write
/// transaction.
async fn append_audit(conn: &mut AnyConnection, at: i64, entry: &AuditEntry) -> Result<(), StoreError> {
    let last = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let last = match last {
        Some(row) => Some((row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?)),
        None => None,
    };
    let record = AuditRecord::next(last.as_ref().map(|(seq, hash)| (*seq, hash.as_str())), at, entry);
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
    Ok(())
}

fn secret_from_row(row: &AnyRow) -> Result<StoredSecret, StoreError> {
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

fn record_from_row(row: &AnyRow) -> Result<AuditRecord, StoreError> {
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
}

impl Store {
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        self.backend.begin_write(&self.pool).await
    }

    /// The time to stamp audit records with; read under the write lock, so that times never
    /// decrease along the chain.
    fn now(&self) -> Result<i64, StoreError> {
        to_i64((self.clock)(), "now")
    }

    /// Stores `secret` unless its key_id exists; idempotent for an identical secret.
    /// Audits `stored` (at `created_at`, from `client`) when the row is created.
    pub async fn put(&self, secret: &StoredSecret, client: Option<String>) -> Result<PutOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
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
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            let entry = AuditEntry::new(AuditEvent::Stored, &secret.key_id)
                .user(&secret.user_id)
                .client(client);
            append_audit(&mut tx, self.now()?, &entry).await?;
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

    /// The secret stored under `key_id`, if any (expired or not).
    pub async fn get(&self, key_id: &str) -> Result<Option<StoredSecret>, StoreError> {
        let row = sqlx::query(SELECT_SECRET)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| secret_from_row(&row)).transpose()
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
        let now = to_i64(now, "now")?;
        let mut tx = self.begin_write().await?;
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
        .bind(now)
        .bind(jti)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = updated else {
            let revoked = sqlx::query("SELECT 1 FROM revoked_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_optional(&mut *tx)
                .await?;
            if revoked.is_some() {
                tx.rollback().await?;
                return Ok(ReadGrant::Revoked);
            }
            let exists = sqlx::query("SELECT reads_left FROM secrets WHERE key_id = $1 AND expires_at > $2")
                .bind(key_id)
                .bind(now)
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
        let at = self.now()?;
        append_audit(&mut tx, at, &audit).await?;
        if left == Some(0) {
            sqlx::query("DELETE FROM secrets WHERE key_id = $1")
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
            let destroyed = AuditEntry {
                event: AuditEvent::Destroyed,
                outcome: ErrorCode::ReadLimitReached.as_str().to_owned(),
                ..audit
            };
            append_audit(&mut tx, at, &destroyed).await?;
        }
        tx.commit().await?;
        Ok(ReadGrant::Granted)
    }

    /// Deletes the secret and appends `audit`; false when there was nothing to delete.
    pub async fn destroy(&self, key_id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM secrets WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let audit = if deleted == 1 {
            audit
        } else {
            audit.outcome("already_gone")
        };
        append_audit(&mut tx, self.now()?, &audit).await?;
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// Records `jti` as revoked until `expires_at` and appends `audit`; false when it
    /// already was.
    pub async fn revoke(&self, jti: &str, expires_at: u64, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted =
            sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
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
        append_audit(&mut tx, self.now()?, &audit).await?;
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// Whether `jti` is revoked.
    pub async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM revoked_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Purges secrets expired at `now` (auditing each) and revocations past their token's
    /// expiry.
    pub async fn sweep(&self, now: u64) -> Result<Swept, StoreError> {
        let at = to_i64(now, "now")?;
        let mut tx = self.begin_write().await?;
        let expired = sqlx::query("DELETE FROM secrets WHERE expires_at <= $1 RETURNING key_id, user_id")
            .bind(at)
            .fetch_all(&mut *tx)
            .await?;
        let stamped = self.now()?;
        for row in &expired {
            let key_id: String = row.try_get("key_id")?;
            let user_id: String = row.try_get("user_id")?;
            let entry = AuditEntry::new(AuditEvent::Expired, &key_id).user(&user_id);
            append_audit(&mut tx, stamped, &entry).await?;
        }
        let revocations = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Swept {
            secrets: expired.len() as u64,
            revocations,
        })
    }

    /// Up to `limit` secrets whose content key may not be wrapped to `current_kid` yet
    /// (`wrap_kid` differs or is unknown), in key_id order after `after`.
    pub async fn rewrap_candidates(
        &self,
        current_kid: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, user_id, envelope, created_at, expires_at, reads_left, wrap_kid FROM secrets
             WHERE (wrap_kid IS NULL OR wrap_kid <> $1) AND key_id > $2 ORDER BY key_id LIMIT $3",
        )
        .bind(current_kid)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    /// Writes a batch of rewrapped envelopes in one transaction; returns how many rows
    /// still held their old envelope and were updated.
    pub async fn apply_rewrap(&self, batch: &[Rewrapped]) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut updated = 0;
        for item in batch {
            updated +=
                sqlx::query("UPDATE secrets SET envelope = $1, wrap_kid = $2 WHERE key_id = $3 AND envelope = $4")
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

    /// Appends an audit record on its own (denials).
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        append_audit(&mut tx, self.now()?, &entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` audit records after `after_seq`, in order: the trail a page at a time.
    pub async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, event, key_id, user_id, jti, client, outcome, prev_hash, hash FROM audit
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Verifies the whole trail `page_size` records at a time (memory does not grow with
    /// it): the verifier that took every record, or where the chain breaks.
    pub async fn verify_audit(&self, page_size: u32) -> Result<Result<ChainVerifier, ChainBreak>, StoreError> {
        self.verify_audit_with(page_size, |_| {}).await
    }

    /// [`Store::verify_audit`], showing `each` every record once it has verified against
    /// the ones before it (so its `hash` is its chain hash): how `audit-verify` compares the
    /// chain with signed checkpoints in the same pass.
    pub async fn verify_audit_with(
        &self,
        page_size: u32,
        mut each: impl FnMut(&AuditRecord),
    ) -> Result<Result<ChainVerifier, ChainBreak>, StoreError> {
        let page_size = page_size.max(1);
        let mut verifier = ChainVerifier::default();
        let mut after = 0;
        loop {
            let page = self.audit_page(after, page_size).await?;
            for record in &page {
                if let Err(broken) = verifier.push(record) {
                    return Ok(Err(broken));
                }
                each(record);
            }
            match page.last() {
                Some(last) if page.len() == page_size as usize => after = last.seq,
                _ => return Ok(Ok(verifier)),
            }
        }
    }

    /// The whole audit trail in order.
    pub async fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, event, key_id, user_id, jti, client, outcome, prev_hash, hash FROM audit ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// A round trip to the backend, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
