//! Finding key objects by label: handles are per-session and never stored.

use std::fmt;

use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, Operation, Result};

/// Which half of a key pair an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyClass {
    /// CKO_PRIVATE_KEY.
    Private,
    /// CKO_PUBLIC_KEY.
    Public,
}

impl KeyClass {
    pub(crate) fn object_class(self) -> ObjectClass {
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

impl fmt::Display for KeyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Finds the single token object of `class` labelled `label`.
///
/// A private key must be CKA_PRIVATE: a session that never logged in can create objects
/// that are not, and one carrying a real key's label must neither be used nor make the
/// real key ambiguous. A public key is looked for among CKA_PRIVATE objects first (what
/// provisioning makes now) and only then among the others (tokens provisioned before);
/// callers never trust a public object for more than a public key whose use is checked
/// against its private half (the TLS certificate check, a retirement).
///
/// Looked up on every call rather than cached: a handle dies with its session, and a
/// lookup costs far less than the RSA operation that follows it.
pub(crate) fn find_key(session: &Session, class: KeyClass, label: &str) -> Result<ObjectHandle> {
    match class {
        KeyClass::Private => find_one(session, class, label, true),
        KeyClass::Public => match find_one(session, class, label, true) {
            Err(Error::KeyNotFound { .. }) => find_one(session, class, label, false),
            found => found,
        },
    }
}

fn find_one(session: &Session, class: KeyClass, label: &str, private: bool) -> Result<ObjectHandle> {
    let template = [
        Attribute::Token(true),
        Attribute::Class(class.object_class()),
        Attribute::Private(private),
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

/// Every token object of `class` labelled `label`, protected or not.
pub(crate) fn find_all(session: &Session, class: KeyClass, label: &str) -> Result<Vec<ObjectHandle>> {
    session
        .find_objects(&[
            Attribute::Token(true),
            Attribute::Class(class.object_class()),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(Error::pkcs11(Operation::FindKey))
}

/// Whether a token object of `class` labelled `label` exists (provisioning is idempotent).
pub(crate) fn key_exists(session: &Session, class: KeyClass, label: &str) -> Result<bool> {
    match find_key(session, class, label) {
        Ok(_) => Ok(true),
        Err(Error::KeyNotFound { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}
