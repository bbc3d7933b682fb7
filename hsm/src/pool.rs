//! A bounded pool of logged-in PKCS#11 sessions on one token, used off the async runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::session::{Session, SessionState};
use secrecy::SecretString;
use tokio::sync::Semaphore;

use crate::error::{Error, Operation, Result, is_session_fatal, rv_of};
use crate::lane::Lane;
use crate::module::Module;
use crate::observe::{ran, waited};

/// How to reach one token and how hard to use it.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// CKA_LABEL of the token (slot ids are not stable: SoftHSM assigns random ones).
    pub token_label: String,
    /// User PIN; kept as a secret so it never reaches a log line.
    pub pin: SecretString,
    /// Sessions in the pool, which is also the number of concurrent PKCS#11 calls.
    pub sessions: usize,
    /// Upper bound for slot discovery (C_GetSlotList can spin forever through p11-kit).
    pub slot_discovery_timeout: Duration,
    /// Upper bound for one operation, queueing included.
    pub operation_timeout: Duration,
}

/// A pool of sessions on one token, logged in once per connection of the module.
///
/// Cloning is cheap. At most `sessions` calls run at once: async calls on tokio's blocking
/// pool, synchronous ones (rustls' handshake signatures) on the calling thread.
/// `Session` is `Send` but not `Sync`, so each session is
/// used by one worker at a time: it is checked out for the call and checked back in.
/// Each call goes to the least busy connection of the module (see [`Module::load_connections`]),
/// where sessions, slot and login are that connection's own.
/// After a session- or token-fatal error (session closed, device removed, token gone,
/// not logged in) the pool drops every session of that connection, finds the token again
/// by label, logs in again and retries the call once; a wrong PIN is never retried.
#[derive(Clone)]
pub struct TokenPool {
    inner: Arc<Inner>,
}

struct Inner {
    module: Module,
    config: TokenConfig,
    permits: Arc<Semaphore>,
    /// Sessions kept open beyond `config.sessions` for callers with their own budget
    /// (see [`TokenPool::budget`]).
    reserved: AtomicUsize,
    /// One per connection of the module, in the module's order.
    lanes: Vec<Lane>,
    /// Where the search for the least busy lane starts next, so that idle lanes take
    /// calls in turn.
    next_lane: AtomicUsize,
    /// When the token last showed it decrypts (see [`TokenPool::vouched_within`]).
    vouched_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Which lanes a call may run on.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// The least busy lane, then the others.
    LeastBusy,
    /// Only this one (logging in every connection at start-up).
    Lane(usize),
}

impl TokenPool {
    /// Finds the token, opens a session and logs in on every connection of `module`, one
    /// after another, so that a wrong label, an unreachable token server or a wrong PIN
    /// fails start-up instead of the first request.
    pub async fn connect(module: &Module, mut config: TokenConfig) -> Result<Self> {
        config.sessions = config.sessions.max(1);
        let sessions = config.sessions;
        let pool = Self {
            inner: Arc::new(Inner {
                module: module.clone(),
                permits: Arc::new(Semaphore::new(sessions)),
                reserved: AtomicUsize::new(0),
                config,
                lanes: module.connections.iter().cloned().map(Lane::new).collect(),
                next_lane: AtomicUsize::new(0),
                vouched_at: std::sync::Mutex::new(None),
            }),
        };
        for lane in 0..pool.inner.lanes.len() {
            pool.run_as(Access::Read, Route::Lane(lane), Operation::Connect, |_session| Ok(()))
                .await?;
        }
        Ok(pool)
    }

