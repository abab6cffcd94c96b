//! Domain errors to gRPC status, in one exhaustive match: a new error variant does not compile
//! until it is mapped. Every status carries the AWS exception name in `x-keyward-error`.
//! Internal and unavailable errors reach the client as a fixed message; their detail goes to
//! the log.

use crate::outcome::Exception;
use crate::service::KmsError;
use crate::service::secrets::SecretsError;
use tonic::{Code, Status, metadata::MetadataValue};

pub const ERROR_METADATA: &str = "x-keyward-error";

/// An error and every source below it, for the log: `a: b: c`.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        let part = source.to_string();
        // Variants that print their source in their own message would repeat it.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// A status carrying `exception` in [`ERROR_METADATA`].
pub fn status(code: Code, exception: Exception, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    status.metadata_mut().insert(
        ERROR_METADATA,
        MetadataValue::from_static(exception.as_str()),
    );
    status
}

impl From<KmsError> for Status {
    fn from(err: KmsError) -> Self {
        let message = err.to_string();
        match err {
            KmsError::NotFound(_) => status(Code::NotFound, Exception::NotFound, message),
            KmsError::AlreadyExists(_) => {
                status(Code::AlreadyExists, Exception::AlreadyExists, message)
            }
            KmsError::Validation { .. } => {
                status(Code::InvalidArgument, Exception::Validation, message)
            }
            KmsError::InvalidAliasName(_) => {
                status(Code::InvalidArgument, Exception::InvalidAliasName, message)
            }
            KmsError::InvalidMarker => {
                status(Code::InvalidArgument, Exception::InvalidMarker, message)
            }
            KmsError::InvalidCiphertext => {
                status(Code::InvalidArgument, Exception::InvalidCiphertext, message)
            }
            KmsError::IncorrectKey => {
                status(Code::InvalidArgument, Exception::IncorrectKey, message)
            }
            KmsError::MalformedPolicy(_) => status(
                Code::InvalidArgument,
                Exception::MalformedPolicyDocument,
                message,
            ),
            KmsError::UnsupportedOperation(_) => status(
                Code::FailedPrecondition,
                Exception::UnsupportedOperation,
                message,
            ),
            KmsError::ExpiredImportToken => status(
                Code::InvalidArgument,
                Exception::ExpiredImportToken,
                message,
            ),
            KmsError::InvalidImportToken => status(
                Code::InvalidArgument,
                Exception::InvalidImportToken,
                message,
            ),
            KmsError::IncorrectKeyMaterial(_) => status(
                Code::InvalidArgument,
                Exception::IncorrectKeyMaterial,
                message,
            ),
            KmsError::Disabled(_) => status(Code::FailedPrecondition, Exception::Disabled, message),
            KmsError::InvalidState(_) => status(
                Code::FailedPrecondition,
                Exception::KmsInvalidState,
                message,
            ),
            KmsError::Unavailable(cause) => {
                tracing::warn!(detail = %chain(&*cause), "root of trust unavailable");
                status(
                    Code::Unavailable,
                    Exception::KeyUnavailable,
                    "the root of trust is unavailable; retry later",
                )
            }
            KmsError::StoreUnavailable(cause) => {
                tracing::warn!(detail = %chain(&*cause), "store unavailable");
                status(
                    Code::Unavailable,
                    Exception::DependencyTimeout,
                    "the key store is unavailable; retry later",
                )
            }
            KmsError::Throttled(_) => status(Code::Unavailable, Exception::Throttling, message),
            KmsError::Internal(cause) => {
                tracing::error!(detail = %chain(&*cause), "internal error");
                status(Code::Internal, Exception::KmsInternal, "internal error")
            }
        }
    }
}

impl From<crate::backup::BackupError> for Status {
    fn from(err: crate::backup::BackupError) -> Self {
        use crate::backup::BackupError;
        let message = err.to_string();
        match err {
            // Retryable: the store or the root of trust did not answer.
            BackupError::Store(_) | BackupError::RootOfTrust(_) => {
                status(Code::Unavailable, Exception::InternalServiceError, message)
            }
            _ => status(Code::Internal, Exception::InternalServiceError, message),
        }
    }
}

