//! Initialising a fresh token and its user PIN, with both PINs kept off command lines.

use cryptoki::session::UserType;
use secrecy::SecretString;

use crate::error::{Error, Operation, Result};
use crate::module::Module;

/// What [`initialize_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenInit {
    /// A free slot now holds a token with the label and a user PIN.
    Created,
    /// A token with this label already existed; nothing was changed.
    AlreadyPresent,
    /// A token with this label existed without a user PIN (an initialisation interrupted
    /// between C_InitToken and C_InitPIN): its user PIN is now set.
    PinCompleted,
}

/// Initialises a token labelled `label` in the first slot holding an uninitialised
/// token, then sets its user PIN. Idempotent: an existing token with the label is left alone,
/// but for a missing user PIN, which is set (with the SO PIN), so that a provisioning killed
/// halfway finishes when run again instead of failing at every later step.
///
/// SoftHSM renumbers slots after C_InitToken, so the token is found again by label.
pub fn initialize_token(
    module: &Module,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<TokenInit> {
    let ctx = module.context();
    let slots = ctx
        .get_slots_with_token()
        .map_err(Error::pkcs11(Operation::ListSlots))?;
    let mut free = None;
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(Error::pkcs11(Operation::ReadTokenInfo))?;
        if info.token_initialized() && info.label().trim_end() == label {
            if info.user_pin_initialized() {
                return Ok(TokenInit::AlreadyPresent);
            }
            set_user_pin(module, slot, so_pin, user_pin)?;
            return Ok(TokenInit::PinCompleted);
        }
        if !info.token_initialized() && free.is_none() {
            free = Some(slot);
        }
    }
    let Some(slot) = free else {
        return Err(Error::NoFreeSlot {
            label: label.to_owned(),
        });
    };
    ctx.init_token(slot, so_pin, label)
        .map_err(Error::pkcs11(Operation::InitToken))?;
    let slot = ctx
        .get_slots_with_token()
        .map_err(Error::pkcs11(Operation::ListSlots))?
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| i.label().trim_end() == label))
        .ok_or_else(|| Error::TokenNotFound {
            label: label.to_owned(),
            present: Vec::new(),
        })?;
    set_user_pin(module, slot, so_pin, user_pin)?;
    Ok(TokenInit::Created)
}

/// C_InitPIN on `slot`'s token, logged in as its SO.
fn set_user_pin(
    module: &Module,
    slot: cryptoki::slot::Slot,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<()> {
    let session = module
        .context()
        .open_rw_session(slot)
        .map_err(Error::pkcs11(Operation::OpenSession))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(Error::pkcs11(Operation::SoLogin))?;
    session
        .init_pin(user_pin)
        .map_err(Error::pkcs11(Operation::InitUserPin))?;
    session.logout().map_err(Error::pkcs11(Operation::Logout))
}
