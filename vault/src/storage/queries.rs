//! The queries, written once for both backends: placeholders are `$N` in ascending order
//! (SQLite and PostgreSQL both bind them by number), and the only backend-specific step,
//! the write lock that serialises audit appends, is [`Backend::begin_write`](super::backend).

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::audit::{AuditEntry, AuditEvent, AuditRecord, ChainBreak, ChainVerifier};

use super::writes::ChainHead;
use super::{Clock, Lookup, Rewrapped, Store, StoreError, StoredSecret, Swept};

pub(super) const SELECT_SECRET: &str =
    "SELECT key_id, user_id, envelope, created_at, expires_at, reads_left, wrap_kid FROM secrets WHERE key_id = $1";

pub(super) fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(what))
}

/// The time to stamp audit records with; read under the write lock, so that times never
/// decrease along the chain.
pub(super) fn stamp(clock: Clock) -> Result<i64, StoreError> {
    to_i64(clock(), "now")
}

fn to_u64(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(what))
}

pub(super) fn secret_from_row(row: &AnyRow) -> Result<StoredSecret, StoreError> {
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

    /// The secret stored under `key_id`, if any (expired or not).
    pub async fn get(&self, key_id: &str) -> Result<Option<StoredSecret>, StoreError> {
        let row = sqlx::query(SELECT_SECRET)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| secret_from_row(&row)).transpose()
    }

    /// In one round trip: whether `jti` is revoked, and the secret stored under `key_id`
    /// (expired or not) — what admitting a request for a secret needs to know first.
    pub async fn lookup(&self, key_id: &str, jti: &str) -> Result<Lookup, StoreError> {
        // One row whatever exists: the revocation as a column, the secret LEFT JOINed (its
        // columns NULL when there is none). `CAST … AS BIGINT` reads the same on both.
        let row = sqlx::query(
            "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1) THEN 1 ELSE 0 END AS BIGINT)
                      AS revoked,
                    s.key_id, s.user_id, s.envelope, s.created_at, s.expires_at, s.reads_left, s.wrap_kid
             FROM (SELECT 1 AS one) AS anchor LEFT JOIN secrets s ON s.key_id = $2",
        )
        .bind(jti)
        .bind(key_id)
        .fetch_one(&self.pool)
        .await?;
        let revoked = row.try_get::<i64, _>("revoked")? != 0;
        let secret = match row.try_get::<Option<String>, _>("key_id")? {
            Some(_) => Some(secret_from_row(&row)?),
            None => None,
        };
        Ok(Lookup { revoked, secret })
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
        let stamped = stamp(self.clock)?;
        let mut head = ChainHead::load(&mut tx).await?;
        for row in &expired {
            let key_id: String = row.try_get("key_id")?;
            let user_id: String = row.try_get("user_id")?;
            let entry = AuditEntry::new(AuditEvent::Expired, &key_id).user(&user_id);
            head.append(&mut tx, stamped, &entry).await?;
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
