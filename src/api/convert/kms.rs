//! KMS requests from their protobuf form into the service's: member shapes (the algorithm,
//! the encryption contexts) are checked here, once for both front doors.

use super::super::pb;
use crate::crypto::SecretBytes;
use crate::service::KmsError;
use crate::service::kms::{
    DataKeySpec, Decrypt, Encrypt, GenerateDataKey, ReEncrypt, check_algorithm, context,
};

fn optional(id: String) -> Option<String> {
    (!id.is_empty()).then_some(id)
}

impl TryFrom<pb::GenerateDataKeyRequest> for GenerateDataKey {
    type Error = KmsError;

    fn try_from(r: pb::GenerateDataKeyRequest) -> Result<Self, KmsError> {
        Ok(Self {
            context: context("encryption_context", r.encryption_context)?,
            key_id: r.key_id,
            spec: DataKeySpec {
                key_spec: r.key_spec,
                number_of_bytes: r.number_of_bytes,
            },
        })
    }
}

impl TryFrom<pb::GenerateDataKeyWithoutPlaintextRequest> for GenerateDataKey {
    type Error = KmsError;

    /// The same members as GenerateDataKey's: one set of checks for both.
    fn try_from(r: pb::GenerateDataKeyWithoutPlaintextRequest) -> Result<Self, KmsError> {
        Self::try_from(pb::GenerateDataKeyRequest {
            key_id: r.key_id,
            encryption_context: r.encryption_context,
            number_of_bytes: r.number_of_bytes,
            key_spec: r.key_spec,
        })
    }
}

impl TryFrom<pb::EncryptRequest> for Encrypt {
    type Error = KmsError;

    fn try_from(r: pb::EncryptRequest) -> Result<Self, KmsError> {
        // Moved into a zeroizing buffer first, so no early return leaves a copy behind.
        let plaintext = SecretBytes::new(r.plaintext);
        check_algorithm(&r.encryption_algorithm)?;
        Ok(Self {
            context: context("encryption_context", r.encryption_context)?,
            key_id: r.key_id,
            plaintext,
        })
    }
}

impl TryFrom<pb::DecryptRequest> for Decrypt {
    type Error = KmsError;

    fn try_from(r: pb::DecryptRequest) -> Result<Self, KmsError> {
        check_algorithm(&r.encryption_algorithm)?;
        Ok(Self {
            context: context("encryption_context", r.encryption_context)?,
            ciphertext_blob: r.ciphertext_blob,
            key_id: optional(r.key_id),
        })
    }
}

impl TryFrom<pb::ReEncryptRequest> for ReEncrypt {
    type Error = KmsError;

    fn try_from(r: pb::ReEncryptRequest) -> Result<Self, KmsError> {
        Ok(Self {
            source_context: context("source_encryption_context", r.source_encryption_context)?,
            destination_context: context(
                "destination_encryption_context",
                r.destination_encryption_context,
            )?,
            ciphertext_blob: r.ciphertext_blob,
            source_key_id: optional(r.source_key_id),
            destination_key_id: r.destination_key_id,
        })
    }
}
