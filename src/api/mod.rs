//! The gRPC front door: generated protobuf types, request handlers and the one mapping from
//! domain errors to `tonic::Status`.

pub mod kms;
pub mod status;

/// Generated from `proto/keyward/v1/*.proto`.
pub mod pb {
    tonic::include_proto!("keyward.v1");

    /// For gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("keyward_descriptor");
}

use base64::{Engine, engine::general_purpose::STANDARD};
use std::fmt;

/// Serialises a bytes field as standard base64 (the CLI's JSON output, like the AWS CLI).
pub fn base64_field<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

/// `Debug` for messages that carry plaintext: the plaintext is shown as its length only.
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* } secret $secret:ident) => {
        impl fmt::Debug for pb::$ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .field(stringify!($secret), &format_args!("[REDACTED; {}]", self.$secret.len()))
                    .finish()
            }
        }
    };
}

redacted_debug!(GenerateDataKeyResponse { ciphertext_blob, key_id } secret plaintext);
redacted_debug!(EncryptRequest { key_id, encryption_context, encryption_algorithm } secret plaintext);
redacted_debug!(DecryptResponse { key_id, encryption_algorithm } secret plaintext);
redacted_debug!(GenerateRandomResponse {} secret plaintext);

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
}
