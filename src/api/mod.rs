//! The gRPC front door: generated protobuf types, request handlers and the one mapping from
//! domain errors to `tonic::Status`.

pub mod audit;
pub mod backup;
pub mod convert;
pub mod detach;
pub mod guard;
pub mod kms;
mod rotation;
pub mod secrets;
pub mod status;

/// Generated from `proto/keyward/v1/*.proto`.
pub mod pb {
    tonic::include_proto!("keyward.v1");

    /// For gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("keyward_descriptor");
}

/// The largest KMS or Secrets Manager message the gRPC listener decodes. The largest valid
/// request is a 64 KiB secret value with 2 KiB of description, 50 tags and 20 labels (under
/// 90 KiB); a larger message is refused by the decoder (OUT_OF_RANGE) before any handler, so it
/// is not audited.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

use base64::{Engine, engine::general_purpose::STANDARD};
use std::fmt;
use zeroize::Zeroizing;

/// Serialises a bytes field as standard base64 (the CLI's JSON output, like the AWS CLI).
/// The base64 text of a field that may be plaintext is zeroized once written.
pub fn base64_field<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&Zeroizing::new(STANDARD.encode(bytes)))
}

/// Serialises an optional bytes field as base64 (or null).
pub fn base64_optional_field<S: serde::Serializer>(
    bytes: &Option<Vec<u8>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(bytes) => serializer.serialize_str(&Zeroizing::new(STANDARD.encode(bytes))),
        None => serializer.serialize_none(),
    }
}

/// Deserialises a bytes field from standard base64 (AWS JSON blobs).
pub fn base64_field_in<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<u8>, D::Error> {
    use serde::Deserialize;
    let text = Zeroizing::new(String::deserialize(deserializer)?);
    STANDARD
        .decode(text.as_bytes())
        .map_err(|_| serde::de::Error::custom("not base64"))
}

/// Deserialises an optional bytes field from base64 (or null).
pub fn base64_optional_field_in<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<u8>>, D::Error> {
    use serde::Deserialize;
    match Option::<String>::deserialize(deserializer)?.map(Zeroizing::new) {
        Some(text) => STANDARD
            .decode(text.as_bytes())
            .map(Some)
            .map_err(|_| serde::de::Error::custom("not base64")),
        None => Ok(None),
    }
}

/// Deserialises an optional date in epoch seconds, whole or with a fraction (AWS SDKs send
/// `1767225600.5`); the fraction is dropped.
pub fn epoch_seconds_in<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    match Option::<f64>::deserialize(deserializer)? {
        // The bounds are exact in f64, so the cast neither saturates nor wraps.
        Some(secs) if secs.is_finite() && (-9.2e18..9.2e18).contains(&secs) => {
            Ok(Some(secs.floor() as i64))
        }
        Some(_) => Err(serde::de::Error::custom("not a date in epoch seconds")),
        None => Ok(None),
    }
}

/// How a secret field appears in `Debug`: its length only.
struct Redacted(Option<usize>);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(len) => write!(f, "[REDACTED; {len}]"),
            None => f.write_str("None"),
        }
    }
}

trait SecretField {
    fn redacted(&self) -> Redacted;
}

impl SecretField for Vec<u8> {
    fn redacted(&self) -> Redacted {
        Redacted(Some(self.len()))
    }
}

impl SecretField for String {
    fn redacted(&self) -> Redacted {
        Redacted(Some(self.len()))
    }
}

impl<T: AsRef<[u8]>> SecretField for Option<T> {
    fn redacted(&self) -> Redacted {
        Redacted(self.as_ref().map(|v| v.as_ref().len()))
    }
}

/// `Debug` for messages that carry plaintext: secret fields are shown as their length only.
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* } secret { $($secret:ident),+ }) => {
        impl fmt::Debug for pb::$ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($secret), &self.$secret.redacted()))+
                    .finish()
            }
        }
    };
}

redacted_debug!(GenerateDataKeyResponse { ciphertext_blob, key_id } secret { plaintext });
redacted_debug!(EncryptRequest { key_id, encryption_context, encryption_algorithm } secret { plaintext });
redacted_debug!(DecryptResponse { key_id, encryption_algorithm } secret { plaintext });
redacted_debug!(GenerateRandomResponse {} secret { plaintext });
redacted_debug!(CreateSecretRequest { name, client_request_token, description, kms_key_id, tags,
    add_replica_regions, force_overwrite_replica_secret } secret { secret_binary, secret_string });
redacted_debug!(GetSecretValueResponse { arn, name, version_id, version_stages, created_date }
    secret { secret_binary, secret_string });
redacted_debug!(SecretValueEntry { arn, name, version_id, version_stages, created_date }
    secret { secret_binary, secret_string });
redacted_debug!(PutSecretValueRequest { secret_id, client_request_token, version_stages }
    secret { secret_binary, secret_string });
redacted_debug!(UpdateSecretRequest { secret_id, client_request_token, description, kms_key_id }
    secret { secret_binary, secret_string });
redacted_debug!(GetRandomPasswordResponse {} secret { random_password });
redacted_debug!(ReplicaVersion { version_id, created_date, stages, has_value }
    secret { secret_binary, secret_string });
redacted_debug!(GetParametersForImportResponse { key_id, public_key, parameters_valid_to }
    secret { import_token });
redacted_debug!(ImportKeyMaterialRequest { key_id, valid_to, expiration_model }
    secret { import_token, encrypted_key_material });

#[cfg(test)]
mod tests {
    use super::pb;

    #[test]
    fn plaintext_is_never_in_debug_output() {
        let response = pb::DecryptResponse {
            key_id: "k".into(),
            plaintext: b"top secret".to_vec(),
            encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
        };
        let shown = format!("{response:?}");
        assert!(
            !shown.contains("top secret") && !shown.contains("116, 111, 112"),
            "{shown}"
        );
        assert!(shown.contains("[REDACTED; 10]"), "{shown}");
    }

    #[test]
    fn import_tokens_and_wrapped_material_are_not_in_debug_output() {
        let request = pb::ImportKeyMaterialRequest {
            key_id: "k".into(),
            import_token: vec![0xAB; 33],
            encrypted_key_material: vec![0xCD; 256],
            ..Default::default()
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
        assert!(shown.contains("[REDACTED; 33]") && shown.contains("[REDACTED; 256]"));
    }
}
