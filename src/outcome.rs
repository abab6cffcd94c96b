//! How a request ended, in the words clients and operators see: its [`Outcome`] and, when it
//! failed, the AWS [`Exception`] name. One type each, shared by the error-to-status table, the
//! AWS front door, audit records, alarm rules and the access gate, so renaming an exception is
//! a compile error everywhere it matters instead of an alarm that silently stops matching.

use serde::{Serialize, Serializer};

/// The outcome of a request, as audit records and alarm rules see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    /// The default, so an event whose outcome was never filled in can't read as a success.
    #[default]
    Failed,
}

macro_rules! exceptions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)+) => {
        /// An AWS exception name, as carried in `x-keyward-error`, an AWS JSON error's
        /// `__type`, and an audit record's `error`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Exception {
            $($(#[$doc])* $variant,)+
        }

        impl Exception {
            pub const ALL: &[Exception] = &[$(Exception::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Exception::$variant => $name,)+
                }
            }

            /// The exception with this exact name.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Exception::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

exceptions! {
    // Both services.
    AccessDenied = "AccessDeniedException",
    Throttling = "ThrottlingException",
    Validation = "ValidationException",
    /// Secrets Manager's answer for internal failures and an unavailable root of trust.
    InternalServiceError = "InternalServiceError",
    // KMS.
    NotFound = "NotFoundException",
    AlreadyExists = "AlreadyExistsException",
    InvalidAliasName = "InvalidAliasNameException",
    InvalidMarker = "InvalidMarkerException",
    InvalidCiphertext = "InvalidCiphertextException",
    IncorrectKey = "IncorrectKeyException",
    MalformedPolicyDocument = "MalformedPolicyDocumentException",
    Disabled = "DisabledException",
    KmsInvalidState = "KMSInvalidStateException",
    KeyUnavailable = "KeyUnavailableException",
    KmsInternal = "KMSInternalException",
    /// KMS's retryable "the system timed out": the store cannot be reached.
    DependencyTimeout = "DependencyTimeoutException",
    UnsupportedOperation = "UnsupportedOperationException",
    ExpiredImportToken = "ExpiredImportTokenException",
    InvalidImportToken = "InvalidImportTokenException",
    IncorrectKeyMaterial = "IncorrectKeyMaterialException",
    // Secrets Manager.
    ResourceNotFound = "ResourceNotFoundException",
    ResourceExists = "ResourceExistsException",
    InvalidParameter = "InvalidParameterException",
    InvalidRequest = "InvalidRequestException",
    DecryptionFailure = "DecryptionFailure",
    EncryptionFailure = "EncryptionFailure",
    PublicPolicy = "PublicPolicyException",
    LimitExceeded = "LimitExceededException",
    // The AWS JSON front door, before any handler runs.
    Serialization = "SerializationException",
    UnknownOperation = "UnknownOperationException",
    RequestTimeout = "RequestTimeoutException",
    MissingAuthenticationToken = "MissingAuthenticationTokenException",
    IncompleteSignature = "IncompleteSignatureException",
    InvalidSignature = "InvalidSignatureException",
    UnrecognizedClient = "UnrecognizedClientException",
    /// A failure of the front door itself (a handler task that did not answer).
    InternalFailure = "InternalFailure",
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Exception {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_name_parses_back_to_its_exception_and_names_are_unique() {
        let mut seen = HashSet::new();
        for &exception in Exception::ALL {
            assert_eq!(Exception::parse(exception.as_str()), Some(exception));
            assert!(seen.insert(exception.as_str()), "{exception} twice");
        }
        assert_eq!(Exception::parse("InvalidCiphertext"), None);
        assert_eq!(Exception::parse("invalidciphertextexception"), None);
    }

    #[test]
    fn serialized_as_the_aws_name() {
        let json = serde_json::to_string(&(Exception::KmsInvalidState, Outcome::Denied)).unwrap();
        assert_eq!(json, r#"["KMSInvalidStateException","denied"]"#);
        assert_eq!(Outcome::default(), Outcome::Failed);
    }
}
