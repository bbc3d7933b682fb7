//! A pool's sessions on one connection of the module: the token's slot, the login, idle
//! sessions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use crate::error::{Error, Operation, Result, is_session_fatal, rv_of};
use crate::module::{Connection, Module};
use crate::pool::TokenConfig;

/// The sessions of one pool on one [`Connection`]. Slots, sessions and login belong to a
/// connection: behind p11-kit each is a process of its own holding the token, so each
/// lane finds the token and logs in by itself, and a session never moves between lanes.
pub(crate) struct Lane {
    pub(crate) connection: Arc<Connection>,
    state: Mutex<State>,
    /// Calls running on this lane now, to give the next call the least busy one.
    busy: AtomicUsize,
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

/// A call counted as running on a lane until dropped.
pub(crate) struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lane {
    pub(crate) fn new(connection: Arc<Connection>) -> Self {
        Self {
            connection,
            state: Mutex::new(State::default()),
            busy: AtomicUsize::new(0),
        }
    }

    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    pub(crate) fn enter(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(&self.busy)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock left at worst a stale session
        // list, which the next fatal error resets anyway.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle session, or a new one on the token (found and logged in first if needed),
    /// with the generation to check it back in under.
    pub(crate) fn checkout(&self, module: &Module, config: &TokenConfig) -> Result<(Session, u64)> {
        let mut state = self.lock();
        if let Some(session) = state.idle.pop() {
            return Ok((session, state.generation));
        }
        let slot = self.ensure_logged_in(&mut state, module, config)?;
        match self.connection.ctx.open_rw_session(slot) {
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

    /// Keeps `session` for the next call, unless the lane was reset since it was checked
    /// out or already keeps `kept` idle sessions.
    pub(crate) fn checkin(&self, session: Session, generation: u64, kept: usize) {
        let mut state = self.lock();
        if state.generation == generation && state.idle.len() < kept {
            state.idle.push(session);
        }
    }

    pub(crate) fn reset(&self) {
        Self::clear(&mut self.lock());
    }

    #[cfg(test)]
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Closing sessions on a vanished token fails; cryptoki logs that and moves on.
    fn clear(state: &mut State) {
        state.idle.clear();
        state.login = None;
        state.slot = None;
        state.generation += 1;
    }

    fn ensure_logged_in(&self, state: &mut State, module: &Module, config: &TokenConfig) -> Result<Slot> {
        if let (Some(slot), Some(_)) = (state.slot, state.login.as_ref()) {
            return Ok(slot);
        }
        let slot = self.find_slot(config)?;
        let session = self
            .connection
            .ctx
            .open_rw_session(slot)
            .map_err(Error::pkcs11(Operation::OpenLoginSession))?;
        {
            let _connecting = module.shared.connecting.lock().unwrap_or_else(|p| p.into_inner());
            login(&session, config)?;
        }
        state.slot = Some(slot);
        state.login = Some(session);
        Ok(slot)
    }

    /// Slot discovery runs on its own thread so that a module spinning inside
    /// C_GetSlotList (p11-kit-client with an unreachable server) costs a leaked thread
    /// and a clear error, not a hung service.
    fn find_slot(&self, config: &TokenConfig) -> Result<Slot> {
        let timeout = config.slot_discovery_timeout;
        let started = Instant::now();
        // One discovery at a time per connection; one stuck in the module (past our bound)
        // makes the others give up instead of piling up threads.
        while self.connection.discovering.swap(true, Ordering::SeqCst) {
            if started.elapsed() >= timeout {
                return Err(Error::SlotDiscoveryTimedOut(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let timeout = timeout.saturating_sub(started.elapsed());
        let connection = Arc::clone(&self.connection);
        let label = config.token_label.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("pkcs11-slot-discovery".into())
            .spawn(move || {
                let found = find_slot_by_label(&connection.ctx, &label);
                connection.discovering.store(false, Ordering::SeqCst);
                let _ = tx.send(found);
            });
        if let Err(e) = spawned {
            self.connection.discovering.store(false, Ordering::SeqCst);
            return Err(Error::DiscoveryThread(e));
        }
        rx.recv_timeout(timeout)
            .map_err(|_| Error::SlotDiscoveryTimedOut(timeout))?
    }
}

/// Logs the application in. SoftHSM keeps the login flags in the token's file and
/// rewrites it on every C_Login, so two processes logging in to one token at the
/// same instant can read it torn and get CKR_GENERAL_ERROR or
/// CKR_USER_PIN_NOT_INITIALIZED (measured: 1 to 7 of 12 simultaneous starts). Those
/// two are retried a few times with a short, growing pause; a refused PIN never is.
fn login(session: &Session, config: &TokenConfig) -> Result<()> {
    const ATTEMPTS: u32 = 8;
    let mut attempt = 1;
    loop {
        match session.login(UserType::User, Some(&config.pin)) {
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
            Err(e) => return Err(login_error(&config.token_label, e)),
        }
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
