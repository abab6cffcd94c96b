//! Sealing a version's value: a fresh data key from the secret's KMS key (one root-of-trust
//! call), AES-256-GCM in software bound to (secret ARN, version id), the data key zeroized
//! after use. The same binding is the KMS encryption context of the wrapped data key.

use super::{SecretsError, SecretsService};
use crate::crypto::{SecretBytes, aead};
use crate::service::kms::DataKeySpec;
use crate::store::SecretValueRecord;
use base64::{Engine, engine::general_purpose::STANDARD};
use std::collections::HashMap;

/// A secret value: text or bytes, never printed.
pub enum Value {
    String(SecretBytes),
    Binary(SecretBytes),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Self::String(_) => "string",
            Self::Binary(_) => "binary",
        }
    }

    pub fn bytes(&self) -> &SecretBytes {
        match self {
            Self::String(b) | Self::Binary(b) => b,
        }
    }

    /// Same kind and bytes, compared in constant time.
    pub fn same_as(&self, other: &Value) -> bool {
        self.kind() == other.kind()
            && crate::crypto::ct_eq(self.bytes().expose(), other.bytes().expose())
    }

    /// Exactly one of the two fields, 1 to 65,536 bytes.
    pub fn from_fields(
        string: Option<String>,
        binary: Option<Vec<u8>>,
    ) -> Result<Option<Self>, SecretsError> {
        let value = match (string, binary) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(SecretsError::invalid(
                    "secret_string",
                    "give secret_string or secret_binary, not both",
                ));
            }
            (Some(s), None) => Self::String(SecretBytes::new(s.into_bytes())),
            (None, Some(b)) => Self::Binary(SecretBytes::new(b)),
        };
        let field = match value {
            Self::String(_) => "secret_string",
            Self::Binary(_) => "secret_binary",
        };
        if value.bytes().is_empty() || value.bytes().len() > super::limits::MAX_VALUE {
            return Err(SecretsError::invalid(field, "must be 1 to 65536 bytes"));
        }
        Ok(Some(value))
    }
}

fn binding(arn: &str, version_id: &str) -> HashMap<String, String> {
    HashMap::from([
        ("SecretARN".to_owned(), arn.to_owned()),
        ("SecretVersionId".to_owned(), version_id.to_owned()),
    ])
}

fn aad(arn: &str, version_id: &str) -> Result<Vec<u8>, SecretsError> {
    let ctx = crate::crypto::EncryptionContext::new(binding(arn, version_id))
        .map_err(|e| SecretsError::Internal(e.into()))?;
    let mut out = Vec::new();
    ctx.encode_into(&mut out);
    Ok(out)
}

impl SecretsService {
    /// Seals `value` for version `version_id` of the secret `arn` under `kms_key_id` (empty:
    /// the default key). Returns the record to store and the ARN of the KMS key used.
    pub(super) async fn seal(
        &self,
        arn: &str,
        version_id: &str,
        kms_key_id: &str,
        value: &Value,
    ) -> Result<(SecretValueRecord, String), SecretsError> {
        let key_id = if kms_key_id.is_empty() {
            super::DEFAULT_KEY_ALIAS
        } else {
            kms_key_id
        };
        let data_key = self
            .kms
            .generate_data_key(
                key_id,
                DataKeySpec {
                    key_spec: "AES_256".into(),
                    number_of_bytes: None,
                },
                binding(arn, version_id),
            )
            .await
            .map_err(SecretsError::from_kms_write)?;
        let sealed = aead::seal(
            &data_key.plaintext,
            &aad(arn, version_id)?,
            value.bytes().expose(),
        )
        .map_err(|_| SecretsError::Internal("sealing a secret value failed".into()))?;
        Ok((
            SecretValueRecord {
                kind: value.kind().into(),
                wrapped_key: STANDARD.encode(&data_key.ciphertext_blob),
                sealed: STANDARD.encode(sealed),
            },
            data_key.key_arn,
        ))
    }

    /// Opens a stored value. Any damage to the record gives DecryptionFailure for this secret.
    pub(super) async fn open(
        &self,
        arn: &str,
        name: &str,
        version_id: &str,
        record: &SecretValueRecord,
    ) -> Result<Value, SecretsError> {
        let damaged = || {
            SecretsError::DecryptionFailure(format!(
                "{name}: the stored value of version {version_id} is damaged"
            ))
        };
        let wrapped = STANDARD
            .decode(&record.wrapped_key)
            .map_err(|_| damaged())?;
        let sealed = STANDARD.decode(&record.sealed).map_err(|_| damaged())?;
        let data_key = self
            .kms
            .decrypt_data_key(&wrapped, binding(arn, version_id))
            .await
            .map_err(|e| SecretsError::from_kms_read(e, name))?;
        let plaintext =
            aead::open(&data_key, &aad(arn, version_id)?, &sealed).map_err(|_| damaged())?;
        match record.kind.as_str() {
            "string" if std::str::from_utf8(plaintext.expose()).is_ok() => {
                Ok(Value::String(plaintext))
            }
            "binary" => Ok(Value::Binary(plaintext)),
            _ => Err(damaged()),
        }
    }

    /// Re-wraps a stored value's data key under another KMS key; the data key never leaves
    /// the server and the sealed value is unchanged.
    pub(super) async fn rewrap(
        &self,
        arn: &str,
        name: &str,
        version_id: &str,
        record: &SecretValueRecord,
        kms_key_id: &str,
    ) -> Result<(SecretValueRecord, String), SecretsError> {
        let key_id = if kms_key_id.is_empty() {
            super::DEFAULT_KEY_ALIAS
        } else {
            kms_key_id
        };
        let wrapped = STANDARD.decode(&record.wrapped_key).map_err(|_| {
            SecretsError::DecryptionFailure(format!("{name}: the stored data key is damaged"))
        })?;
        let (blob, _, key_arn) = self
            .kms
            .re_encrypt(
                &wrapped,
                binding(arn, version_id),
                "",
                key_id,
                binding(arn, version_id),
            )
            .await
            .map_err(|e| match e {
                crate::service::KmsError::Disabled(_)
                | crate::service::KmsError::InvalidState(_)
                | crate::service::KmsError::NotFound(_)
                | crate::service::KmsError::Validation { .. } => SecretsError::from_kms_write(e),
                other => SecretsError::from_kms_read(other, name),
            })?;
        Ok((
            SecretValueRecord {
                kind: record.kind.clone(),
                wrapped_key: STANDARD.encode(blob),
                sealed: record.sealed.clone(),
            },
            key_arn,
        ))
    }
}