impl From<SecretsError> for Status {
    fn from(err: SecretsError) -> Self {
        let message = err.to_string();
        match err {
            SecretsError::NotFound(_) => {
                status(Code::NotFound, Exception::ResourceNotFound, message)
            }
            SecretsError::Exists(_) => {
                status(Code::AlreadyExists, Exception::ResourceExists, message)
            }
            SecretsError::InvalidParameter { .. } => {
                status(Code::InvalidArgument, Exception::InvalidParameter, message)
            }
            SecretsError::Validation(_) => {
                status(Code::InvalidArgument, Exception::Validation, message)
            }
            SecretsError::InvalidRequest(_) => {
                status(Code::FailedPrecondition, Exception::InvalidRequest, message)
            }
            SecretsError::DecryptionFailure(_) => status(
                Code::FailedPrecondition,
                Exception::DecryptionFailure,
                message,
            ),
            SecretsError::EncryptionFailure(_) => status(
                Code::FailedPrecondition,
                Exception::EncryptionFailure,
                message,
            ),
            SecretsError::MalformedPolicy(_) => status(
                Code::InvalidArgument,
                Exception::MalformedPolicyDocument,
                message,
            ),
            SecretsError::PublicPolicy => {
                status(Code::InvalidArgument, Exception::PublicPolicy, message)
            }
            SecretsError::AccessDenied(_) => {
                status(Code::PermissionDenied, Exception::AccessDenied, message)
            }
            SecretsError::LimitExceeded(_) => {
                status(Code::ResourceExhausted, Exception::LimitExceeded, message)
            }
            SecretsError::Unavailable(cause) => {
                tracing::warn!(detail = %chain(&*cause), "root of trust unavailable");
                status(
                    Code::Unavailable,
                    Exception::InternalServiceError,
                    "the root of trust is unavailable; retry later",
                )
            }
            SecretsError::StoreUnavailable(cause) => {
                tracing::warn!(detail = %chain(&*cause), "store unavailable");
                status(
                    Code::Unavailable,
                    Exception::InternalServiceError,
                    "the secret store is unavailable; retry later",
                )
            }
            SecretsError::Throttled(_) => status(Code::Unavailable, Exception::Throttling, message),
            SecretsError::Contended(_) => {
                status(Code::Aborted, Exception::InternalServiceError, message)
            }
            SecretsError::Internal(cause) => {
                tracing::error!(detail = %chain(&*cause), "internal error");
                status(
                    Code::Internal,
                    Exception::InternalServiceError,
                    "internal error",
                )
            }
        }
    }
}

/// The exception name a status carries, as the server sent it: for clients, which must show
/// names a newer server may add.
pub fn exception_name(status: &Status) -> &str {
    status
        .metadata()
        .get(ERROR_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(Exception::InternalServiceError.as_str())
}

/// The AWS exception a status carries; a status built elsewhere (tonic's own, for a malformed
/// gRPC request) reads as an internal error, as AWS would name it.
pub fn exception(status: &Status) -> Exception {
    status
        .metadata()
        .get(ERROR_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(Exception::parse)
        .unwrap_or(Exception::InternalServiceError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_stays_out_of_the_status() {
        let status = Status::from(KmsError::Internal("/var/lib/keyward: disk full".into()));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert_eq!(
            status.metadata().get(ERROR_METADATA).unwrap(),
            "KMSInternalException"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let status = Status::from(KmsError::validation(
            "number_of_bytes",
            "must be between 1 and 1024",
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("number_of_bytes:"));
    }

    #[test]
    fn the_log_sees_every_source_of_an_internal_error() {
        let store = crate::store::StoreError::Corrupt {
            key: "secret/a".into(),
            reason: "truncated".into(),
        };
        let err = crate::service::secrets::SecretsError::from_kms_write(
            crate::service::KmsError::from(store),
        );
        let source = std::error::Error::source(&err).expect("the KMS error is kept");
        assert_eq!(
            chain(source),
            "internal error: corrupt record secret/a: truncated"
        );
        assert!(
            std::error::Error::source(source)
                .is_some_and(|store| store.to_string() == "corrupt record secret/a: truncated")
        );
        let status = Status::from(err);
        assert_eq!(status.message(), "internal error");
        assert_eq!(exception(&status), Exception::InternalServiceError);
    }

    #[test]
    fn a_status_without_a_known_name_reads_as_internal() {
        assert_eq!(
            exception(&Status::internal("tonic's own")),
            Exception::InternalServiceError
        );
        let named = status(Code::NotFound, Exception::ResourceNotFound, "gone");
        assert_eq!(exception(&named), Exception::ResourceNotFound);
        assert_eq!(exception_name(&named), "ResourceNotFoundException");
    }
}
