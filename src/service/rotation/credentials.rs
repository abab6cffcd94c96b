//! The credential an exec rotator's program gets for one step: issued by the access layer
//! (which decides what it allows), revoked when the step ends.

use std::time::Duration;
use zeroize::Zeroizing;

/// Issues step credentials. The access gate implements it; without one (unit tests, or a
/// server built without access control) programs get no credential.
pub trait StepCredentials: Send + Sync {
    /// A bearer token allowing only `actions` on `secret_arn`, for at most `ttl` and no longer
    /// than the returned value lives. None if none can be made now.
    fn issue(
        &self,
        rotator: &str,
        secret_arn: &str,
        actions: &'static [&'static str],
        ttl: Duration,
    ) -> Option<IssuedCredential>;
}

/// A live credential; dropping it revokes it.
pub struct IssuedCredential {
    token: Zeroizing<String>,
    revoke: Option<Box<dyn FnOnce() + Send>>,
}

impl IssuedCredential {
    pub fn new(token: Zeroizing<String>, revoke: Box<dyn FnOnce() + Send>) -> Self {
        Self {
            token,
            revoke: Some(revoke),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for IssuedCredential {
    fn drop(&mut self) {
        if let Some(revoke) = self.revoke.take() {
            revoke();
        }
    }
}
