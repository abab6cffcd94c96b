//! `keyward kms <command>`: one subcommand per KeyManagementService RPC.

use crate::api::pb::{self, key_management_service_client::KeyManagementServiceClient};
use base64::{Engine, engine::general_purpose::STANDARD};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct KmsArgs {
    #[command(flatten)]
    pub client: super::client::ClientArgs,
    #[command(subcommand)]
    pub command: KmsCommand,
}

/// `KEY=VALUE`, for tags and encryption context entries.
fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// A base64 command-line argument, decoded.
#[derive(Debug, Clone)]
pub struct Blob(pub Vec<u8>);

fn base64_arg(s: &str) -> Result<Blob, String> {
    STANDARD
        .decode(s.trim())
        .map(Blob)
        .map_err(|e| format!("not base64: {e}"))
}

#[derive(Debug, Args)]
pub struct Paging {
    /// Page size.
    #[arg(long)]
    pub limit: Option<i32>,
    /// `next_marker` from the previous page.
    #[arg(long, default_value = "")]
    pub marker: String,
}

#[derive(Debug, Args)]
pub struct DataKeyArgs {
    /// Key id, key ARN, alias/NAME or alias ARN.
    pub key_id: String,
    /// AES_256 or AES_128 [default: AES_256 unless --number-of-bytes is given].
    #[arg(long)]
    pub key_spec: Option<String>,
    /// Data key length, 1-1024 bytes.
    #[arg(long, conflicts_with = "key_spec")]
    pub number_of_bytes: Option<i32>,
    /// Encryption context entry KEY=VALUE (repeatable).
    #[arg(long = "encryption-context", value_parser = key_value)]
    pub encryption_context: Vec<(String, String)>,
}

