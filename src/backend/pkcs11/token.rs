//! Finding a token by label or serial (never by slot number: SoftHSM renumbers slots) and, for
//! the development default only, initialising a fresh one.

use super::errors::{Op, translate};
use crate::backend::{BackendError, Result};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// How the configuration names the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    Label(String),
    Serial(String),
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Label(label) => write!(f, "label {label:?}"),
            Self::Serial(serial) => write!(f, "serial {serial:?}"),
        }
    }
}

pub(super) fn find_slot(ctx: &Pkcs11, selector: &TokenSelector) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| translate(Op::Connect, e))?;
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| translate(Op::Connect, e))?;
        let matches = match selector {
            TokenSelector::Label(label) => info.label().trim_end() == label,
            TokenSelector::Serial(serial) => info.serial_number().trim_end() == serial,
        };
        if matches {
            return Ok(slot);
        }
    }
    Err(BackendError::Unavailable(format!(
        "no initialised token with {selector}"
    )))
}

/// Initialises a token with this label in a free slot unless one exists, and sets its user
/// PIN. Development only: production tokens are provisioned by their operators.
pub fn ensure_token(ctx: &Pkcs11, label: &str, so_pin: &AuthPin, user_pin: &AuthPin) -> Result<()> {
    // Two starts in one process must not both claim the free slot.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _creating = CREATING
        .lock()
        .map_err(|_| BackendError::Internal("token creation lock poisoned".into()))?;
    let selector = TokenSelector::Label(label.to_owned());
    if find_slot(ctx, &selector).is_ok() {
        return Ok(());
    }
    let free = ctx
        .get_slots_with_token()
        .map_err(|e| translate(Op::Connect, e))?
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .map(|info| !info.token_initialized())
                .unwrap_or(false)
        })
        .ok_or_else(|| BackendError::Unavailable("no free slot to initialise a token in".into()))?;
    ctx.init_token(free, so_pin, label)
        .map_err(|e| translate(Op::Connect, e))?;
    // Initialising moves the token to a new slot id: look it up again by label.
    let slot = find_slot(ctx, &selector)?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| translate(Op::Connect, e))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(|e| translate(Op::Login, e))?;
    session
        .init_pin(user_pin)
        .map_err(|e| translate(Op::Login, e))?;
    session.logout().map_err(|e| translate(Op::Login, e))?;
    Ok(())
}

/// Logs the application in; a second login on the same token is not an error.
pub(super) fn login(session: &cryptoki::session::Session, pin: &AuthPin) -> Result<()> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(translate(Op::Login, e)),
    }
}