    /// Records that the token just decrypted correctly: it works.
    pub(crate) fn vouch(&self) {
        *self.inner.vouched_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// Whether the token decrypted correctly within `window` (see [`crate::Decrypter`]).
    pub(crate) fn vouched_within(&self, window: Duration) -> bool {
        self.inner
            .vouched_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Label of the token this pool talks to.
    pub fn token_label(&self) -> &str {
        &self.inner.config.token_label
    }

    /// Cheap liveness probe for readiness endpoints: a session on a present token.
    pub async fn check(&self) -> Result<()> {
        self.run(Operation::CheckSession, |session| {
            session
                .get_session_info()
                .map(drop)
                .map_err(Error::pkcs11(Operation::CheckSession))
        })
        .await
    }

    /// A budget of `sessions` concurrent synchronous calls of its own, for
    /// [`Self::run_sync_within`], each waiting at most `wait` for one of them: those calls
    /// never take a permit the async callers need, and the pool keeps that many more
    /// sessions open for them.
    pub(crate) fn budget(&self, sessions: usize, wait: Duration) -> Budget {
        let sessions = sessions.max(1);
        self.inner.reserved.fetch_add(sessions, Ordering::Relaxed);
        Budget {
            permits: Arc::new(Semaphore::new(sessions)),
            wait,
        }
    }

    /// Runs `op` on the calling thread, for callers that cannot await (rustls signs
    /// synchronously inside the handshake). Same sessions, bound and recovery as
    /// [`Self::run`]: keep `op` to one short token operation.
    ///
    /// On a multi-threaded tokio runtime the call waits for a permit (at most the operation
    /// timeout) and runs under `block_in_place`, so the worker's other tasks move to another
    /// thread instead of waiting out a token round trip. Elsewhere (a current-thread runtime,
    /// a plain thread: the admin tools) it runs directly.
    pub(crate) fn run_sync<T>(&self, operation: Operation, op: impl Fn(&Session) -> Result<T>) -> Result<T> {
        let call = || self.inner.run_timed(operation, Access::Read, Route::LeastBusy, &op);
        let Some(runtime) = multi_threaded_runtime() else {
            return call();
        };
        tokio::task::block_in_place(|| {
            let timeout = self.inner.config.operation_timeout;
            let since = Instant::now();
            let _permit = runtime
                .block_on(tokio::time::timeout(timeout, self.inner.permits.acquire()))
                .map_err(|_| Error::TimedOut { operation, timeout })?
                .expect("the pool's semaphore is never closed");
            waited(operation, since);
            call()
        })
    }

    /// Like [`Self::run_sync`], but under `budget` instead of the pool's permits, waiting
    /// at most the budget's short wait: when every permit of the budget stays taken the
    /// call fails with [`Error::Busy`]. For work that anyone on the network can cause (a
    /// TLS handshake is signed before the client proves anything): it must never take a
    /// session from the requests, nor queue for long. (Off a multi-threaded runtime it does
    /// not wait at all.)
    pub(crate) fn run_sync_within<T>(
        &self,
        budget: &Budget,
        operation: Operation,
        op: impl Fn(&Session) -> Result<T>,
    ) -> Result<T> {
        let call = || self.inner.run_timed(operation, Access::Read, Route::LeastBusy, &op);
        let Some(runtime) = multi_threaded_runtime() else {
            let _permit = budget.permits.try_acquire().map_err(|_| Error::Busy { operation })?;
            return call();
        };
        tokio::task::block_in_place(|| {
            let since = Instant::now();
            let _permit = match budget.permits.try_acquire() {
                Ok(permit) => permit,
                Err(_) => runtime
                    .block_on(tokio::time::timeout(budget.wait, budget.permits.acquire()))
                    .map_err(|_| Error::Busy { operation })?
                    .expect("a budget's semaphore is never closed"),
            };
            waited(operation, since);
            call()
        })
    }

    /// Like [`Self::run`], for an `op` that creates or destroys token objects (key
    /// generation, import, destruction): alone, with no other operation of this module
    /// running (see `ModuleState::objects` for why).
    pub(crate) async fn run_writing<T, F>(&self, operation: Operation, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T> + Send + 'static,
    {
        self.run_as(Access::Write, Route::LeastBusy, operation, op).await
    }

    /// Runs `op` with a logged-in session on a blocking worker.
    ///
    /// `op` may run twice: once more after the pool recovered from a session-fatal error.
    pub(crate) async fn run<T, F>(&self, operation: Operation, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T> + Send + 'static,
    {
        self.run_as(Access::Read, Route::LeastBusy, operation, op).await
    }

    /// Like [`Self::run`], on the module's first connection, with that connection's PKCS#11
    /// instance and the pool's configuration: for the token check (`check.rs`), which also
    /// makes the calls that take a slot rather than a session (C_GetMechanismInfo,
    /// C_GetTokenInfo, C_OpenSession) and logs in a second time.
    pub(crate) async fn run_with_instance<T, F>(&self, operation: Operation, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Pkcs11, &TokenConfig, &Session) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        self.run_as(Access::Read, Route::Lane(0), operation, move |session| {
            op(&inner.lanes[0].connection.ctx, &inner.config, session)
        })
        .await
    }

    /// Like [`Self::run`], on connection `index` of the module only: tests show that every
    /// connection works, not just the one a call happened to land on.
    #[cfg(test)]
    pub(crate) async fn run_on_connection<T, F>(&self, index: usize, operation: Operation, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T> + Send + 'static,
    {
        self.run_as(Access::Read, Route::Lane(index), operation, op).await
    }

    async fn run_as<T, F>(&self, access: Access, route: Route, operation: Operation, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T> + Send + 'static,
    {
        let timeout = self.inner.config.operation_timeout;
        let inner = Arc::clone(&self.inner);
        let call = async move {
            let since = Instant::now();
            let permit = Arc::clone(&inner.permits)
                .acquire_owned()
                .await
                .expect("the pool's semaphore is never closed");
            waited(operation, since);
            // The permit moves into the worker so that a call that outlives its timeout
            // still counts against the bound until it really returns.
            tokio::task::spawn_blocking(move || {
                let result = inner.run_timed(operation, access, route, &op);
                drop(permit);
                result
            })
            .await
            .map_err(Error::Worker)?
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| Error::TimedOut { operation, timeout })?
    }
}

/// The current runtime if it is a multi-threaded tokio runtime: the only kind on which a
/// synchronous caller may wait for a permit under `block_in_place`.
fn multi_threaded_runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .ok()
        .filter(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Concurrent calls allowed to one kind of synchronous caller (see [`TokenPool::budget`]).
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    /// How long a call waits for a permit before it fails with [`Error::Busy`].
    wait: Duration,
}

/// Whether an operation only uses the token's objects or creates or destroys one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Inner {
    /// [`Self::run_blocking`], its time reported to the process's [`CallObserver`].
    fn run_timed<T>(
        &self,
        operation: Operation,
        access: Access,
        route: Route,
        op: &impl Fn(&Session) -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = self.run_blocking(access, route, op);
        ran(operation, started);
        result
    }

    /// Runs `op` on a lane of `route`, recovering from a lost session or server there.
    ///
    /// A lane whose connection stays down (its server is gone, or it was re-initialised
    /// less than a second ago) hands the call to the next one: after an outage the lanes
    /// come back one by one, and a call must not fail on one still down while another
    /// works. A module-down error comes before `op` ran, so `op` still runs again only
    /// after a session-fatal error.
    fn run_blocking<T>(&self, access: Access, route: Route, op: &impl Fn(&Session) -> Result<T>) -> Result<T> {
        let mut last_error = None;
        for index in self.lanes_for(route) {
            let lane = &self.lanes[index];
            let _busy = lane.enter();
            match self.run_on(lane, access, op) {
                Err(error) if is_module_down(&error) => last_error = Some(error),
                other => return other,
            }
        }
        Err(last_error.expect("a route names at least one lane"))
    }

    /// The lanes to try, in order: for [`Route::LeastBusy`] every lane, the least busy
    /// first and, among equally busy ones, each in turn.
    fn lanes_for(&self, route: Route) -> Vec<usize> {
        match route {
            Route::Lane(index) => vec![index],
            Route::LeastBusy => {
                let count = self.lanes.len();
                let start = self.next_lane.fetch_add(1, Ordering::Relaxed);
                let mut order: Vec<usize> = (0..count).map(|k| (start + k) % count).collect();
                order.sort_by_key(|&index| self.lanes[index].busy());
                order
            }
        }
    }

    fn run_on<T>(&self, lane: &Lane, access: Access, op: &impl Fn(&Session) -> Result<T>) -> Result<T> {
        let mut reinitialized = false;
        loop {
            let result = {
                let _gate = lane.connection.gate.read().unwrap_or_else(|p| p.into_inner());
                let objects = &self.module.shared.objects;
                let _reading = (access == Access::Read).then(|| objects.read().unwrap_or_else(|p| p.into_inner()));
                let _writing = (access == Access::Write).then(|| objects.write().unwrap_or_else(|p| p.into_inner()));
                self.run_with_session(lane, op)
            };
            match result {
                Err(error) if !reinitialized && is_module_down(&error) => {
                    reinitialized = true;
                    if !lane.connection.reinitialize(&self.module) {
                        return Err(error);
                    }
                    tracing::warn!(token = %self.config.token_label, error = %error, "token unreachable; re-initialised the PKCS#11 module");
                    lane.reset();
                }
                other => return other,
            }
        }
    }

    fn run_with_session<T>(&self, lane: &Lane, op: &impl Fn(&Session) -> Result<T>) -> Result<T> {
        let mut recovered = false;
        loop {
            let (session, generation) = lane.checkout(&self.module, &self.config)?;
            match op(&session) {
                Ok(value) => {
                    lane.checkin(session, generation, self.idle_per_lane());
                    return Ok(value);
                }
                Err(error) if is_lost(&error, &session) => {
                    drop(session);
                    lane.reset();
                    if recovered {
                        return Err(error);
                    }
                    tracing::warn!(token = %self.config.token_label, error = %error, "token session lost; reconnecting");
                    recovered = true;
                }
                Err(other) => {
                    lane.checkin(session, generation, self.idle_per_lane());
                    return Err(other);
                }
            }
        }
    }

    /// Idle sessions a lane keeps: the pool's sessions and those reserved for budgets,
    /// shared out over the lanes.
    fn idle_per_lane(&self) -> usize {
        (self.config.sessions + self.reserved.load(Ordering::Relaxed)).div_ceil(self.lanes.len())
    }
}

/// Whether `error` means the session or its login is gone. A logged-out session does
/// not fail C_FindObjects, it just stops seeing private keys, so a missing key is
/// checked against the session's login state.
fn is_lost(error: &Error, session: &Session) -> bool {
    match error {
        Error::Pkcs11 { source, .. } => is_session_fatal(source),
        Error::KeyNotFound { .. } => !matches!(
            session.get_session_info().map(|info| info.session_state()),
            Ok(SessionState::RwUser | SessionState::RoUser)
        ),
        _ => false,
    }
}

/// Errors after which the module itself must be initialised again (a remote module
/// that lost its server), not just the session.
fn is_module_down(error: &Error) -> bool {
    match error {
        Error::TokenNotFound { .. } => true,
        Error::Pkcs11 {
            operation: Operation::ListSlots | Operation::OpenLoginSession | Operation::OpenSession,
            source,
        } => matches!(
            rv_of(source),
            Some(
                RvError::DeviceError | RvError::DeviceRemoved | RvError::GeneralError | RvError::CryptokiNotInitialized
            )
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Token, hsm_test_config, module};

    /// Another session of the same application logs out: every session of the pool loses
    /// its login at once, as after a token reset. The next call must recover by itself.
    #[tokio::test]
    async fn recovers_when_the_token_logs_the_application_out() -> Result<()> {
        // Alone with the token: no other test may log in (or be logged out) meanwhile.
        let _exclusive = crate::test_support::LOGIN_STATE.write().await;
        let module = module(Token::SoftHsm)?;
        let pool = TokenPool::connect(&module, hsm_test_config(Token::SoftHsm)?).await?;
        let label = format!("recover-{}", std::process::id());
        crate::generate_rsa_key_pair(
            &pool,
            crate::RsaKeySpec {
                label: label.clone(),
                id: vec![9],
                bits: 2048,
                usage: crate::KeyUsage::Sign,
            },
        )
        .await?;
        let signer = crate::Signer::new(pool.clone(), label.clone(), crate::RsaScheme::Pkcs1Sha256);
        signer.sign(b"before").await?;

        let generation = pool.inner.lanes[0].generation();
        pool.run(Operation::Logout, |session| {
            session.logout().map_err(Error::pkcs11(Operation::Logout))
        })
        .await?;
        signer.sign(b"after").await?;
        assert!(
            pool.inner.lanes[0].generation() > generation,
            "the pool must have reconnected"
        );

        crate::destroy_key_pair(&pool, &label).await?;
        Ok(())
    }
}
