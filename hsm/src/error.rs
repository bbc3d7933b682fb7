//! Typed errors of the `hsm` crate: every PKCS#11 failure keeps its CK_RV and failing call.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use cryptoki::error::{Error as CkError, RvError};

/// What this crate was doing when a PKCS#11 call failed or did not finish in time: our
/// context next to cryptoki's failing function, and what [`Error::is_unavailable`]'s
/// recovery decisions match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Opening the pool: finding the token, logging in.
    Connect,
    /// The readiness probe.
    CheckSession,
    /// C_GetSlotList.
    ListSlots,
    /// C_GetTokenInfo.
    ReadTokenInfo,
    /// C_InitToken.
    InitToken,
    /// C_OpenSession for a worker session.
    OpenSession,
    /// C_OpenSession for the session that keeps the token logged in.
    OpenLoginSession,
    /// C_Login as the user.
    Login,
    /// C_Login as the security officer.
    SoLogin,
    /// C_InitPIN.
    InitUserPin,
    /// C_Logout.
    Logout,
    /// Finding a key object by label.
    FindKey,
    /// Reading attributes of a key object.
    ReadAttributes,
    /// Reading a public key out of the token.
    ExportPublicKey,
    /// Generating a key pair.
    GenerateKeyPair,
    /// Importing a key pair made elsewhere.
    ImportKeyPair,
    /// Destroying a key pair.
    DestroyKeyPair,
    /// A signature.
    Sign,
    /// An RSA-OAEP decryption.
    Decrypt,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Connect => "connect",
            Operation::CheckSession => "session check",
            Operation::ListSlots => "list slots",
            Operation::ReadTokenInfo => "read token info",
            Operation::InitToken => "init token",
            Operation::OpenSession => "open session",
            Operation::OpenLoginSession => "open login session",
            Operation::Login => "login",
            Operation::SoLogin => "SO login",
            Operation::InitUserPin => "init user PIN",
            Operation::Logout => "logout",
            Operation::FindKey => "find key",
            Operation::ReadAttributes => "read attributes",
            Operation::ExportPublicKey => "export public key",
            Operation::GenerateKeyPair => "generate key pair",
            Operation::ImportKeyPair => "import key pair",
            Operation::DestroyKeyPair => "destroy key pair",
            Operation::Sign => "sign",
            Operation::Decrypt => "decrypt",
        })
    }
}

