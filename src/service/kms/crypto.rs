//! Cryptographic operations: one root-of-trust call per request (two for ReEncrypt).
//!
//! Data keys come from the OS CSPRNG and are sealed by the master key inside the root of
//! trust; plaintext from the client is sealed the same way. The AAD is the ciphertext header
//! plus the canonical encryption context, so the blob and the context are bound together.

use super::KmsService;
use crate::crypto::envelope::{Ciphertext, Header, MAX_PLAINTEXT_LEN, NONCE_LEN};
use crate::crypto::{EncryptionContext, SecretBytes};
use crate::service::KmsError;
use crate::store::KeyRecord;
use std::collections::HashMap;

const MAX_DATA_KEY_BYTES: i32 = 1024;
const MAX_RANDOM_BYTES: i32 = 1024;

/// How long a data key should be: `key_spec` (AES_256, AES_128) or `number_of_bytes`.
#[derive(Debug, Clone, Default)]
pub struct DataKeySpec {
    pub key_spec: String,
    pub number_of_bytes: Option<i32>,
}

impl DataKeySpec {
    fn len(&self) -> Result<usize, KmsError> {
        match (self.key_spec.as_str(), self.number_of_bytes) {
            ("", None) => Err(KmsError::validation(
                "key_spec",
                "one of key_spec and number_of_bytes is required",
            )),
            ("", Some(n)) if (1..=MAX_DATA_KEY_BYTES).contains(&n) => Ok(n as usize),
            ("", Some(_)) => Err(KmsError::validation(
                "number_of_bytes",
                format!("must be between 1 and {MAX_DATA_KEY_BYTES}"),
            )),
            (_, Some(_)) => Err(KmsError::validation(
                "key_spec",
                "give key_spec or number_of_bytes, not both",
            )),
            ("AES_256", None) => Ok(32),
            ("AES_128", None) => Ok(16),
            (_, None) => Err(KmsError::validation(
                "key_spec",
                "must be AES_256 or AES_128",
            )),
        }
    }
}

pub struct GeneratedDataKey {
    pub ciphertext_blob: Vec<u8>,
    pub plaintext: SecretBytes,
    pub key_arn: String,
}

/// GenerateDataKey (and its without-plaintext form).
pub struct GenerateDataKey {
    pub key_id: String,
    pub spec: DataKeySpec,
    pub context: EncryptionContext,
}

/// Encrypt: `plaintext` under `key_id`, bound to `context`.
pub struct Encrypt {
    pub key_id: String,
    pub plaintext: SecretBytes,
    pub context: EncryptionContext,
}

/// Decrypt: the blob names its key; `key_id`, when given, must be that key.
pub struct Decrypt {
    pub ciphertext_blob: Vec<u8>,
    pub context: EncryptionContext,
    pub key_id: Option<String>,
}

/// ReEncrypt: decrypt under the source, encrypt under the destination.
pub struct ReEncrypt {
    pub ciphertext_blob: Vec<u8>,
    pub source_context: EncryptionContext,
    pub source_key_id: Option<String>,
    pub destination_key_id: String,
    pub destination_context: EncryptionContext,
}

/// A sealed blob and the ARN of the key that sealed it.
pub struct Sealed {
    pub ciphertext_blob: Vec<u8>,
    pub key_arn: String,
}

/// An opened blob and the ARN of the key that had sealed it.
pub struct Opened {
    pub plaintext: SecretBytes,
    pub key_arn: String,
}

pub struct ReSealed {
    pub ciphertext_blob: Vec<u8>,
    pub source_key_arn: String,
    pub key_arn: String,
}

/// An encryption context from a request's pairs; `field` names the member in the error.
pub fn context(
    field: &'static str,
    pairs: HashMap<String, String>,
) -> Result<EncryptionContext, KmsError> {
    EncryptionContext::new(pairs).map_err(|e| KmsError::validation(field, e.to_string()))
}

