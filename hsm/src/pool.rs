//! A bounded pool of logged-in PKCS#11 sessions on one token, used off the async runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use crate::error::{Error, Operation, Result, is_session_fatal, rv_of};
use crate::module::Module;

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

/// A pool of sessions on one token, logged in once.
///
/// Cloning is cheap. At most `sessions` calls run at once: async calls on tokio's blocking
/// pool, synchronous ones (rustls' handshake signatures) on the calling thread.
/// `Session` is `Send` but not `Sync`, so each session is
/// used by one worker at a time: it is checked out for the call and checked back in.
/// After a session- or token-fatal error (session closed, device removed, token gone,
/// not logged in) the pool drops every session, finds the token again by label, logs
/// in again and retries the call once; a wrong PIN is never retried.
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
    state: Mutex<State>,
}

/// The login session keeps the token logged in: closing a token's last session logs
/// the application out.
/// `generation` changes on every reset so that a session checked out before a reset
/// is not put back into the new pool.
#[derive(Default)]
struct State {
    slot: Option<Slot>,
    login: Option<Session>,
    idle: Vec<Session>,
    generation: u64,
}

impl TokenPool {
    /// Finds the token, opens a session and logs in, so that a wrong label, an
    /// unreachable token server or a wrong PIN fails start-up instead of the first request.
    pub async fn connect(module: &Module, mut config: TokenConfig) -> Result<Self> {
        config.sessions = config.sessions.max(1);
        let sessions = config.sessions;
        let pool = Self {
            inner: Arc::new(Inner {
                module: module.clone(),
                permits: Arc::new(Semaphore::new(sessions)),
                reserved: AtomicUsize::new(0),
                config,
                state: Mutex::new(State::default()),
            }),
        };
        pool.run(Operation::Connect, |_session| Ok(())).await?;
        Ok(pool)
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
        let call = || self.inner.run_blocking(Access::Read, &op);
        let Some(runtime) = multi_threaded_runtime() else {
            return call();
        };
        tokio::task::block_in_place(|| {
            let timeout = self.inner.config.operation_timeout;
            let _permit = runtime
                .block_on(tokio::time::timeout(timeout, self.inner.permits.acquire()))
                .map_err(|_| Error::TimedOut { operation, timeout })?
                .expect("the pool's semaphore is never closed");
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
        let call = || self.inner.run_blocking(Access::Read, &op);
        let Some(runtime) = multi_threaded_runtime() else {
            let _permit = budget.permits.try_acquire().map_err(|_| Error::Busy { operation })?;
            return call();
        };
        tokio::task::block_in_place(|| {
            let _permit = match budget.permits.try_acquire() {
                Ok(permit) => permit,
                Err(_) => runtime
                    .block_on(tokio::time::timeout(budget.wait, budget.permits.acquire()))
                    .map_err(|_| Error::Busy { operation })?
                    .expect("a budget's semaphore is never closed"),
            };
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
        self.run_as(Access::Write, operation, op).await
    }

    /// Runs `op` with a logged-in session on a blocking worker.
    ///
    /// `op` may run twice: once more after the pool recovered from a session-fatal error.
    pub(crate) async fn run<T, F>(&self, operation: Operation, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T> + Send + 'static,
    {
        self.run_as(Access::Read, operation, op).await
    }

    async fn run_as<T, F>(&self, access: Access, operation: Operation, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Session) -> Result<T> + Send + 'static,
    {
        let timeout = self.inner.config.operation_timeout;
        let inner = Arc::clone(&self.inner);
        let call = async move {
            let permit = Arc::clone(&inner.permits)
                .acquire_owned()
                .await
                .expect("the pool's semaphore is never closed");
            // The permit moves into the worker so that a call that outlives its timeout
            // still counts against the bound until it really returns.
            tokio::task::spawn_blocking(move || {
                let result = inner.run_blocking(access, &op);
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
    fn run_blocking<T>(&self, access: Access, op: &impl Fn(&Session) -> Result<T>) -> Result<T> {
        let mut reinitialized = false;
        loop {
            let result = {
                let shared = &self.module.shared;
                let _gate = shared.gate.read().unwrap_or_else(|p| p.into_inner());
                let _reading =
                    (access == Access::Read).then(|| shared.objects.read().unwrap_or_else(|p| p.into_inner()));
                let _writing =
                    (access == Access::Write).then(|| shared.objects.write().unwrap_or_else(|p| p.into_inner()));
                self.run_with_session(op)
            };
            match result {
                Err(error) if !reinitialized && is_module_down(&error) => {
                    reinitialized = true;
                    if !self.module.reinitialize() {
                        return Err(error);
                    }
                    tracing::warn!(token = %self.config.token_label, error = %error, "token unreachable; re-initialised the PKCS#11 module");
                    self.reset();
                }
                other => return other,
            }
        }
    }

    fn run_with_session<T>(&self, op: &impl Fn(&Session) -> Result<T>) -> Result<T> {
        let mut recovered = false;
        loop {
            let (session, generation) = self.checkout()?;
            match op(&session) {
                Ok(value) => {
                    self.checkin(session, generation);
                    return Ok(value);
                }
                Err(error) if is_lost(&error, &session) => {
                    drop(session);
                    self.reset();
                    if recovered {
                        return Err(error);
                    }
                    tracing::warn!(token = %self.config.token_label, error = %error, "token session lost; reconnecting");
                    recovered = true;
                }
                Err(other) => {
                    self.checkin(session, generation);
                    return Err(other);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left at worst a stale session
        // list, which the next fatal error resets anyway.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn checkout(&self) -> Result<(Session, u64)> {
        let mut state = self.lock();
        if let Some(session) = state.idle.pop() {
            return Ok((session, state.generation));
        }
        let slot = self.ensure_logged_in(&mut state)?;
        match self.module.ctx.open_rw_session(slot) {
            Ok(session) => Ok((session, state.generation)),
            Err(e) => {
                if is_session_fatal(&e) || rv_of(&e) == Some(RvError::SlotIdInvalid) {
                    Self::clear(&mut state);
                }
                Err(Error::Pkcs11 {
                    operation: Operation::OpenSession,
                    source: e,
                })
            }
        }
    }

    fn checkin(&self, session: Session, generation: u64) {
        let mut state = self.lock();
        let kept = self.config.sessions + self.reserved.load(Ordering::Relaxed);
        if state.generation == generation && state.idle.len() < kept {
            state.idle.push(session);
        }
    }

    fn reset(&self) {
        Self::clear(&mut self.lock());
    }

    /// Closing sessions on a vanished token fails; cryptoki logs that and moves on.
    fn clear(state: &mut State) {
        state.idle.clear();
        state.login = None;
        state.slot = None;
        state.generation += 1;
    }

    fn ensure_logged_in(&self, state: &mut State) -> Result<Slot> {
        if let (Some(slot), Some(_)) = (state.slot, state.login.as_ref()) {
            return Ok(slot);
        }
        let slot = self.find_slot()?;
        let session = self
            .module
            .ctx
            .open_rw_session(slot)
            .map_err(Error::pkcs11(Operation::OpenLoginSession))?;
        self.login(&session)?;
        state.slot = Some(slot);
        state.login = Some(session);
        Ok(slot)
    }

    /// Logs the application in. SoftHSM keeps the login flags in the token's file and
    /// rewrites it on every C_Login, so two processes logging in to one token at the
    /// same instant can read it torn and get CKR_GENERAL_ERROR or
    /// CKR_USER_PIN_NOT_INITIALIZED (measured: 1 to 7 of 12 simultaneous starts). Those
    /// two are retried a few times with a short, growing pause; a refused PIN never is.
    fn login(&self, session: &Session) -> Result<()> {
        const ATTEMPTS: u32 = 8;
        let mut attempt = 1;
        loop {
            match session.login(UserType::User, Some(&self.config.pin)) {
                Ok(()) => return Ok(()),
                Err(e) if rv_of(&e) == Some(RvError::UserAlreadyLoggedIn) => return Ok(()),
                Err(e)
                    if attempt < ATTEMPTS
                        && matches!(rv_of(&e), Some(RvError::GeneralError | RvError::UserPinNotInitialized)) =>
                {
                    tracing::debug!(attempt, error = %e, "login raced another process; retrying");
                    std::thread::sleep(Duration::from_millis(25 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(e) => return Err(login_error(&self.config.token_label, e)),
            }
        }
    }

    /// Slot discovery runs on its own thread so that a module spinning inside
    /// C_GetSlotList (p11-kit-client with an unreachable server) costs a leaked thread
    /// and a clear error, not a hung service.
    fn find_slot(&self) -> Result<Slot> {
        let timeout = self.config.slot_discovery_timeout;
        let started = Instant::now();
        let shared = Arc::clone(&self.module.shared);
        // One discovery at a time per module; one stuck in the module (past our bound)
        // makes the others give up instead of piling up threads.
        while shared.discovering.swap(true, Ordering::SeqCst) {
            if started.elapsed() >= timeout {
                return Err(Error::SlotDiscoveryTimedOut(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let timeout = timeout.saturating_sub(started.elapsed());
        let ctx = self.module.ctx.clone();
        let label = self.config.token_label.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("pkcs11-slot-discovery".into())
            .spawn(move || {
                let found = find_slot_by_label(&ctx, &label);
                shared.discovering.store(false, Ordering::SeqCst);
                let _ = tx.send(found);
            });
        if let Err(e) = spawned {
            self.module.shared.discovering.store(false, Ordering::SeqCst);
            return Err(Error::DiscoveryThread(e));
        }
        rx.recv_timeout(timeout)
            .map_err(|_| Error::SlotDiscoveryTimedOut(timeout))?
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

fn find_slot_by_label(ctx: &Pkcs11, label: &str) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(Error::pkcs11(Operation::ListSlots))?;
    let mut present = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if info.label().trim_end() == label {
            return Ok(slot);
        }
        present.push(info.label().trim_end().to_owned());
    }
    Err(Error::TokenNotFound {
        label: label.to_owned(),
        present,
    })
}

fn login_error(label: &str, e: CkError) -> Error {
    match rv_of(&e) {
        Some(
            rv @ (RvError::PinIncorrect
            | RvError::PinLocked
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinExpired),
        ) => Error::PinRejected {
            label: label.to_owned(),
            rv,
        },
        _ => Error::Pkcs11 {
            operation: Operation::Login,
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{hsm_test_config, module};

    /// Another session of the same application logs out: every session of the pool loses
    /// its login at once, as after a token reset. The next call must recover by itself.
    #[tokio::test]
    async fn recovers_when_the_token_logs_the_application_out() -> Result<()> {
        // Alone with the token: no other test may log in (or be logged out) meanwhile.
        let _exclusive = crate::test_support::LOGIN_STATE.write().await;
        let module = module()?;
        let pool = TokenPool::connect(&module, hsm_test_config()?).await?;
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

        let generation = pool.inner.lock().generation;
        pool.run(Operation::Logout, |session| {
            session.logout().map_err(Error::pkcs11(Operation::Logout))
        })
        .await?;
        signer.sign(b"after").await?;
        assert!(
            pool.inner.lock().generation > generation,
            "the pool must have reconnected"
        );

        crate::destroy_key_pair(&pool, &label).await?;
        Ok(())
    }
}
