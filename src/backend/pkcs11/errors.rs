//! The one table that turns PKCS#11 failures into our error kinds.

use crate::backend::BackendError;
use cryptoki::error::{Error, RvError};

/// What we were doing when the module failed: the same return value means different things
/// in different operations (SoftHSM reports a GCM tag mismatch as CKR_GENERAL_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Connect,
    Login,
    Create,
    Destroy,
    Find,
    Seal,
    Unseal,
    /// Decrypting or unwrapping imported key material.
    Unwrap,
    Random,
    Mac,
    Check,
}

pub(super) fn translate(op: Op, err: Error) -> BackendError {
    let rv = match &err {
        Error::Pkcs11(rv, _) => *rv,
        Error::LibraryLoading(_) | Error::NullFunctionPointer | Error::MissingSymbol(_) => {
            return BackendError::Unavailable(format!("PKCS#11 module: {err}"));
        }
        _ => return BackendError::Internal(format!("{op:?}: {err}")),
    };
    match rv {
        // Authentication failures of sealed data. SoftHSM uses GENERAL_ERROR for a bad tag;
        // other modules use the specific codes.
        RvError::GeneralError
        | RvError::EncryptedDataInvalid
        | RvError::EncryptedDataLenRange
        | RvError::DataInvalid
        | RvError::DataLenRange
            if op == Op::Unseal =>
        {
            BackendError::InvalidCiphertext
        }
        // Whatever the token found wrong with wrapped key material is one answer, so that
        // failures cannot be told apart (an OAEP padding oracle).
        RvError::GeneralError
        | RvError::EncryptedDataInvalid
        | RvError::EncryptedDataLenRange
        | RvError::DataInvalid
        | RvError::DataLenRange
        | RvError::WrappedKeyInvalid
        | RvError::WrappedKeyLenRange
        | RvError::KeySizeRange
        | RvError::TemplateInconsistent
            if op == Op::Unwrap =>
        {
            BackendError::InvalidCiphertext
        }
        // Device, token, session or login lost, or an object handle that stayed invalid after
        // a fresh look-up: retryable, and the session is discarded.
        RvError::GeneralError
        | RvError::ObjectHandleInvalid
        | RvError::KeyHandleInvalid
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::DeviceRemoved
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SessionClosed
        | RvError::SessionHandleInvalid
        | RvError::SessionCount
        | RvError::UserNotLoggedIn
        | RvError::UserPinNotInitialized
        | RvError::PinIncorrect
        | RvError::PinLocked
        | RvError::PinExpired
        | RvError::CryptokiNotInitialized
        | RvError::FunctionFailed
        | RvError::HostMemory
        | RvError::SlotIdInvalid
        | RvError::CantLock => BackendError::Unavailable(format!("{op:?}: {rv}")),
        _ => BackendError::Internal(format!("{op:?}: {rv}")),
    }
}

/// A cached object handle that no longer names the object (the module reloaded its objects):
/// worth one fresh look-up before giving up.
pub(super) fn is_stale_handle(err: &Error) -> bool {
    matches!(
        err,
        Error::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    fn rv(rv: RvError) -> Error {
        Error::Pkcs11(rv, Function::Decrypt)
    }

    #[test]
    fn general_error_is_a_bad_ciphertext_only_when_unsealing() {
        assert!(matches!(
            translate(Op::Unseal, rv(RvError::GeneralError)),
            BackendError::InvalidCiphertext
        ));
        assert!(matches!(
            translate(Op::Seal, rv(RvError::GeneralError)),
            BackendError::Unavailable(_)
        ));
    }

    #[test]
    fn device_and_session_loss_are_unavailable() {
        for code in [
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
            RvError::SessionHandleInvalid,
            RvError::PinIncorrect,
        ] {
            assert!(matches!(
                translate(Op::Seal, rv(code)),
                BackendError::Unavailable(_)
            ));
        }
    }

    #[test]
    fn stale_handles_ask_for_a_lookup() {
        assert!(is_stale_handle(&rv(RvError::ObjectHandleInvalid)));
        assert!(is_stale_handle(&rv(RvError::KeyHandleInvalid)));
        assert!(!is_stale_handle(&rv(RvError::GeneralError)));
    }
}
