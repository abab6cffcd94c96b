//! The secrets domain's errors, one variant per AWS Secrets Manager exception.

use crate::service::KmsError;
use crate::service::error::Cause;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// ResourceNotFoundException.
    #[error("{0}")]
    NotFound(String),
    /// ResourceExistsException.
    #[error("{0}")]
    Exists(String),
    /// InvalidParameterException: the message starts with the field's name.
    #[error("{field}: {reason}")]
    InvalidParameter { field: &'static str, reason: String },
    /// ValidationException: where AWS validates a member before the operation looks at it
    /// (ListSecrets' filter keys), with AWS's message ("1 validation error detected: ...").
    #[error("{0}")]
    Validation(String),
    /// InvalidRequestException: the secret's state forbids the call.
    #[error("{0}")]
    InvalidRequest(String),
    /// DecryptionFailure: the KMS key cannot decrypt (disabled, deleted) or the stored value is
    /// damaged.
    #[error("{0}")]
    DecryptionFailure(String),
    /// EncryptionFailure: the KMS key cannot encrypt (disabled, missing).
    #[error("{0}")]
    EncryptionFailure(String),
    /// MalformedPolicyDocumentException: the resource policy is not valid IAM JSON.
    #[error("the resource policy is malformed: {0}")]
    MalformedPolicy(String),
    /// PublicPolicyException: block_public_policy refused a policy granting everyone access.
    #[error(
        "the resource policy grants access to every principal without a condition, and block_public_policy is set"
    )]
    PublicPolicy,
    /// AccessDeniedException: a policy refuses this item (BatchGetSecretValue's per-secret
    /// checks; whole requests are refused by the access gate).
    #[error("{0}")]
    AccessDenied(String),
    /// LimitExceededException.
    #[error("{0}")]
    LimitExceeded(String),
    /// ThrottlingException, retryable: too many calls are waiting for the root of trust.
    #[error("{0}")]
    Throttled(String),
    /// InternalServiceError, retryable: the root of trust is unavailable.
    #[error("root of trust unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// InternalServiceError, retryable: the store cannot be reached or refuses writes for now.
    #[error("store unavailable: {0}")]
    StoreUnavailable(#[source] Cause),
    /// InternalServiceError, retryable: another writer (on another node of a cluster) changed
    /// the secret between this request's read and its commit. The handler runs the request
    /// again a few times before a client sees it (ABORTED).
    #[error("concurrent update of {0}; retry")]
    Contended(String),
    /// InternalServiceError. Detail for the log only.
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl SecretsError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            field,
            reason: reason.into(),
        }
    }

    /// Whether trying again later may succeed: the root of trust or the store, not the request.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_)
                | Self::StoreUnavailable(_)
                | Self::Contended(_)
                | Self::Throttled(_)
                | Self::Internal(_)
        )
    }

    /// A failed commit of a write. The writers on this node hold the secret's stripe lock, so
    /// a conflict means a writer on another node won: `Contended`, which the handler retries.
    pub(super) fn from_commit(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => Self::Contended(what),
            other => other.into(),
        }
    }

    /// A KMS failure while unwrapping a stored data key.
    pub fn from_kms_read(err: KmsError, secret: &str) -> Self {
        match err {
            KmsError::Unavailable(detail) => Self::Unavailable(detail),
            KmsError::StoreUnavailable(detail) => Self::StoreUnavailable(detail),
            KmsError::Throttled(detail) => Self::Throttled(detail),
            KmsError::Disabled(key) => {
                Self::DecryptionFailure(format!("{secret}: the KMS key {key} is disabled"))
            }
            KmsError::InvalidState(reason) => {
                Self::DecryptionFailure(format!("{secret}: the KMS key cannot be used: {reason}"))
            }
            KmsError::InvalidCiphertext | KmsError::IncorrectKey | KmsError::NotFound(_) => {
                Self::DecryptionFailure(format!(
                    "{secret}: the stored data key cannot be decrypted"
                ))
            }
            other => Self::Internal(other.into()),
        }
    }

    /// A KMS failure while generating or re-wrapping a data key.
    pub fn from_kms_write(err: KmsError) -> Self {
        match err {
            KmsError::Unavailable(detail) => Self::Unavailable(detail),
            KmsError::StoreUnavailable(detail) => Self::StoreUnavailable(detail),
            KmsError::Throttled(detail) => Self::Throttled(detail),
            KmsError::Disabled(key) => {
                Self::EncryptionFailure(format!("the KMS key {key} is disabled"))
            }
            KmsError::InvalidState(reason) | KmsError::NotFound(reason) => {
                Self::EncryptionFailure(format!("kms_key_id: {reason}"))
            }
            KmsError::Validation { reason, .. } => Self::invalid("kms_key_id", reason),
            KmsError::InvalidAliasName(reason) => Self::invalid("kms_key_id", reason),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<StoreError> for SecretsError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) | StoreError::Fenced(_) => {
                Self::StoreUnavailable(err.into())
            }
            other => Self::Internal(other.into()),
        }
    }
}