impl DataKeyArgs {
    fn spec(&self) -> (String, Option<i32>) {
        match (&self.key_spec, self.number_of_bytes) {
            (None, None) => ("AES_256".into(), None),
            (spec, n) => (spec.clone().unwrap_or_default(), n),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Create a symmetric AES-256 key in the root of trust.
    CreateKey {
        #[arg(long, default_value = "")]
        description: String,
        /// Tag KEY=VALUE (repeatable).
        #[arg(long = "tag", value_parser = key_value)]
        tags: Vec<(String, String)>,
        /// TPM only: "resident" or "sealed-kek" [default: the server's key_mode].
        #[arg(long, default_value = "")]
        tpm_key_mode: String,
        /// TPM only: bind the key to these PCRs' current values, e.g. 7,17.
        #[arg(long, value_delimiter = ',')]
        tpm_pcrs: Vec<u32>,
        /// EXTERNAL: no material until import-key-material [default: made in the root].
        #[arg(long, default_value = "")]
        origin: String,
    },
    /// An RSA public key and an import token for wrapping key material (valid 24 hours).
    GetParametersForImport {
        key_id: String,
        /// RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256.
        #[arg(long, default_value = "RSAES_OAEP_SHA_256")]
        wrapping_algorithm: String,
        /// RSA_2048, RSA_3072 or RSA_4096.
        #[arg(long, default_value = "RSA_3072")]
        wrapping_key_spec: String,
    },
    /// Import 32 bytes of key material, RSA-OAEP wrapped with get-parameters-for-import's key.
    ImportKeyMaterial {
        key_id: String,
        /// The import token (base64, as get-parameters-for-import prints it).
        #[arg(long, value_parser = base64_arg)]
        import_token: Blob,
        /// A file holding the wrapped key material (raw bytes).
        #[arg(long)]
        encrypted_key_material_file: PathBuf,
        /// KEY_MATERIAL_DOES_NOT_EXPIRE, or KEY_MATERIAL_EXPIRES with --valid-to.
        #[arg(long, default_value = "KEY_MATERIAL_DOES_NOT_EXPIRE")]
        expiration_model: String,
        /// When the material expires, in seconds since the epoch.
        #[arg(long)]
        valid_to: Option<i64>,
    },
    /// Destroy the key's material; it waits for the same material again.
    DeleteImportedKeyMaterial {
        key_id: String,
    },
    DescribeKey {
        key_id: String,
    },
    ListKeys(#[command(flatten)] Paging),
    EnableKey {
        key_id: String,
    },
    DisableKey {
        key_id: String,
    },
    ScheduleKeyDeletion {
        key_id: String,
        /// 7-30 days [default: 30].
        #[arg(long)]
        pending_window_in_days: Option<i32>,
    },
    CancelKeyDeletion {
        key_id: String,
    },
    RotateKeyOnDemand {
        key_id: String,
    },
    ListKeyRotations {
        key_id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Rotate the key automatically every N days (90-2560, default 365).
    EnableKeyRotation {
        key_id: String,
        #[arg(long)]
        rotation_period_in_days: Option<i32>,
    },
    DisableKeyRotation {
        key_id: String,
    },
    GetKeyRotationStatus {
        key_id: String,
    },
    /// Set the key policy (IAM JSON; `file://PATH` reads a file).
    PutKeyPolicy {
        key_id: String,
        #[arg(long)]
        policy: String,
        #[arg(long, default_value = "default")]
        policy_name: String,
        /// Put it even if it would lock you out of changing it again.
        #[arg(long)]
        bypass_policy_lockout_safety_check: bool,
    },
    GetKeyPolicy {
        key_id: String,
        #[arg(long, default_value = "default")]
        policy_name: String,
    },
    CreateAlias {
        alias_name: String,
        target_key_id: String,
    },
    DeleteAlias {
        alias_name: String,
    },
    /// Point an existing alias at another key.
    UpdateAlias {
        alias_name: String,
        target_key_id: String,
    },
    UpdateKeyDescription {
        key_id: String,
        #[arg(long)]
        description: String,
    },
    /// Add tags to a key (a tag key it has gets the new value).
    TagResource {
        key_id: String,
        /// Tag KEY=VALUE (repeatable).
        #[arg(long = "tag", value_parser = key_value, required = true)]
        tags: Vec<(String, String)>,
    },
    UntagResource {
        key_id: String,
        /// A tag key to remove (repeatable).
        #[arg(long = "tag-key", required = true)]
        tag_keys: Vec<String>,
    },
    ListResourceTags {
        key_id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// The key's policy names (always "default").
    ListKeyPolicies {
        key_id: String,
    },
    ListAliases {
        /// Only the aliases of this key.
        #[arg(long, default_value = "")]
        key_id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// A data key: plaintext (base64) and the same key encrypted under KEY_ID.
    GenerateDataKey(DataKeyArgs),
    GenerateDataKeyWithoutPlaintext(DataKeyArgs),
    Encrypt {
        key_id: String,
        /// Plaintext as text.
        #[arg(
            long,
            required_unless_present = "plaintext_file",
            conflicts_with = "plaintext_file"
        )]
        plaintext: Option<String>,
        /// Plaintext read from a file (raw bytes).
        #[arg(long)]
        plaintext_file: Option<PathBuf>,
        #[arg(long = "encryption-context", value_parser = key_value)]
        encryption_context: Vec<(String, String)>,
    },
    Decrypt {
        /// The ciphertext blob, base64.
        #[arg(long, value_parser = base64_arg)]
        ciphertext_blob: Blob,
        #[arg(long = "encryption-context", value_parser = key_value)]
        encryption_context: Vec<(String, String)>,
        /// When given, the blob must have been made under this key.
        #[arg(long, default_value = "")]
        key_id: String,
    },
    ReEncrypt {
        #[arg(long, value_parser = base64_arg)]
        ciphertext_blob: Blob,
        #[arg(long)]
        destination_key_id: String,
        #[arg(long, default_value = "")]
        source_key_id: String,
        #[arg(long = "source-encryption-context", value_parser = key_value)]
        source_encryption_context: Vec<(String, String)>,
        #[arg(long = "destination-encryption-context", value_parser = key_value)]
        destination_encryption_context: Vec<(String, String)>,
    },
    /// Random bytes from the root of trust's generator (base64).
    GenerateRandom {
        number_of_bytes: i32,
    },
}

fn map(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    pairs.into_iter().collect()
}

pub fn main(args: KmsArgs) -> ExitCode {
    super::client::run_client(|| run(args))
}

async fn run(args: KmsArgs) -> Result<(), String> {
    let channel = super::client::connect(&args.client.connect).await?;
    let mut client = KeyManagementServiceClient::new(channel);
    let format = args.client.output;
    macro_rules! call {
        ($method:ident, $request:expr) => {
            super::client::print_reply(client.$method($request).await, format)
        };
    }
    match args.command {
        KmsCommand::CreateKey {
            description,
            tags,
            tpm_key_mode,
            tpm_pcrs,
            origin,
        } => call!(
            create_key,
            pb::CreateKeyRequest {
                description,
                tags: tags
                    .into_iter()
                    .map(|(tag_key, tag_value)| pb::Tag { tag_key, tag_value })
                    .collect(),
                tpm_key_mode,
                tpm_pcrs,
                origin,
                ..Default::default()
            }
        ),
        KmsCommand::GetParametersForImport {
            key_id,
            wrapping_algorithm,
            wrapping_key_spec,
        } => call!(
            get_parameters_for_import,
            pb::GetParametersForImportRequest {
                key_id,
                wrapping_algorithm,
                wrapping_key_spec,
            }
        ),
        KmsCommand::ImportKeyMaterial {
            key_id,
            import_token,
            encrypted_key_material_file,
            expiration_model,
            valid_to,
        } => {
            let encrypted_key_material =
                std::fs::read(&encrypted_key_material_file).map_err(|e| {
                    format!("cannot read {}: {e}", encrypted_key_material_file.display())
                })?;
            call!(
                import_key_material,
                pb::ImportKeyMaterialRequest {
                    key_id,
                    import_token: import_token.0,
                    encrypted_key_material,
                    valid_to,
                    expiration_model,
                }
            )
        }
        KmsCommand::DeleteImportedKeyMaterial { key_id } => call!(
            delete_imported_key_material,
            pb::DeleteImportedKeyMaterialRequest { key_id }
        ),
        KmsCommand::DescribeKey { key_id } => {
            call!(describe_key, pb::DescribeKeyRequest { key_id })
        }
        KmsCommand::ListKeys(p) => call!(
            list_keys,
            pb::ListKeysRequest {
                limit: p.limit,
                marker: p.marker
            }
        ),
        KmsCommand::EnableKey { key_id } => call!(enable_key, pb::EnableKeyRequest { key_id }),
        KmsCommand::DisableKey { key_id } => call!(disable_key, pb::DisableKeyRequest { key_id }),
        KmsCommand::ScheduleKeyDeletion {
            key_id,
            pending_window_in_days,
        } => call!(
            schedule_key_deletion,
            pb::ScheduleKeyDeletionRequest {
                key_id,
                pending_window_in_days
            }
        ),
        KmsCommand::CancelKeyDeletion { key_id } => {
            call!(cancel_key_deletion, pb::CancelKeyDeletionRequest { key_id })
        }
        KmsCommand::RotateKeyOnDemand { key_id } => {
            call!(
                rotate_key_on_demand,
                pb::RotateKeyOnDemandRequest { key_id }
            )
        }
        KmsCommand::EnableKeyRotation {
            key_id,
            rotation_period_in_days,
        } => call!(
            enable_key_rotation,
            pb::EnableKeyRotationRequest {
                key_id,
                rotation_period_in_days
            }
        ),
        KmsCommand::DisableKeyRotation { key_id } => {
            call!(
                disable_key_rotation,
                pb::DisableKeyRotationRequest { key_id }
            )
        }
        KmsCommand::GetKeyRotationStatus { key_id } => call!(
            get_key_rotation_status,
            pb::GetKeyRotationStatusRequest { key_id }
        ),
        KmsCommand::PutKeyPolicy {
            key_id,
            policy,
            policy_name,
            bypass_policy_lockout_safety_check,
        } => call!(
            put_key_policy,
            pb::PutKeyPolicyRequest {
                key_id,
                policy_name,
                policy: super::client::document(&policy)?,
                bypass_policy_lockout_safety_check,
            }
        ),
        KmsCommand::GetKeyPolicy {
            key_id,
            policy_name,
        } => call!(
            get_key_policy,
            pb::GetKeyPolicyRequest {
                key_id,
                policy_name
            }
        ),
        KmsCommand::ListKeyRotations { key_id, paging } => call!(
            list_key_rotations,
            pb::ListKeyRotationsRequest {
                key_id,
                limit: paging.limit,
                marker: paging.marker
            }
        ),
        KmsCommand::CreateAlias {
            alias_name,
            target_key_id,
        } => call!(
            create_alias,
            pb::CreateAliasRequest {
                alias_name,
                target_key_id
            }
        ),
        KmsCommand::DeleteAlias { alias_name } => {
            call!(delete_alias, pb::DeleteAliasRequest { alias_name })
        }
        KmsCommand::UpdateAlias {
            alias_name,
            target_key_id,
        } => call!(
            update_alias,
            pb::UpdateAliasRequest {
                alias_name,
                target_key_id
            }
        ),
        KmsCommand::UpdateKeyDescription {
            key_id,
            description,
        } => call!(
            update_key_description,
            pb::UpdateKeyDescriptionRequest {
                key_id,
                description
            }
        ),
        KmsCommand::TagResource { key_id, tags } => call!(
            tag_resource,
            pb::KeyTagResourceRequest {
                key_id,
                tags: tags
                    .into_iter()
                    .map(|(tag_key, tag_value)| pb::Tag { tag_key, tag_value })
                    .collect()
            }
        ),
        KmsCommand::UntagResource { key_id, tag_keys } => call!(
            untag_resource,
            pb::KeyUntagResourceRequest { key_id, tag_keys }
        ),
        KmsCommand::ListResourceTags { key_id, paging } => call!(
            list_resource_tags,
            pb::ListResourceTagsRequest {
                key_id,
                limit: paging.limit,
                marker: paging.marker
            }
        ),
        KmsCommand::ListKeyPolicies { key_id } => call!(
            list_key_policies,
            pb::ListKeyPoliciesRequest {
                key_id,
                ..Default::default()
            }
        ),
        KmsCommand::ListAliases { key_id, paging } => call!(
            list_aliases,
            pb::ListAliasesRequest {
                key_id,
                limit: paging.limit,
                marker: paging.marker
            }
        ),
        KmsCommand::GenerateDataKey(a) => {
            let (key_spec, number_of_bytes) = a.spec();
            call!(
                generate_data_key,
                pb::GenerateDataKeyRequest {
                    key_id: a.key_id,
                    encryption_context: map(a.encryption_context),
                    number_of_bytes,
                    key_spec,
                }
            )
        }
        KmsCommand::GenerateDataKeyWithoutPlaintext(a) => {
            let (key_spec, number_of_bytes) = a.spec();
            call!(
                generate_data_key_without_plaintext,
                pb::GenerateDataKeyWithoutPlaintextRequest {
                    key_id: a.key_id,
                    encryption_context: map(a.encryption_context),
                    number_of_bytes,
                    key_spec,
                }
            )
        }
        KmsCommand::Encrypt {
            key_id,
            plaintext,
            plaintext_file,
            encryption_context,
        } => {
            let plaintext = match (plaintext, plaintext_file) {
                (Some(text), _) => text.into_bytes(),
                (None, Some(path)) => std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                (None, None) => return Err("give --plaintext or --plaintext-file".into()),
            };
            call!(
                encrypt,
                pb::EncryptRequest {
                    key_id,
                    plaintext,
                    encryption_context: map(encryption_context),
                    encryption_algorithm: String::new(),
                }
            )
        }
        KmsCommand::Decrypt {
            ciphertext_blob,
            encryption_context,
            key_id,
        } => call!(
            decrypt,
            pb::DecryptRequest {
                ciphertext_blob: ciphertext_blob.0,
                encryption_context: map(encryption_context),
                key_id,
                encryption_algorithm: String::new(),
            }
        ),
        KmsCommand::ReEncrypt {
            ciphertext_blob,
            destination_key_id,
            source_key_id,
            source_encryption_context,
            destination_encryption_context,
        } => call!(
            re_encrypt,
            pb::ReEncryptRequest {
                ciphertext_blob: ciphertext_blob.0,
                source_encryption_context: map(source_encryption_context),
                source_key_id,
                destination_key_id,
                destination_encryption_context: map(destination_encryption_context),
            }
        ),
        KmsCommand::GenerateRandom { number_of_bytes } => {
            call!(
                generate_random,
                pb::GenerateRandomRequest { number_of_bytes }
            )
        }
    }
}
