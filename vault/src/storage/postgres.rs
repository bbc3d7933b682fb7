//! The backend for several vault replicas: PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::audit::{AuditEntry, AuditEvent, AuditRecord};

use super::{PutOutcome, ReadGrant, Rewrapped, Store, StoreError, StoredSecret, Swept};

/// Key of the transaction-scoped advisory lock that serialises audit appends across
/// every vault replica (the chain needs one writer at a time).
const AUDIT_LOCK: i64 = 0x7661_756c_7441_7564;

/// PostgreSQL, shared by any number of vault replicas. A commit is durable under the
/// server's default `synchronous_commit = on`; a lost connection is an error (503) and
/// the pool reconnects by itself when the server is back.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and migrates. While the server is unreachable a request waits at most
    /// 3 s for a connection, then fails (503).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// A transaction holding the audit advisory lock until it ends.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

super::sql::sql_store!(PostgresStore, Postgres);
