//! Domain errors to gRPC status, in one exhaustive match: a new error variant does not compile
//! until it is mapped. Every status carries the AWS exception name in `x-keyward-error`.
//! Internal and unavailable errors reach the client as a fixed message; their detail goes to
//! the log.

use crate::service::KmsError;
use crate::service::secrets::SecretsError;
use tonic::{Code, Status, metadata::MetadataValue};

pub const ERROR_METADATA: &str = "x-keyward-error";

fn status(code: Code, exception: &'static str, message: String) -> Status {
    let mut status = Status::new(code, message);
    status
        .metadata_mut()
        .insert(ERROR_METADATA, MetadataValue::from_static(exception));
    status
}

impl From<KmsError> for Status {
    fn from(err: KmsError) -> Self {
        let message = err.to_string();
        match err {
            KmsError::NotFound(_) => status(Code::NotFound, "NotFoundException", message),
            KmsError::AlreadyExists(_) => {
                status(Code::AlreadyExists, "AlreadyExistsException", message)
            }
            KmsError::Validation { .. } => {
                status(Code::InvalidArgument, "ValidationException", message)
            }
            KmsError::InvalidAliasName(_) => {
                status(Code::InvalidArgument, "InvalidAliasNameException", message)
            }
            KmsError::InvalidMarker => {
                status(Code::InvalidArgument, "InvalidMarkerException", message)
            }
            KmsError::InvalidCiphertext => {
                status(Code::InvalidArgument, "InvalidCiphertextException", message)
            }
            KmsError::IncorrectKey => {
                status(Code::InvalidArgument, "IncorrectKeyException", message)
            }
            KmsError::MalformedPolicy(_) => status(
                Code::InvalidArgument,
                "MalformedPolicyDocumentException",
                message,
            ),
            KmsError::Disabled(_) => status(Code::FailedPrecondition, "DisabledException", message),
            KmsError::InvalidState(_) => status(
                Code::FailedPrecondition,
                "KMSInvalidStateException",
                message,
            ),
            KmsError::Unavailable(detail) => {
                tracing::warn!(%detail, "root of trust unavailable");
                status(
                    Code::Unavailable,
                    "KeyUnavailableException",
                    "the root of trust is unavailable; retry later".into(),
                )
            }
            KmsError::Throttled(_) => status(Code::Unavailable, "ThrottlingException", message),
            KmsError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                status(
                    Code::Internal,
                    "KMSInternalException",
                    "internal error".into(),
                )
            }
        }
    }
}

impl From<SecretsError> for Status {
    fn from(err: SecretsError) -> Self {
        let message = err.to_string();
        match err {
            SecretsError::NotFound(_) => {
                status(Code::NotFound, "ResourceNotFoundException", message)
            }
            SecretsError::Exists(_) => {
                status(Code::AlreadyExists, "ResourceExistsException", message)
            }
            SecretsError::InvalidParameter { .. } => {
                status(Code::InvalidArgument, "InvalidParameterException", message)
            }
            SecretsError::InvalidRequest(_) => {
                status(Code::FailedPrecondition, "InvalidRequestException", message)
            }
            SecretsError::DecryptionFailure(_) => {
                status(Code::FailedPrecondition, "DecryptionFailure", message)
            }
            SecretsError::EncryptionFailure(_) => {
                status(Code::FailedPrecondition, "EncryptionFailure", message)
            }
            SecretsError::MalformedPolicy(_) => status(
                Code::InvalidArgument,
                "MalformedPolicyDocumentException",
                message,
            ),
            SecretsError::PublicPolicy => {
                status(Code::InvalidArgument, "PublicPolicyException", message)
            }
            SecretsError::AccessDenied(_) => {
                status(Code::PermissionDenied, "AccessDeniedException", message)
            }
            SecretsError::LimitExceeded(_) => {
                status(Code::ResourceExhausted, "LimitExceededException", message)
            }
            SecretsError::Unavailable(detail) => {
                tracing::warn!(%detail, "root of trust unavailable");
                status(
                    Code::Unavailable,
                    "InternalServiceError",
                    "the root of trust is unavailable; retry later".into(),
                )
            }
            SecretsError::Throttled(_) => status(Code::Unavailable, "ThrottlingException", message),
            SecretsError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                status(
                    Code::Internal,
                    "InternalServiceError",
                    "internal error".into(),
                )
            }
        }
    }
}

/// The AWS exception name a status carries.
pub fn exception_name(status: &Status) -> &str {
    status
        .metadata()
        .get(ERROR_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("InternalServiceError")
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
}
