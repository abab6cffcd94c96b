//! Resource policies on secrets (PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy,
//! ValidateResourcePolicy). The policy is validated here and kept, as given, in the secret's
//! record; the access gate evaluates it on every request for the secret.

use super::{SecretsError, SecretsService};
use crate::policy::{Policy, PolicyKind, ValidationError};

/// AWS's limit on a secret's resource policy.
pub const MAX_RESOURCE_POLICY_LEN: usize = 20_480;

/// ValidateResourcePolicy's answer.
pub struct PolicyValidation {
    pub passed: bool,
    pub errors: Vec<ValidationError>,
}

/// The secret a policy call named: its ARN and name.
pub struct SecretName {
    pub arn: String,
    pub name: String,
}

fn parse(text: &str) -> Result<Policy, Vec<ValidationError>> {
    if text.len() > MAX_RESOURCE_POLICY_LEN {
        return Err(vec![ValidationError {
            check_name: "SYNTAX_CHECK",
            message: format!(
                "the policy is {} characters; at most {MAX_RESOURCE_POLICY_LEN} are allowed",
                text.len()
            ),
        }]);
    }
    Policy::parse(text, PolicyKind::Resource)
}

fn malformed(errors: &[ValidationError]) -> SecretsError {
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    SecretsError::MalformedPolicy(messages.join("; "))
}

impl SecretsService {
    pub async fn put_resource_policy(
        &self,
        secret_id: &str,
        text: String,
        block_public_policy: bool,
    ) -> Result<SecretName, SecretsError> {
        let policy = parse(&text).map_err(|errors| malformed(&errors))?;
        if block_public_policy && policy.grants_public_access() {
            return Err(SecretsError::PublicPolicy);
        }
        self.change_record(secret_id, |record| {
            record.resource_policy = Some(text);
            Ok(())
        })
        .await?;
        self.secret_name(secret_id).await
    }

    /// The secret's name and its policy, if it has one.
    pub async fn get_resource_policy(
        &self,
        secret_id: &str,
    ) -> Result<(SecretName, Option<String>), SecretsError> {
        let (record, _) = self.resolve(secret_id).await?;
        Ok((
            SecretName {
                arn: record.arn,
                name: record.name,
            },
            record.resource_policy,
        ))
    }

    pub async fn delete_resource_policy(
        &self,
        secret_id: &str,
    ) -> Result<SecretName, SecretsError> {
        self.change_record(secret_id, |record| {
            record.resource_policy = None;
            Ok(())
        })
        .await?;
        self.secret_name(secret_id).await
    }

    /// Checks a policy without storing it. A named secret must exist.
    pub async fn validate_resource_policy(
        &self,
        secret_id: Option<&str>,
        text: &str,
    ) -> Result<PolicyValidation, SecretsError> {
        if let Some(id) = secret_id {
            self.resolve(id).await?;
        }
        Ok(match parse(text) {
            Ok(_) => PolicyValidation {
                passed: true,
                errors: Vec::new(),
            },
            Err(errors) => PolicyValidation {
                passed: false,
                errors,
            },
        })
    }

    async fn secret_name(&self, secret_id: &str) -> Result<SecretName, SecretsError> {
        let (record, _) = self.resolve(secret_id).await?;
        Ok(SecretName {
            arn: record.arn,
            name: record.name,
        })
    }
}
