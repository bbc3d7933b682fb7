//! Finding key objects by label: handles are per-session and never stored.

use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, Operation, Result};

/// Which half of a key pair to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyClass {
    Private,
    Public,
}

impl KeyClass {
    fn object_class(self) -> ObjectClass {
        match self {
            KeyClass::Private => ObjectClass::PRIVATE_KEY,
            KeyClass::Public => ObjectClass::PUBLIC_KEY,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyClass::Private => "private key",
            KeyClass::Public => "public key",
        }
    }
}

/// Finds the single token object of `class` labelled `label`.
///
/// Looked up on every call rather than cached: a handle dies with its session, and a
/// lookup costs far less than the RSA operation that follows it.
pub(crate) fn find_key(session: &Session, class: KeyClass, label: &str) -> Result<ObjectHandle> {
    let template = [
        Attribute::Token(true),
        Attribute::Class(class.object_class()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let found = session
        .find_objects(&template)
        .map_err(Error::pkcs11(Operation::FindKey))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::KeyNotFound {
            label: label.to_owned(),
            class: class.name(),
        }),
        many => Err(Error::AmbiguousKey {
            label: label.to_owned(),
            class: class.name(),
            count: many.len(),
        }),
    }
}

/// Whether a token object of `class` labelled `label` exists (provisioning is idempotent).
pub(crate) fn key_exists(session: &Session, class: KeyClass, label: &str) -> Result<bool> {
    match find_key(session, class, label) {
        Ok(_) => Ok(true),
        Err(Error::KeyNotFound { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}
