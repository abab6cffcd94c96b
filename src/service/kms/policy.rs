//! Key policies (PutKeyPolicy, GetKeyPolicy): validated IAM JSON kept in the key's record and
//! evaluated by the access gate on every request that uses the key. As in AWS KMS, a key has
//! one policy, named "default".

use super::{KmsError, KmsService};
use crate::access::policy::{Policy, PolicyKind};

/// AWS's limit on a key policy.
pub const MAX_KEY_POLICY_LEN: usize = 32_768;

pub const DEFAULT_POLICY_NAME: &str = "default";

/// What GetKeyPolicy returns for a key without a policy of its own: no statements, so the
/// principals' identity policies alone decide (AWS's default policy delegates to IAM the same
/// way).
pub const EMPTY_KEY_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[]}"#;

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
    pub async fn put_key_policy(
        &self,
        key_id: &str,
        name: &str,
        text: String,
    ) -> Result<(), KmsError> {
        policy_name(name)?;
        if text.len() > MAX_KEY_POLICY_LEN {
            return Err(KmsError::MalformedPolicy(format!(
                "the policy is {} characters; at most {MAX_KEY_POLICY_LEN} are allowed",
                text.len()
            )));
        }
        Policy::parse(&text, PolicyKind::Resource).map_err(|errors| {
            let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            KmsError::MalformedPolicy(messages.join("; "))
        })?;
        self.update_key(key_id, |record| {
            record.policy = Some(text.clone());
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub fn get_key_policy(&self, key_id: &str, name: &str) -> Result<String, KmsError> {
        policy_name(name)?;
        let (record, _) = self.resolve("key_id", key_id)?;
        Ok(record.policy.unwrap_or_else(|| EMPTY_KEY_POLICY.to_owned()))
    }
}
