//! Typed errors of the `hsm` crate: every PKCS#11 failure keeps its CK_RV and failing call.

use std::path::PathBuf;
use std::time::Duration;

use cryptoki::error::{Error as CkError, RvError};

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
    /// Slot discovery did not finish in time (a p11-kit client can spin forever).
    #[error("PKCS#11 slot discovery did not finish within {0:?}")]
    SlotDiscoveryTimedOut(Duration),
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
        /// Our operation, e.g. "sign" or "find key".
        operation: &'static str,
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
    /// The blocking worker running the call panicked or was cancelled.
    #[error("PKCS#11 worker task failed")]
    Worker(#[source] tokio::task::JoinError),
    /// The call did not come back within the configured timeout.
    #[error("PKCS#11 {operation} did not finish within {timeout:?}")]
    TimedOut {
        /// Our operation.
        operation: &'static str,
        /// The bound that was exceeded.
        timeout: Duration,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn pkcs11(operation: &'static str) -> impl FnOnce(CkError) -> Error {
        move |source| Error::Pkcs11 { operation, source }
    }

    /// True when the token or device is the problem (answer 503 and try again later),
    /// false when the request or the stored data is (answer 4xx, or report corruption).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::LoadModule { .. }
            | Error::TokenNotFound { .. }
            | Error::SlotDiscoveryTimedOut(_)
            | Error::PinRejected { .. }
            | Error::PinFile { .. }
            | Error::Pkcs11 { .. }
            | Error::KeyNotFound { .. }
            | Error::AmbiguousKey { .. }
            | Error::UnusableKey { .. }
            | Error::Worker(_)
            | Error::TimedOut { .. } => true,
            Error::DecryptionFailed(_) => false,
        }
    }

    /// The CK_RV of the failing call, when the token answered one.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            Error::Pkcs11 { source, .. } | Error::LoadModule { source, .. } => rv_of(source),
            Error::DecryptionFailed(source) => rv_of(source),
            Error::PinRejected { rv, .. } => Some(*rv),
            _ => None,
        }
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
