//! Short-lived credentials for exec rotators: one per rotation step, allowing only the
//! actions that step needs on the one secret being rotated, until the step ends or its time
//! limit passes, whichever comes first.
//!
//! A step's credential is a random bearer token handed to the program in `KEYWARD_TOKEN`.
//! Its principal (`keyward:principal/rotator/NAME/ID`) is unique to the grant, and a grant
//! principal is decided by its grant alone: identity policies never name it, so it can do
//! nothing else, and no configured principal can be mistaken for it. Only the token's SHA-256
//! is kept, as for configured tokens.

use super::identity;
use crate::crypto::ct_eq;
use crate::crypto::{hex, sha256};
use crate::service::rotation::{IssuedCredential, StepCredentials};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Principals of step grants start with this, after the principal prefix.
const GRANT_PREFIX: &str = "rotator/";

struct Grant {
    token_hash: [u8; 32],
    resource: String,
    actions: &'static [&'static str],
    expires: Instant,
}

/// The live grants, by principal.
#[derive(Default)]
pub struct StepGrants {
    live: Mutex<HashMap<String, Grant>>,
}

impl StepGrants {
    /// The principal a presented token stands for, if it is a live grant's. Every live grant
    /// is compared, as configured tokens are.
    pub fn principal_for(&self, token: &str) -> Option<String> {
        let presented = sha256(token.as_bytes());
        let live = self.live.lock().ok()?;
        let now = Instant::now();
        let mut found = None;
        for (principal, grant) in live.iter() {
            if ct_eq(&grant.token_hash, &presented) && grant.expires > now {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// Whether `principal` is a grant's, and if so whether it allows `action` on `resource`.
    /// None: not a grant principal (policies decide). An expired or revoked grant allows
    /// nothing.
    pub fn decide(&self, principal: &str, action: &str, resource: &str) -> Option<bool> {
        let name = principal.strip_prefix(identity::PRINCIPAL_PREFIX)?;
        if !name.starts_with(GRANT_PREFIX) {
            return None;
        }
        let Ok(live) = self.live.lock() else {
            return Some(false);
        };
        Some(live.get(principal).is_some_and(|grant| {
            grant.expires > Instant::now()
                && grant.resource == resource
                && grant.actions.contains(&action)
        }))
    }

    fn revoke(&self, principal: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(principal);
        }
    }
}

impl StepCredentials for Arc<StepGrants> {
    fn issue(
        &self,
        rotator: &str,
        secret_arn: &str,
        actions: &'static [&'static str],
        ttl: Duration,
    ) -> Option<IssuedCredential> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).ok()?;
        let token = Zeroizing::new(hex::encode(bytes.as_ref()));
        let token_hash = sha256(token.as_bytes());
        // Unique per grant, and not secret: a prefix of the token's hash.
        let principal = identity::principal(&format!(
            "{GRANT_PREFIX}{rotator}/{}",
            &hex::encode(&token_hash)[..16]
        ));
        let grant = Grant {
            token_hash,
            resource: secret_arn.to_owned(),
            actions,
            expires: Instant::now() + ttl,
        };
        let mut live = self.live.lock().ok()?;
        // Grants whose steps ended without revoking (a panic) go when they expire.
        let now = Instant::now();
        live.retain(|_, g| g.expires > now);
        live.insert(principal.clone(), grant);
        drop(live);
        let grants = Arc::clone(self);
        Some(IssuedCredential::new(
            token,
            Box::new(move || grants.revoke(&principal)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:keyward:secretsmanager:local:0:secret:app/x-AbCdEf";
    const READ: &[&str] = &["secretsmanager:GetSecretValue"];

    #[test]
    fn a_grant_allows_its_actions_on_its_secret_until_revoked() {
        let grants = Arc::new(StepGrants::default());
        let issued = grants
            .issue("recorder", ARN, READ, Duration::from_secs(60))
            .unwrap();
        let principal = grants.principal_for(issued.token()).expect("live");
        assert!(principal.starts_with("keyward:principal/rotator/recorder/"));
        assert_eq!(
            grants.decide(&principal, "secretsmanager:GetSecretValue", ARN),
            Some(true)
        );
        assert_eq!(
            grants.decide(&principal, "secretsmanager:PutSecretValue", ARN),
            Some(false)
        );
        assert_eq!(
            grants.decide(&principal, "secretsmanager:GetSecretValue", "arn:other"),
            Some(false)
        );
        assert_eq!(grants.principal_for("not-the-token"), None);
        assert_eq!(grants.decide("keyward:principal/app", "x", ARN), None);
        let token = issued.token().to_owned();
        drop(issued);
        assert_eq!(
            grants.principal_for(&token),
            None,
            "revoked when the step ends"
        );
        assert_eq!(
            grants.decide(&principal, "secretsmanager:GetSecretValue", ARN),
            Some(false)
        );
    }

    #[test]
    fn an_expired_grant_allows_nothing() {
        let grants = Arc::new(StepGrants::default());
        let issued = grants.issue("r", ARN, READ, Duration::ZERO).unwrap();
        assert_eq!(grants.principal_for(issued.token()), None);
    }
}
