//! Compiles `proto/keyward/v1/*.proto` into the gRPC client and server code.

use std::{env, io, path::PathBuf};

/// Fields that hold bytes: serialised as base64 in the CLI's JSON output.
const BYTES_FIELDS: &[&str] = &[
    "GenerateDataKeyResponse.ciphertext_blob",
    "GenerateDataKeyResponse.plaintext",
    "GenerateDataKeyWithoutPlaintextResponse.ciphertext_blob",
    "EncryptRequest.plaintext",
    "EncryptResponse.ciphertext_blob",
    "DecryptRequest.ciphertext_blob",
    "DecryptResponse.plaintext",
    "ReEncryptRequest.ciphertext_blob",
    "ReEncryptResponse.ciphertext_blob",
    "GenerateRandomResponse.plaintext",
    "GetParametersForImportResponse.import_token",
    "GetParametersForImportResponse.public_key",
    "ImportKeyMaterialRequest.import_token",
    "ImportKeyMaterialRequest.encrypted_key_material",
];

/// Optional bytes fields: base64 too.
const OPTIONAL_BYTES_FIELDS: &[&str] = &[
    "CreateSecretRequest.secret_binary",
    "GetSecretValueResponse.secret_binary",
    "SecretValueEntry.secret_binary",
    "PutSecretValueRequest.secret_binary",
    "UpdateSecretRequest.secret_binary",
    "ReplicaVersion.secret_binary",
];

/// Optional dates in requests: AWS SDKs send epoch seconds with a fraction.
const DATE_FIELDS: &[&str] = &["ImportKeyMaterialRequest.valid_to"];

/// Messages that carry plaintext: their `Debug` is written by hand and redacts it.
const PLAINTEXT_MESSAGES: &[&str] = &[
    "GenerateDataKeyResponse",
    "EncryptRequest",
    "DecryptResponse",
    "GenerateRandomResponse",
    "CreateSecretRequest",
    "GetSecretValueResponse",
    "SecretValueEntry",
    "PutSecretValueRequest",
    "UpdateSecretRequest",
    "GetRandomPasswordResponse",
    "ReplicaVersion",
    // Not plaintext, but bearer tokens and wrapped key material stay out of logs too.
    "GetParametersForImportResponse",
    "ImportKeyMaterialRequest",
];

fn main() -> io::Result<()> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);
    let mut builder = tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("keyward_descriptor.bin"))
        // Serialize: the CLI's JSON output and AWS JSON responses; Deserialize (missing members
        // take their defaults): AWS JSON requests.
        .type_attribute(
            ".keyward.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .message_attribute(".keyward.v1", "#[serde(default)]")
        // Oneof variants are member names too: snake_case like the fields around them.
        .enum_attribute(".keyward.v1", "#[serde(rename_all = \"snake_case\")]")
        .skip_debug(
            PLAINTEXT_MESSAGES
                .iter()
                .map(|m| format!(".keyward.v1.{m}")),
        );
    for field in BYTES_FIELDS {
        builder = builder.field_attribute(
            format!(".keyward.v1.{field}"),
            "#[serde(serialize_with = \"crate::api::base64_field\", deserialize_with = \"crate::api::base64_field_in\")]",
        );
    }
    for field in DATE_FIELDS {
        builder = builder.field_attribute(
            format!(".keyward.v1.{field}"),
            "#[serde(deserialize_with = \"crate::api::epoch_seconds_in\")]",
        );
    }
    for field in OPTIONAL_BYTES_FIELDS {
        builder = builder.field_attribute(
            format!(".keyward.v1.{field}"),
            "#[serde(serialize_with = \"crate::api::base64_optional_field\", deserialize_with = \"crate::api::base64_optional_field_in\")]",
        );
    }
    // Backup chunks are slices of one buffer, not copies of it.
    builder = builder
        .bytes(".keyward.v1.BackupChunk.data")
        .field_attribute(".keyward.v1.BackupChunk.data", "#[serde(skip)]");
    builder.compile_protos(
        &[
            "proto/keyward/v1/kms.proto",
            "proto/keyward/v1/secrets.proto",
            "proto/keyward/v1/audit.proto",
            "proto/keyward/v1/replication.proto",
            "proto/keyward/v1/backup.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
