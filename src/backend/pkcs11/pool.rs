//! A pool of logged-in sessions. PKCS#11 sessions are not thread-safe: each is used by one call
//! at a time, taken from the pool and given back. The pool's size is bounded by the permits of
//! [`crate::backend::Hardware`], so it never holds more sessions than calls in flight.
//!
//! A session that failed with a device, token or login error is dropped instead of returned;
//! the next call opens and logs in a new one, so the server recovers without a restart.

use crate::backend::{BackendError, Result};
use cryptoki::session::Session;
use std::sync::Mutex;

#[derive(Default)]
pub(super) struct SessionPool {
    idle: Mutex<Vec<Session>>,
}

impl SessionPool {
    pub(super) fn take(&self) -> Option<Session> {
        self.idle.lock().ok()?.pop()
    }

    pub(super) fn give_back(&self, session: Session) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(session);
        }
    }

    /// Drops every idle session: after a device loss they are all suspect.
    pub(super) fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Runs `call` on a pooled session, opening one with `open` when none is idle.
    pub(super) fn with<T>(
        &self,
        open: impl FnOnce() -> Result<Session>,
        call: impl FnOnce(&Session) -> Result<T>,
    ) -> Result<T> {
        let session = match self.take() {
            Some(session) => session,
            None => open()?,
        };
        let outcome = call(&session);
        match &outcome {
            Err(BackendError::Unavailable(_)) => {
                drop(session);
                self.clear();
            }
            _ => self.give_back(session),
        }
        outcome
    }
}