/// What went wrong talking to the token. Callers map these to HTTP with
/// [`Error::is_unavailable`]: token/device trouble is 503, a bad ciphertext is the data's fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("could not load PKCS#11 module {path}")]
    LoadModule {
        /// Path of the shared library that was given.
        path: PathBuf,
        /// Loader or C_Initialize error.
        #[source]
        source: CkError,
    },
    /// No slot holds a token with the configured label.
    #[error("no token labelled {label:?} (tokens present: {present:?})")]
    TokenNotFound {
        /// Label that was looked for.
        label: String,
        /// Labels of the tokens that were found, to make typos obvious.
        present: Vec<String>,
    },
    /// No slot holds an uninitialised token to initialise as `label`.
    #[error("no free slot to initialise token {label:?} in")]
    NoFreeSlot {
        /// Label the new token would have had.
        label: String,
    },
    /// Slot discovery did not finish in time (a p11-kit client can spin forever).
    #[error("PKCS#11 slot discovery did not finish within {0:?}")]
    SlotDiscoveryTimedOut(Duration),
    /// The thread that bounds slot discovery could not be started.
    #[error("could not start the slot discovery thread")]
    DiscoveryThread(#[source] std::io::Error),
    /// The token refused the PIN. Never retried: retries could lock the token.
    #[error("the token {label:?} refused the PIN ({rv})")]
    PinRejected {
        /// Token label.
        label: String,
        /// CKR_PIN_INCORRECT, CKR_PIN_LOCKED, ...
        rv: RvError,
    },
    /// The PIN file could not be used.
    #[error("PIN file {path}: {reason}")]
    PinFile {
        /// Path of the PIN file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {operation} failed")]
    Pkcs11 {
        /// What we were doing.
        operation: Operation,
        /// cryptoki's error, which carries the CK_RV and the failing function.
        #[source]
        source: CkError,
    },
    /// No key object with this label and class exists in the token.
    #[error("no {class} labelled {label:?} in the token")]
    KeyNotFound {
        /// Key label.
        label: String,
        /// "private key" or "public key".
        class: &'static str,
    },
    /// More than one object matches the label: refuse rather than guess.
    #[error("{count} objects of class {class} are labelled {label:?}")]
    AmbiguousKey {
        /// Key label.
        label: String,
        /// Object class.
        class: &'static str,
        /// How many matched.
        count: usize,
    },
    /// The token could not decrypt the data: it was not encrypted to this key or was altered.
    #[error("the token could not decrypt the ciphertext")]
    DecryptionFailed(#[source] CkError),
    /// The key's attributes are not what this crate needs (e.g. not RSA).
    #[error("key {label:?} is unusable: {reason}")]
    UnusableKey {
        /// Key label.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A protected private key has the label, but it may not be used (not sensitive,
    /// extractable, another usage, ...).
    #[error("key {label:?} is not used: {reason}")]
    KeyIgnored {
        /// Key label.
        label: String,
        /// Which check it failed.
        reason: crate::key_policy::IgnoreReason,
    },
    /// The blocking worker running the call panicked or was cancelled.
    #[error("PKCS#11 worker task failed")]
    Worker(#[source] tokio::task::JoinError),
    /// Every session set aside for this kind of call is in use, and it does not wait (TLS
    /// handshakes: see `TokenTlsKey::with_handshake_budget`).
    #[error("PKCS#11 {operation} refused: its sessions are all busy")]
    Busy {
        /// What we were doing.
        operation: Operation,
    },
    /// The call did not come back within the configured timeout.
    #[error("PKCS#11 {operation} did not finish within {timeout:?}")]
    TimedOut {
        /// What we were doing.
        operation: Operation,
        /// The bound that was exceeded.
        timeout: Duration,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn pkcs11(operation: Operation) -> impl FnOnce(CkError) -> Error {
        move |source| Error::Pkcs11 { operation, source }
    }

    /// True when the token or device is the problem (answer 503 and try again later),
    /// false when the request or the stored data is (answer 4xx, or report corruption).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::LoadModule { .. }
            | Error::TokenNotFound { .. }
            | Error::NoFreeSlot { .. }
            | Error::SlotDiscoveryTimedOut(_)
            | Error::DiscoveryThread(_)
            | Error::PinRejected { .. }
            | Error::PinFile { .. }
            | Error::Pkcs11 { .. }
            | Error::KeyNotFound { .. }
            | Error::AmbiguousKey { .. }
            | Error::UnusableKey { .. }
            | Error::KeyIgnored { .. }
            | Error::Worker(_)
            | Error::Busy { .. }
            | Error::TimedOut { .. } => true,
            Error::DecryptionFailed(_) => false,
        }
    }

    /// True when the token refused the mechanism or its parameters, not the key or the
    /// data: what a token that lacks a variant (SoftHSM2 2.6.1 and OAEP with SHA-256:
    /// CKR_ARGUMENTS_BAD at C_DecryptInit) answers when asked for it.
    pub fn is_mechanism_refused(&self) -> bool {
        let source = match self {
            Error::Pkcs11 { source, .. } | Error::DecryptionFailed(source) => source,
            _ => return false,
        };
        matches!(
            rv_of(source),
            Some(
                RvError::ArgumentsBad
                    | RvError::MechanismInvalid
                    | RvError::MechanismParamInvalid
                    | RvError::FunctionNotSupported
                    | RvError::KeyFunctionNotPermitted
                    | RvError::KeyTypeInconsistent
            )
        )
    }
}

pub(crate) fn rv_of(error: &CkError) -> Option<RvError> {
    match error {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Errors after which the session (or the whole login state) is gone and must be
/// re-opened; anything else is the operation's own failure and the session stays good.
pub(crate) fn is_session_fatal(error: &CkError) -> bool {
    matches!(
        rv_of(error),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::CryptokiNotInitialized
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
        )
    )
}
