//! Throwaway key pairs for the live checks: session objects (CKA_TOKEN false) made as
//! provisioning makes token keys, destroyed when the check is done.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::{CheckResult, CkRv, Item, Outcome};
use crate::error::rv_of;
use crate::export::RsaPublicComponents;

/// A JWS signing input, as manager signs them.
pub(super) const MESSAGE: &[u8] = b"eyJhbGciOiJQUzI1NiJ9.eyJzdWIiOiJoc20tYWRtaW4gY2hlY2sifQ";

/// Session objects of one check, made through it and destroyed when it is dropped (closing
/// their session would too, but the pool keeps sessions open).
pub(super) struct Throwaway<'a> {
    pub(super) session: &'a Session,
    objects: Vec<ObjectHandle>,
}

impl Drop for Throwaway<'_> {
    fn drop(&mut self) {
        for object in self.objects.drain(..) {
            if let Err(e) = self.session.destroy_object(object) {
                tracing::debug!(error = %e, "destroying a session object of the check");
            }
        }
    }
}

/// A key pair to generate as a session object: its label, its mechanism, the attributes of
/// each half (the label is added to both), and the mechanisms its private half is kept to.
pub(super) struct PairTemplate {
    pub(super) label: String,
    pub(super) mechanism: Mechanism<'static>,
    pub(super) public: Vec<Attribute>,
    pub(super) private: Vec<Attribute>,
    pub(super) allowed: &'static [MechanismType],
}

/// A generated key pair, its label, and whether the token took CKA_ALLOWED_MECHANISMS on
/// its private half.
pub(super) struct Generated {
    pub(super) label: String,
    pub(super) public: ObjectHandle,
    pub(super) private: ObjectHandle,
    pub(super) allowed_mechanisms: std::result::Result<(), CkRv>,
}

impl<'a> Throwaway<'a> {
    pub(super) fn new(session: &'a Session) -> Self {
        Self {
            session,
            objects: Vec::new(),
        }
    }

    pub(super) fn keep(&mut self, object: ObjectHandle) -> ObjectHandle {
        self.objects.push(object);
        object
    }

    /// Generates with CKA_ALLOWED_MECHANISMS on the private key, and without it when the
    /// token does not know the attribute, as provisioning does.
    pub(super) fn generate_pair(&mut self, template: PairTemplate) -> std::result::Result<Generated, CkError> {
        let label = Attribute::Label(template.label.clone().into_bytes());
        let public = [template.public.as_slice(), std::slice::from_ref(&label)].concat();
        let private = [template.private.as_slice(), &[label]].concat();
        let restricted = [
            private.as_slice(),
            &[Attribute::AllowedMechanisms(template.allowed.to_vec())],
        ]
        .concat();
        let generate = |private: &[Attribute]| self.session.generate_key_pair(&template.mechanism, &public, private);
        let ((public, private), allowed_mechanisms) = match generate(&restricted) {
            Err(e) if rv_of(&e) == Some(RvError::AttributeTypeInvalid) => {
                (generate(&private)?, Err(CkRv(RvError::AttributeTypeInvalid)))
            }
            other => (other?, Ok(())),
        };
        Ok(Generated {
            label: template.label,
            public: self.keep(public),
            private: self.keep(private),
            allowed_mechanisms,
        })
    }

    /// An AES-256 key: `wrapping` may wrap, otherwise it may be wrapped (the control of
    /// the wrap row).
    pub(super) fn generate_aes_key(&mut self, wrapping: bool) -> std::result::Result<ObjectHandle, CkError> {
        let key = self.session.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(true),
                Attribute::Extractable(!wrapping),
                Attribute::Wrap(wrapping),
                Attribute::Unwrap(false),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
            ],
        )?;
        Ok(self.keep(key))
    }

    /// A public-key object with CKA_WRAP, of the same RSA key as `public`.
    pub(super) fn create_rsa_wrapping_key(
        &mut self,
        public: &RsaPublicComponents,
    ) -> std::result::Result<ObjectHandle, CkError> {
        let key = self.session.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Modulus(public.modulus().to_vec()),
            Attribute::PublicExponent(public.exponent().to_vec()),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
            Attribute::Verify(false),
        ])?;
        Ok(self.keep(key))
    }
}

pub(super) fn row(item: Item, outcome: Outcome) -> CheckResult {
    CheckResult {
        item,
        outcome,
        observed: None,
    }
}

/// `failed`, then each of `rest` skipped for want of it.
pub(super) fn skipped_after(failed: CheckResult, rest: &[Item]) -> Vec<CheckResult> {
    let needed = failed.item;
    std::iter::once(failed)
        .chain(rest.iter().map(|&item| row(item, Outcome::Skipped(needed))))
        .collect()
}

/// Makes the labels of concurrent checks distinct (they are session objects: only for
/// anyone listing them meanwhile).
pub(super) fn suffix() -> u64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).map_or(0, |()| u64::from_le_bytes(bytes))
}
