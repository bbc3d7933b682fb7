//! Group commit: the durable writes of concurrent requests share one transaction, one
//! lock of the audit chain and one `fsync`.
//!
//! Every write must be durable before its request is answered, and every write appends to
//! the one audit chain, so writes are serialised anyway; committed one by one, each pays a
//! whole `fsync` (SQLite) or WAL flush (PostgreSQL) and a lock round of its own. Here one
//! task takes the writes waiting in a queue, applies them in arrival order inside one write
//! transaction (the chain head read once), commits, and only then answers each caller.
//! While a batch commits the next one gathers, so batches grow with the load by themselves:
//! no timer and no added wait when the queue is quiet.
//!
//! A write that fails fails alone: the transaction is rolled back, that caller gets its
//! error, and the rest of the batch is applied again in a fresh transaction (a rolled-back
//! batch changed nothing, so nothing is applied twice). A failed `BEGIN` or `COMMIT`
//! belongs to no one write and fails the whole batch, none of which is then durable.

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::backend::Backend;
use super::queries::stamp;
use super::writes::{ChainHead, Write, Written};
use super::{Clock, StoreError};

/// Most writes in one transaction: bounds how long the write lock is held and how much one
/// failing write makes the others redo.
const MAX_BATCH: usize = 128;

/// Writes waiting for the committer; beyond this, callers wait to enqueue (backpressure).
const QUEUE: usize = 4096;

/// A write and where its answer goes.
struct Job {
    write: Write,
    answer: oneshot::Sender<Result<Written, StoreError>>,
}

/// The handle requests enqueue writes through. Cloning shares the one committer task,
/// which ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct Committer {
    queue: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer task on the current runtime.
    pub(super) fn start(pool: AnyPool, backend: Backend, clock: Clock) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(run(Batcher { pool, backend, clock }, waiting));
        Self { queue }
    }

    /// Applies `write` in the next batch; returns once that batch committed (or failed).
    pub(super) async fn write(&self, write: Write) -> Result<Written, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Job { write, answer })
            .await
            .map_err(|_| StoreError::CommitterGone)?;
        answered.await.map_err(|_| StoreError::CommitterGone)?
    }
}

/// What applying a batch needs.
struct Batcher {
    pool: AnyPool,
    backend: Backend,
    clock: Clock,
}

async fn run(batcher: Batcher, mut waiting: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        batcher.commit(&mut batch).await;
        batch.clear();
    }
}

impl Batcher {
    /// Applies and commits `batch`, answering every job in it.
    async fn commit(&self, batch: &mut Vec<Job>) {
        while !batch.is_empty() {
            match self.apply(batch).await {
                Ok((written, audit_records, took)) => {
                    service_kit::metrics::storage().committed(written.len(), audit_records, took);
                    for (job, written) in batch.drain(..).zip(written) {
                        // A caller that went away (its request was cancelled) needs no answer.
                        let _ = job.answer.send(Ok(written));
                    }
                }
                Err(Failure::One(index, error)) => {
                    service_kit::metrics::storage().write_failed();
                    let _ = batch.remove(index).answer.send(Err(error));
                }
                Err(Failure::All(error)) => {
                    service_kit::metrics::storage().batch_failed();
                    let error = Arc::new(error);
                    for job in batch.drain(..) {
                        let _ = job.answer.send(Err(StoreError::BatchFailed(error.clone())));
                    }
                }
            }
        }
    }

    /// One transaction over the whole batch: what each write did, once committed, how
    /// many audit records it appended and how long it took.
    async fn apply(&self, batch: &[Job]) -> Result<(Vec<Written>, u64, std::time::Duration), Failure> {
        let started = std::time::Instant::now();
        let mut tx = self.backend.begin_write(&self.pool).await.map_err(Failure::All)?;
        let mut head = ChainHead::load(&mut tx).await.map_err(Failure::All)?;
        let first = head.seq();
        let now = || stamp(self.clock);
        let mut written = Vec::with_capacity(batch.len());
        for (index, job) in batch.iter().enumerate() {
            match job.write.apply(&mut tx, &mut head, now).await {
                Ok(done) => written.push(done),
                Err(error) => {
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %e, "rolling back a batch with a failed write");
                    }
                    return Err(Failure::One(index, error));
                }
            }
        }
        tx.commit().await.map_err(|e| Failure::All(e.into()))?;
        let audit_records = u64::try_from(head.seq() - first).unwrap_or_default();
        Ok((written, audit_records, started.elapsed()))
    }
}

/// Why a batch did not commit.
enum Failure {
    /// The write at this index failed; the others may be applied again.
    One(usize, StoreError),
    /// Beginning or committing failed: no write in the batch is durable.
    All(StoreError),
}
