//! A PKCS#11 module, loaded and initialised once per process, and re-initialised when a
//! remote module lost its server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;

use crate::error::{Error, Result, rv_of};

/// A loaded and initialised PKCS#11 module.
///
/// Load each module once per process and share it: initialising the same module twice
/// in parallel crashes SoftHSM (rust-cryptoki issues #93 and #260).
#[derive(Clone)]
pub struct Module {
    pub(crate) ctx: Pkcs11,
    path: PathBuf,
    pub(crate) shared: Arc<ModuleState>,
}

/// What every user of one module shares.
///
/// `gate`: PKCS#11 calls hold it shared; re-initialising the module (C_Finalize +
/// C_Initialize) holds it exclusively, so no call runs while the library resets.
/// `discovering`: a slot discovery still running (it can spin inside C_GetSlotList);
/// no second one starts and the module is not re-initialised under it.
/// `objects`: token operations hold it shared, creating or destroying a token object
/// exclusively: SoftHSM 2.6.1 fails object creation that overlaps other work on the token's
/// objects with CKR_GENERAL_ERROR or CKR_TEMPLATE_INCONSISTENT (SoftHSMv2 issue 573;
/// measured here: 2 of 6 runs of this crate's tests, and still 1 in 15 with creations only
/// serialised among themselves). Provisioning is rare enough to queue everything behind.
#[derive(Default)]
pub(crate) struct ModuleState {
    pub(crate) gate: RwLock<()>,
    last_reinit: Mutex<Option<Instant>>,
    pub(crate) discovering: AtomicBool,
    pub(crate) objects: RwLock<()>,
}

/// Least time between two re-initialisations of a module.
const REINIT_INTERVAL: Duration = Duration::from_secs(1);

impl Module {
    /// Loads the shared library at `path` and calls C_Initialize with OS locking.
    pub fn load(path: &Path) -> Result<Self> {
        let load_error = |source| Error::LoadModule {
            path: path.to_owned(),
            source,
        };
        let ctx = Pkcs11::new(path).map_err(load_error)?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
            Err(e) => return Err(load_error(e)),
        }
        Ok(Self {
            ctx,
            path: path.to_owned(),
            shared: Arc::new(ModuleState::default()),
        })
    }

    /// C_Finalize then C_Initialize, at most once per [`REINIT_INTERVAL`]: a remote
    /// module (p11-kit-client, a network HSM's library) that lost its server keeps
    /// answering CKR_DEVICE_ERROR until it is initialised again. Returns whether it ran.
    pub(crate) fn reinitialize(&self) -> bool {
        if self.shared.discovering.load(Ordering::SeqCst) {
            return false;
        }
        let _exclusive = self.shared.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut last = self.shared.last_reinit.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < REINIT_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
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
                tracing::warn!(module = %self.path.display(), error = %e, "re-initialising the PKCS#11 module failed");
                false
            }
        }
    }

    /// Path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn context(&self) -> &Pkcs11 {
        &self.ctx
    }
}