/// Refuses every algorithm but the one symmetric keys offer.
pub fn check_algorithm(algorithm: &str) -> Result<(), KmsError> {
    match algorithm {
        "" | "SYMMETRIC_DEFAULT" => Ok(()),
        _ => Err(KmsError::validation(
            "encryption_algorithm",
            "only SYMMETRIC_DEFAULT is supported",
        )),
    }
}

impl KmsService {
    pub async fn generate_data_key(
        &self,
        request: GenerateDataKey,
    ) -> Result<GeneratedDataKey, KmsError> {
        let len = request.spec.len()?;
        let (key, _) = self.resolve("key_id", &request.key_id).await?;
        self.require_enabled(&key)?;
        let data_key = SecretBytes::random(len)?;
        let (ciphertext_blob, plaintext) = self.seal(&key, &request.context, data_key).await?;
        Ok(GeneratedDataKey {
            ciphertext_blob,
            plaintext,
            key_arn: self.arns.key(&key.key_id),
        })
    }

    pub async fn encrypt(&self, request: Encrypt) -> Result<Sealed, KmsError> {
        let Encrypt {
            key_id,
            plaintext,
            context,
        } = request;
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(KmsError::validation(
                "plaintext",
                format!("must be 1 to {MAX_PLAINTEXT_LEN} bytes"),
            ));
        }
        let (key, _) = self.resolve("key_id", &key_id).await?;
        self.require_enabled(&key)?;
        let (ciphertext_blob, _) = self.seal(&key, &context, plaintext).await?;
        Ok(Sealed {
            ciphertext_blob,
            key_arn: self.arns.key(&key.key_id),
        })
    }

    pub async fn decrypt(&self, request: Decrypt) -> Result<Opened, KmsError> {
        let key_id = request.key_id.as_deref().unwrap_or_default();
        let (plaintext, key_arn) = self
            .unseal(&request.ciphertext_blob, &request.context, "key_id", key_id)
            .await?;
        Ok(Opened { plaintext, key_arn })
    }

    /// Like [`Self::decrypt`] for data keys the server itself stored (secret values): answered
    /// from the data-key cache when it can, after checking the key may be used.
    pub async fn decrypt_data_key(
        &self,
        ciphertext_blob: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<std::sync::Arc<SecretBytes>, KmsError> {
        let mut id = ciphertext_blob.to_vec();
        ctx.encode_into(&mut id);
        let now = std::time::Instant::now();
        if let Some(key) = self.data_keys.get(&id, now) {
            let parsed =
                Ciphertext::parse(ciphertext_blob).map_err(|_| KmsError::InvalidCiphertext)?;
            let (record, _) = self
                .load(&parsed.header.key_id.to_string())
                .await?
                .ok_or(KmsError::InvalidCiphertext)?;
            self.require_enabled(&record)?;
            return Ok(key);
        }
        let (plaintext, _) = self.unseal(ciphertext_blob, ctx, "key_id", "").await?;
        let key = std::sync::Arc::new(plaintext);
        self.data_keys.insert(id, std::sync::Arc::clone(&key), now);
        Ok(key)
    }

    /// Decrypts under the source key and encrypts under the destination key; the plaintext
    /// never leaves the server.
    pub async fn re_encrypt(&self, request: ReEncrypt) -> Result<ReSealed, KmsError> {
        let (destination, _) = self
            .resolve("destination_key_id", &request.destination_key_id)
            .await?;
        self.require_enabled(&destination)?;
        let source_key_id = request.source_key_id.as_deref().unwrap_or_default();
        let (plaintext, source_key_arn) = self
            .unseal(
                &request.ciphertext_blob,
                &request.source_context,
                "source_key_id",
                source_key_id,
            )
            .await?;
        let (ciphertext_blob, _) = self
            .seal(&destination, &request.destination_context, plaintext)
            .await?;
        Ok(ReSealed {
            ciphertext_blob,
            source_key_arn,
            key_arn: self.arns.key(&destination.key_id),
        })
    }

    pub async fn generate_random(&self, number_of_bytes: i32) -> Result<SecretBytes, KmsError> {
        if !(1..=MAX_RANDOM_BYTES).contains(&number_of_bytes) {
            return Err(KmsError::validation(
                "number_of_bytes",
                format!("must be between 1 and {MAX_RANDOM_BYTES}"),
            ));
        }
        let len = number_of_bytes as usize;
        Ok(self.hw.run(move |root| root.random(len)).await?)
    }

    /// Seals `plaintext` under the key's current version; hands the plaintext back so a data
    /// key can also be returned to the caller.
    async fn seal(
        &self,
        key: &KeyRecord,
        ctx: &EncryptionContext,
        plaintext: SecretBytes,
    ) -> Result<(Vec<u8>, SecretBytes), KmsError> {
        let current = key.current().ok_or_else(|| {
            KmsError::Internal(format!("key {} has no versions", key.key_id).into())
        })?;
        let key_id =
            uuid::Uuid::parse_str(&key.key_id).map_err(|e| KmsError::Internal(e.into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        let header = Header {
            key_id,
            key_version: current.version,
            nonce,
        };
        let aad = header.aad(ctx);
        let material = current.material.clone();
        let (sealed, plaintext) = self
            .hw
            .run(move |root| {
                let sealed = root.seal(&material, &nonce, &aad, plaintext.expose())?;
                Ok((sealed, plaintext))
            })
            .await?;
        Ok((Ciphertext::assemble(&header, &sealed), plaintext))
    }

    /// Opens a blob. `expected_key` (from the request field `field`), when not empty, must
    /// name the key that sealed it.
    async fn unseal(
        &self,
        blob: &[u8],
        ctx: &EncryptionContext,
        field: &'static str,
        expected_key: &str,
    ) -> Result<(SecretBytes, String), KmsError> {
        if blob.is_empty() {
            return Err(KmsError::validation("ciphertext_blob", "is required"));
        }
        let expected = match expected_key {
            "" => None,
            name => Some(self.resolve_id(field, name).await?),
        };
        let parsed = Ciphertext::parse(blob).map_err(|_| KmsError::InvalidCiphertext)?;
        let key_id = parsed.header.key_id.to_string();
        if expected.as_ref().is_some_and(|e| *e != key_id) {
            return Err(KmsError::IncorrectKey);
        }
        // A blob naming a key we do not have is as invalid as a blob with a bad tag.
        let (key, _) = self
            .load(&key_id)
            .await?
            .ok_or(KmsError::InvalidCiphertext)?;
        self.require_enabled(&key)?;
        let version = key
            .version(parsed.header.key_version)
            .ok_or(KmsError::InvalidCiphertext)?;
        let material = version.material.clone();
        let nonce = parsed.header.nonce;
        let aad = parsed.header.aad(ctx);
        let sealed = parsed.sealed.to_vec();
        let plaintext = self
            .hw
            .run(move |root| root.unseal(&material, &nonce, &aad, &sealed))
            .await?;
        Ok((plaintext, self.arns.key(&key.key_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_length_rules() {
        let spec = |s: &str, n: Option<i32>| DataKeySpec {
            key_spec: s.into(),
            number_of_bytes: n,
        };
        assert_eq!(spec("AES_256", None).len().unwrap(), 32);
        assert_eq!(spec("AES_128", None).len().unwrap(), 16);
        assert_eq!(spec("", Some(1024)).len().unwrap(), 1024);
        for (bad, field) in [
            (spec("", None), "key_spec"),
            (spec("", Some(0)), "number_of_bytes"),
            (spec("", Some(1025)), "number_of_bytes"),
            (spec("AES_256", Some(32)), "key_spec"),
            (spec("RSA_2048", None), "key_spec"),
        ] {
            match bad.len() {
                Err(KmsError::Validation { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected a validation error, got {other:?}"),
            }
        }
    }
}
