//! KMS requests from their protobuf form into the service's: member shapes (the algorithm,
//! the encryption contexts) are checked here, once for both front doors.

use super::super::pb;
use crate::crypto::SecretBytes;
use crate::service::KmsError;
use crate::service::kms::{
    DataKeySpec, Decrypt, Encrypt, GenerateDataKey, ImportMaterial, ReEncrypt, check_algorithm,
    context,
};
use crate::time::Timestamp;

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

impl From<pb::ImportKeyMaterialRequest> for ImportMaterial {
    fn from(r: pb::ImportKeyMaterialRequest) -> Self {
        Self {
            key_id: r.key_id,
            import_token: r.import_token,
            encrypted_key_material: r.encrypted_key_material,
            expiration_model: r.expiration_model,
            valid_to: r.valid_to.map(Timestamp::from_secs),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn field(err: KmsError) -> &'static str {
        match err {
            KmsError::Validation { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn members_are_checked_once_here_naming_the_member() {
        let bad_algorithm = pb::EncryptRequest {
            key_id: "k".into(),
            plaintext: b"x".to_vec(),
            encryption_algorithm: "RSAES_OAEP_SHA_256".into(),
            ..Default::default()
        };
        let err = Encrypt::try_from(bad_algorithm).err().expect("refused");
        assert_eq!(field(err), "encryption_algorithm");

        let empty_key = HashMap::from([(String::new(), "v".to_owned())]);
        let bad_context = pb::ReEncryptRequest {
            destination_key_id: "k".into(),
            destination_encryption_context: empty_key,
            ..Default::default()
        };
        let err = ReEncrypt::try_from(bad_context).err().expect("refused");
        assert_eq!(field(err), "destination_encryption_context");

        let decrypt = Decrypt::try_from(pb::DecryptRequest {
            ciphertext_blob: vec![1, 2],
            encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
            ..Default::default()
        })
        .expect("accepted");
        assert_eq!(
            (decrypt.key_id, decrypt.ciphertext_blob),
            (None, vec![1, 2])
        );
    }
}
