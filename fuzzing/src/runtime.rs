//! One small tokio runtime for the targets whose parser is async (the JSON extractor, the
//! access-token verifier); built once, shared by every call.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// Runs `future` to completion. The futures driven here never wait on I/O or timers: a
/// request body in memory, a verifier whose keys are loaded.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime needs no resources that can be missing")
        })
        .block_on(future)
}
