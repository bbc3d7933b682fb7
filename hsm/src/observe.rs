//! Reporting how long the pools' calls wait and run, to the one observer a process sets
//! (its metrics): pools are opened where the metrics are not at hand.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::Operation;

/// Told how long the pool's calls wait and run, for metrics. Called on the thread that
/// made or ran the call (a PKCS#11 worker, a handshake): keep it to a counter update.
pub trait CallObserver: Send + Sync {
    /// A call for `operation` waited `wait` for a session permit (the pool's, or a
    /// budget's for handshake signatures). Not reported for a call that gave up waiting.
    fn waited(&self, operation: Operation, wait: Duration);
    /// A call for `operation` held a session for `took`: the PKCS#11 calls, key lookup
    /// included, and the recovery and retry after a lost session; failed calls too.
    fn ran(&self, operation: Operation, took: Duration);
}

/// The process's observer of pool calls (see [`observe_calls`]).
static OBSERVER: OnceLock<&'static dyn CallObserver> = OnceLock::new();

/// Has every pool of the process report its calls to `observer`; the first observer set
/// stays (returns whether this one is it). One per process, not per pool, because a
/// process is one service with one set of metrics (as it has one `Pkcs11` instance), and
/// its pools are opened where its metrics are not at hand.
pub fn observe_calls(observer: &'static dyn CallObserver) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Reports the wait of a call for `operation` that started waiting at `since`.
pub(crate) fn waited(operation: Operation, since: Instant) {
    if let Some(observer) = OBSERVER.get() {
        observer.waited(operation, since.elapsed());
    }
}

/// Reports the run of a call for `operation` that took its session at `since`.
pub(crate) fn ran(operation: Operation, since: Instant) {
    if let Some(observer) = OBSERVER.get() {
        observer.ran(operation, since.elapsed());
    }
}
