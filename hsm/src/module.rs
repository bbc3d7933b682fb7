//! A PKCS#11 module, loaded once per process as one or more connections, each re-initialised
//! when it lost its server.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;

use crate::error::{Error, Result, rv_of};

/// A loaded and initialised PKCS#11 module: one or more independent instances of it
/// ("connections"), each with its own function list and state.
///
/// Load each module once per process and share it: initialising the same module twice
/// in parallel crashes SoftHSM (rust-cryptoki issues #93 and #260). A module that keeps
/// one state per process (SoftHSM, most vendors' libraries) is one connection whatever
/// was asked for. Several connections are for `p11-kit-client.so`: each call of its
/// `C_GetFunctionList` makes a new instance with its own socket (p11-kit 0.24.1
/// `p11-kit/client.c`), `p11-kit server` serves each socket with its own `p11-kit-remote`
/// process, and that process answers one request at a time.
#[derive(Clone)]
pub struct Module {
    path: PathBuf,
    pub(crate) connections: Vec<Arc<Connection>>,
    pub(crate) shared: Arc<ModuleState>,
}

/// What every connection of one module shares.
///
/// `objects`: token operations hold it shared, creating or destroying a token object
/// exclusively: SoftHSM 2.6.1 fails object creation that overlaps other work on the token's
/// objects with CKR_GENERAL_ERROR or CKR_TEMPLATE_INCONSISTENT (SoftHSMv2 issue 573;
/// measured here: 2 of 6 runs of this crate's tests, and still 1 in 15 with creations only
/// serialised among themselves). Provisioning is rare enough to queue everything behind.
/// `connecting`: held while a connection is (re-)initialised or logs in. Behind p11-kit each
/// connection is a process of its own loading the token: SoftHSM rewrites the token's file
/// on every C_Login, and a process starting or logging in meanwhile can read it torn (no
/// token, CKR_GENERAL_ERROR); two connections made at the same instant have seen no slots.
#[derive(Default)]
pub(crate) struct ModuleState {
    pub(crate) objects: RwLock<()>,
    pub(crate) connecting: Mutex<()>,
}

/// One instance of the module: its own PKCS#11 state (slots, sessions, login), and behind
/// p11-kit its own connection to the token server.
///
/// `gate`: PKCS#11 calls hold it shared; re-initialising the instance (C_Finalize +
/// C_Initialize) holds it exclusively, so no call runs while the library resets.
/// `discovering`: a slot discovery still running (it can spin inside C_GetSlotList);
/// no second one starts and the instance is not re-initialised under it.
pub(crate) struct Connection {
    pub(crate) ctx: Pkcs11,
    pub(crate) gate: RwLock<()>,
    last_reinit: Mutex<Option<Instant>>,
    pub(crate) discovering: AtomicBool,
}

/// Least time between two re-initialisations of a connection.
const REINIT_INTERVAL: Duration = Duration::from_secs(1);

/// Most connections [`Module::default_connections`] gives a remote module: a few are
/// enough to keep a 2- or 4-core token server busy, and each one is a process there.
pub const MAX_DEFAULT_CONNECTIONS: usize = 4;

impl Module {
    /// Loads the shared library at `path` as one connection and calls C_Initialize with OS
    /// locking.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_connections(path, 1)
    }

    /// Loads the shared library at `path` as up to `connections` instances (at least one),
    /// one after another, each initialised with OS locking before the next is made.
    ///
    /// An extra instance that answers CKR_CRYPTOKI_ALREADY_INITIALIZED shares the state of
    /// the first (the module keeps one per process): it is dropped and no more are made.
    pub fn load_connections(path: &Path, connections: usize) -> Result<Self> {
        let load_error = |source| Error::LoadModule {
            path: path.to_owned(),
            source,
        };
        let mut loaded = Vec::new();
        while loaded.len() < connections.max(1) {
            let ctx = Pkcs11::new(path).map_err(load_error)?;
            match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                Ok(()) => {}
                Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) && loaded.is_empty() => {}
                Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {
                    tracing::info!(
                        module = %path.display(),
                        asked = connections,
                        "the PKCS#11 module keeps one state per process: using one connection"
                    );
                    break;
                }
                Err(e) => return Err(load_error(e)),
            }
            loaded.push(Arc::new(Connection {
                ctx,
                gate: RwLock::new(()),
                last_reinit: Mutex::new(None),
                discovering: AtomicBool::new(false),
            }));
        }
        Ok(Self {
            path: path.to_owned(),
            connections: loaded,
            shared: Arc::new(ModuleState::default()),
        })
    }

    /// How many connections a pool of `sessions` sessions is worth on the module at `path`:
    /// one per session, up to [`MAX_DEFAULT_CONNECTIONS`], for `p11-kit-client` (p11-kit
    /// serves a connection one request at a time: measured ~860 RSA-2048 signatures/s per
    /// connection whatever the client's thread count, about 0.4 of what the token does
    /// with two threads); one for any other module.
    pub fn default_connections(path: &Path, sessions: usize) -> usize {
        let remote = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("p11-kit-client"));
        if remote {
            sessions.clamp(1, MAX_DEFAULT_CONNECTIONS)
        } else {
            1
        }
    }

    /// Path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Instances of the module in use (see [`Module::load_connections`]).
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// The first instance, for one-off work outside a pool (token initialisation).
    pub(crate) fn context(&self) -> &Pkcs11 {
        &self.connections[0].ctx
    }
}

impl Connection {
    /// C_Finalize then C_Initialize, at most once per [`REINIT_INTERVAL`]: a remote
    /// module (p11-kit-client, a network HSM's library) that lost its server keeps
    /// answering CKR_DEVICE_ERROR until it is initialised again. Returns whether it ran.
    pub(crate) fn reinitialize(&self, module: &Module) -> bool {
        if self.discovering.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut last = self.last_reinit.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < REINIT_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        let _connecting = module.shared.connecting.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.ctx.clone().finalize() {
            tracing::debug!(error = %e, "C_Finalize before re-initialising");
        }
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) => true,
            Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => true,
            Err(e) => {
                tracing::warn!(module = %module.path.display(), error = %e, "re-initialising the PKCS#11 module failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_p11_kit_client_gets_more_than_one_connection_by_default() {
        let client = Path::new("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so");
        assert_eq!(Module::default_connections(client, 1), 1);
        assert_eq!(Module::default_connections(client, 3), 3);
        assert_eq!(Module::default_connections(client, 64), MAX_DEFAULT_CONNECTIONS);
        assert_eq!(Module::default_connections(client, 0), 1);
        let softhsm = Path::new("/usr/lib/softhsm/libsofthsm2.so");
        assert_eq!(Module::default_connections(softhsm, 8), 1);
    }
}
