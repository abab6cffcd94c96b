//! Key policies (PutKeyPolicy, GetKeyPolicy): validated IAM JSON kept in the key's record and
//! evaluated by the access gate on every request that uses the key. As in AWS KMS, a key has
//! one policy, named "default", and it can restrict use: identity policies reach the key only
//! if the key policy delegates to them (an Allow naming `arn:keyward:iam::ACCOUNT:root`). A key
//! without a policy of its own has the default policy, which is that delegation alone.
//!
//! Rules: a put policy names only this account's root; it must not lock its author out
//! (checked by the caller, who knows the identity policies) unless the check is bypassed.

use super::{KmsError, KmsService};
use crate::policy::{Policy, PolicyKind, account_root};

/// AWS's limit on a key policy.
pub const MAX_KEY_POLICY_LEN: usize = 32_768;

pub const DEFAULT_POLICY_NAME: &str = "default";

/// What GetKeyPolicy returns for a key without a policy of its own: AWS's default key policy,
/// which delegates everything to the principals' identity policies.
pub fn default_key_policy(account_root: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable identity policies","Effect":"Allow","Principal":{{"AWS":"{account_root}"}},"Action":"kms:*","Resource":"*"}}]}}"#
    )
}

/// Whether the caller could still change the key's policy were this one in force.
pub type LockoutCheck<'a> = &'a (dyn Fn(&str) -> bool + Send + Sync);

fn policy_name(name: &str) -> Result<(), KmsError> {
    if name.is_empty() || name == DEFAULT_POLICY_NAME {
        Ok(())
    } else {
        Err(KmsError::NotFound(format!(
            "key policy {name:?} does not exist; a key has one policy, \"default\""
        )))
    }
}

impl KmsService {
    /// `keeps_access`: the lockout check; None when the caller bypasses it.
    pub async fn put_key_policy(
        &self,
        key_id: &str,
        name: &str,
        text: String,
        keeps_access: Option<LockoutCheck<'_>>,
    ) -> Result<(), KmsError> {
        policy_name(name)?;
        self.resolve("key_id", key_id).await?;
        if text.len() > MAX_KEY_POLICY_LEN {
            return Err(KmsError::MalformedPolicy(format!(
                "the policy is {} characters; at most {MAX_KEY_POLICY_LEN} are allowed",
                text.len()
            )));
        }
        let policy = Policy::parse(&text, PolicyKind::Key).map_err(|errors| {
            let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            KmsError::MalformedPolicy(messages.join("; "))
        })?;
        let account_id = &self.arns().account_id;
        if let Some(other) = policy
            .principals()
            .filter_map(account_root)
            .find(|a| a != account_id)
        {
            return Err(KmsError::MalformedPolicy(format!(
                "the policy names account {other}; this service is account {account_id}"
            )));
        }
        if keeps_access.is_some_and(|keeps| !keeps(&text)) {
            return Err(KmsError::MalformedPolicy(
                "the new key policy will not allow you to update the key policy in the future \
                 (set bypass_policy_lockout_safety_check to put it anyway)"
                    .into(),
            ));
        }
        self.update_key(key_id, |record| {
            record.policy = Some(text.clone());
            record.policy_as_written = true;
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn get_key_policy(&self, key_id: &str, name: &str) -> Result<String, KmsError> {
        policy_name(name)?;
        let (record, _) = self.resolve("key_id", key_id).await?;
        Ok(record
            .policy
            .unwrap_or_else(|| default_key_policy(&self.arns().account_root())))
    }
}
