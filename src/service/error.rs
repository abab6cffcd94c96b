//! The KMS domain's errors. Each variant corresponds to one AWS KMS exception; `api/status.rs`
//! maps them to gRPC codes in one exhaustive match.

use crate::backend::BackendError;
use crate::store::StoreError;

/// What went wrong behind an internal or unavailable failure, kept whole (with its own
/// sources) for the log; clients see a fixed message.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// NotFoundException.
    #[error("{0}")]
    NotFound(String),
    /// AlreadyExistsException.
    #[error("{0}")]
    AlreadyExists(String),
    /// ValidationException: a request field is missing or out of range.
    #[error("{field}: {reason}")]
    Validation { field: &'static str, reason: String },
    /// InvalidAliasNameException.
    #[error("{0}")]
    InvalidAliasName(String),
    /// InvalidMarkerException.
    #[error("marker: not a marker this listing returned")]
    InvalidMarker,
    /// InvalidCiphertextException. One message for every cause — a flipped bit, a wrong
    /// encryption context, an unknown key — so failures reveal nothing.
    #[error("the ciphertext is invalid or does not match the encryption context")]
    InvalidCiphertext,
    /// IncorrectKeyException: Decrypt's key_id is not the key that encrypted the blob.
    #[error("the ciphertext was not encrypted under the key named in key_id")]
    IncorrectKey,
    /// MalformedPolicyDocumentException.
    #[error("the key policy is malformed: {0}")]
    MalformedPolicy(String),
    /// DisabledException.
    #[error("{0} is disabled")]
    Disabled(String),
    /// UnsupportedOperationException: the key (its origin) or the root of trust does not offer
    /// this operation.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// ExpiredImportTokenException.
    #[error("the import token has expired; call GetParametersForImport again")]
    ExpiredImportToken,
    /// InvalidImportTokenException: not a token GetParametersForImport gave for this key, or
    /// one already used or replaced.
    #[error("the import token is not valid for this key")]
    InvalidImportToken,
    /// IncorrectKeyMaterialException: not 32 bytes, or not the material this key had before.
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// KMSInvalidStateException.
    #[error("{0}")]
    InvalidState(String),
    /// KeyUnavailableException: the root of trust cannot be reached. Retryable. The detail is
    /// for the log, not the client.
    #[error("root of trust unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// DependencyTimeoutException: the store cannot be reached or refuses writes for now
    /// (etcd without a quorum or at its quota). Retryable. The detail is for the log.
    #[error("store unavailable: {0}")]
    StoreUnavailable(#[source] Cause),
    /// ThrottlingException: too many calls are waiting for the root of trust. Retryable.
    #[error("{0}")]
    Throttled(String),
    /// KMSInternalException. The detail is for the log, not the client.
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl KmsError {
    pub fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Validation {
            field,
            reason: reason.into(),
        }
    }
}

impl From<BackendError> for KmsError {
    fn from(err: BackendError) -> Self {
        match err {
            unavailable @ BackendError::Unavailable(_) => Self::Unavailable(unavailable.into()),
            BackendError::InvalidCiphertext => Self::InvalidCiphertext,
            // The record names material the token no longer has: the token was swapped,
            // restored from an old backup or is half-mounted. Retryable from the client's view.
            missing @ BackendError::KeyMissing(_) => Self::Unavailable(missing.into()),
            BackendError::PlatformStateChanged(detail) => Self::InvalidState(format!(
                "the platform state changed since the key was made ({detail}); the key refuses use until the measured state is back"
            )),
            BackendError::Unsupported(reason) => Self::validation("tpm_key_mode", reason),
            BackendError::IncorrectKeyMaterial(reason) => Self::IncorrectKeyMaterial(reason),
            busy @ BackendError::Busy(_) => Self::Throttled(busy.to_string()),
            internal @ BackendError::Internal(_) => Self::Internal(internal.into()),
        }
    }
}

impl From<StoreError> for KmsError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) | StoreError::Fenced(_) => {
                Self::StoreUnavailable(err.into())
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<getrandom::Error> for KmsError {
    fn from(err: getrandom::Error) -> Self {
        Self::Internal(format!("OS random generator: {err}").into())
    }
}
