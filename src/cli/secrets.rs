//! `keyward secrets <command>`: one subcommand per SecretsManagerService RPC, named as the
//! `aws secretsmanager` commands, plus the short forms `get` and `put`.

use crate::api::pb::{self, secrets_manager_service_client::SecretsManagerServiceClient};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(flatten)]
    pub client: super::client::ClientArgs,
    #[command(subcommand)]
    pub command: SecretsCommand,
}

/// A value from exactly one source. `-` reads standard input, so the value never lands in
/// shell history.
#[derive(Debug, Args)]
pub struct ValueArgs {
    /// The value as text; `-` reads it from standard input.
    #[arg(long = "secret-string", visible_alias = "value", conflicts_with_all = ["secret_binary_file", "secret_string_file"])]
    pub secret_string: Option<String>,
    /// The value as text, read from a file.
    #[arg(long, conflicts_with = "secret_binary_file")]
    pub secret_string_file: Option<PathBuf>,
    /// The value as bytes, read from a file.
    #[arg(long)]
    pub secret_binary_file: Option<PathBuf>,
}

impl ValueArgs {
    fn read(self) -> Result<(Option<String>, Option<Vec<u8>>), String> {
        match (
            self.secret_string,
            self.secret_string_file,
            self.secret_binary_file,
        ) {
            (Some(text), _, _) if text == "-" => {
                let mut value = String::new();
                std::io::stdin()
                    .read_to_string(&mut value)
                    .map_err(|e| format!("cannot read the value from standard input: {e}"))?;
                // A value typed or piped usually ends with one newline that is not part of it.
                if value.ends_with('\n') {
                    value.pop();
                }
                Ok((Some(value), None))
            }
            (Some(text), _, _) => Ok((Some(text), None)),
            (None, Some(path), _) => std::fs::read_to_string(&path)
                .map(|text| (Some(text), None))
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            (None, None, Some(path)) => std::fs::read(&path)
                .map(|bytes| (None, Some(bytes)))
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            (None, None, None) => Ok((None, None)),
        }
    }
}

fn tag(s: &str) -> Result<pb::SecretTag, String> {
    s.split_once('=')
        .map(|(k, v)| pb::SecretTag {
            key: k.to_owned(),
            value: v.to_owned(),
        })
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// `REGION[=KMS_KEY]`: a site to replicate to, and the KMS key there (default: its default key).
fn replica_region(s: &str) -> Result<pb::ReplicaRegionType, String> {
    let (region, kms_key_id) = s.split_once('=').unwrap_or((s, ""));
    if region.is_empty() {
        return Err(format!("expected REGION or REGION=KMS_KEY, got {s:?}"));
    }
    Ok(pb::ReplicaRegionType {
        region: region.to_owned(),
        kms_key_id: kms_key_id.to_owned(),
    })
}

/// `KEY=VALUE[,VALUE...]`: a ListSecrets filter.
fn filter(s: &str) -> Result<pb::Filter, String> {
    s.split_once('=')
        .map(|(k, v)| pb::Filter {
            key: k.to_owned(),
            values: v.split(',').map(str::to_owned).collect(),
        })
        .ok_or_else(|| format!("expected KEY=VALUE[,VALUE...], got {s:?}"))
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a secret's current value (or the version or label given), and nothing else.
    Get {
        name: String,
        #[arg(long, default_value = "")]
        version_stage: String,
    },
    /// Store a new value as AWSCURRENT; `--value -` reads it from standard input.
    Put {
        name: String,
        #[command(flatten)]
        value: ValueArgs,
    },
    CreateSecret {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "")]
        kms_key_id: String,
        #[arg(long, default_value = "")]
        client_request_token: String,
        #[command(flatten)]
        value: ValueArgs,
        /// Tag KEY=VALUE (repeatable).
        #[arg(long = "tag", value_parser = tag)]
        tags: Vec<pb::SecretTag>,
        /// Replicate to this site: REGION, or REGION=KMS_KEY for a key there (repeatable).
        #[arg(long = "add-replica-region", value_parser = replica_region)]
        add_replica_regions: Vec<pb::ReplicaRegionType>,
        /// Replace a secret of the same name in those sites.
        #[arg(long)]
        force_overwrite_replica_secret: bool,
    },
    GetSecretValue {
        #[arg(long)]
        secret_id: String,
        #[arg(long, default_value = "")]
        version_id: String,
        #[arg(long, default_value = "")]
        version_stage: String,
    },
    BatchGetSecretValue {
        /// A secret id (repeatable), or use --filter.
        #[arg(long = "secret-id")]
        secret_id_list: Vec<String>,
        #[arg(long = "filter", value_parser = filter)]
        filters: Vec<pb::Filter>,
        #[arg(long)]
        max_results: Option<i32>,
        #[arg(long, default_value = "")]
        next_token: String,
    },
    PutSecretValue {
        #[arg(long)]
        secret_id: String,
        #[arg(long, default_value = "")]
        client_request_token: String,
        #[command(flatten)]
        value: ValueArgs,
        /// A staging label (repeatable).
        #[arg(long = "version-stage")]
        version_stages: Vec<String>,
    },
    UpdateSecret {
        #[arg(long)]
        secret_id: String,
        #[arg(long, default_value = "")]
        client_request_token: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        kms_key_id: Option<String>,
        #[command(flatten)]
        value: ValueArgs,
    },
    UpdateSecretVersionStage {
        #[arg(long)]
        secret_id: String,
        #[arg(long)]
        version_stage: String,
        #[arg(long, default_value = "")]
        remove_from_version_id: String,
        #[arg(long, default_value = "")]
        move_to_version_id: String,
    },
    DescribeSecret {
        #[arg(long)]
        secret_id: String,
    },
    ListSecrets {
        #[arg(long)]
        include_planned_deletion: bool,
        #[arg(long)]
        max_results: Option<i32>,
        #[arg(long, default_value = "")]
        next_token: String,
        /// KEY=VALUE[,VALUE...] with KEY name, description, tag-key, tag-value or all.
        #[arg(long = "filter", value_parser = filter)]
        filters: Vec<pb::Filter>,
        /// asc or desc.
        #[arg(long, default_value = "")]
        sort_order: String,
    },
    ListSecretVersionIds {
        #[arg(long)]
        secret_id: String,
        #[arg(long)]
        max_results: Option<i32>,
        #[arg(long, default_value = "")]
        next_token: String,
        #[arg(long)]
        include_deprecated: bool,
    },
    DeleteSecret {
        #[arg(long)]
        secret_id: String,
        #[arg(long)]
        recovery_window_in_days: Option<i64>,
        #[arg(long)]
        force_delete_without_recovery: bool,
    },
    RestoreSecret {
        #[arg(long)]
        secret_id: String,
    },
    TagResource {
        #[arg(long)]
        secret_id: String,
        #[arg(long = "tag", value_parser = tag, required = true)]
        tags: Vec<pb::SecretTag>,
    },
    UntagResource {
        #[arg(long)]
        secret_id: String,
        #[arg(long = "tag-key", required = true)]
        tag_keys: Vec<String>,
    },
    /// Replicate a secret to other sites; a Failed replica is retried this way too.
    ReplicateSecretToRegions {
        #[arg(long)]
        secret_id: String,
        /// REGION, or REGION=KMS_KEY for a key in that site (repeatable).
        #[arg(long = "add-replica-region", value_parser = replica_region, required = true)]
        add_replica_regions: Vec<pb::ReplicaRegionType>,
        /// Replace a secret of the same name in those sites.
        #[arg(long)]
        force_overwrite_replica_secret: bool,
    },
    /// Stop replicating to sites; their replicas are deleted.
    RemoveRegionsFromReplication {
        #[arg(long)]
        secret_id: String,
        #[arg(long = "remove-replica-region", required = true)]
        remove_replica_regions: Vec<String>,
    },
    /// In a replica's site: make the replica a standalone, writable secret (fail over).
    StopReplicationToReplica {
        #[arg(long)]
        secret_id: String,
    },
    /// Attach a resource policy (IAM JSON; `file://PATH` reads a file).
    PutResourcePolicy {
        #[arg(long)]
        secret_id: String,
        #[arg(long)]
        resource_policy: String,
        /// Refuse a policy that grants every principal access without a condition.
        #[arg(long)]
        block_public_policy: bool,
    },
    GetResourcePolicy {
        #[arg(long)]
        secret_id: String,
    },
    DeleteResourcePolicy {
        #[arg(long)]
        secret_id: String,
    },
    /// Check a resource policy without attaching it.
    ValidateResourcePolicy {
        #[arg(long)]
        secret_id: Option<String>,
        #[arg(long)]
        resource_policy: String,
    },
    /// Rotate a secret now (and set its schedule and rotator), e.g.
    /// `keyward secrets rotate db/app --schedule "rate(30 days)" --rotator postgresql`.
    #[command(visible_alias = "rotate-secret")]
    Rotate(super::rotate::RotateArgs),
    /// Turn rotation off and stop the rotation in flight; labels stay where they are.
    CancelRotateSecret {
        #[arg(long)]
        secret_id: String,
    },
    GetRandomPassword {
        #[arg(long)]
        password_length: Option<i64>,
        #[arg(long, default_value = "")]
        exclude_characters: String,
        #[arg(long)]
        exclude_numbers: bool,
        #[arg(long)]
        exclude_punctuation: bool,
        #[arg(long)]
        exclude_uppercase: bool,
        #[arg(long)]
        exclude_lowercase: bool,
        #[arg(long)]
        include_space: bool,
        #[arg(long)]
        require_each_included_type: Option<bool>,
    },
}

pub fn main(args: SecretsArgs) -> ExitCode {
    super::client::run_client(|| run(args))
}

async fn run(args: SecretsArgs) -> Result<(), String> {
    let channel = super::client::connect(&args.client.connect).await?;
    let mut client = SecretsManagerServiceClient::new(channel);
    let format = args.client.output;
    macro_rules! call {
        ($method:ident, $request:expr) => {
            super::client::print_reply(client.$method($request).await, format)
        };
    }
    match args.command {
        SecretsCommand::Get {
            name,
            version_stage,
        } => {
            let response = client
                .get_secret_value(pb::GetSecretValueRequest {
                    secret_id: name,
                    version_id: String::new(),
                    version_stage,
                })
                .await
                .map_err(super::client::describe)?
                .into_inner();
            use std::io::Write;
            let mut stdout = std::io::stdout();
            match (response.secret_string, response.secret_binary) {
                (Some(text), _) => writeln!(stdout, "{text}"),
                (None, Some(bytes)) => stdout.write_all(&bytes),
                (None, None) => Ok(()),
            }
            .map_err(|e| e.to_string())
        }
        SecretsCommand::Put { name, value } => {
            let (secret_string, secret_binary) = value.read()?;
            if secret_string.is_none() && secret_binary.is_none() {
                return Err("give --value (or --value - to read standard input)".into());
            }
            call!(
                put_secret_value,
                pb::PutSecretValueRequest {
                    secret_id: name,
                    client_request_token: uuid::Uuid::new_v4().to_string(),
                    secret_binary,
                    secret_string,
                    version_stages: Vec::new(),
                }
            )
        }
        SecretsCommand::CreateSecret {
            name,
            description,
            kms_key_id,
            client_request_token,
            value,
            tags,
            add_replica_regions,
            force_overwrite_replica_secret,
        } => {
            let (secret_string, secret_binary) = value.read()?;
            call!(
                create_secret,
                pb::CreateSecretRequest {
                    name,
                    client_request_token: super::token_or_new(client_request_token),
                    description,
                    kms_key_id,
                    secret_binary,
                    secret_string,
                    tags,
                    add_replica_regions,
                    force_overwrite_replica_secret,
                }
            )
        }
        SecretsCommand::ReplicateSecretToRegions {
            secret_id,
            add_replica_regions,
            force_overwrite_replica_secret,
        } => call!(
            replicate_secret_to_regions,
            pb::ReplicateSecretToRegionsRequest {
                secret_id,
                add_replica_regions,
                force_overwrite_replica_secret,
            }
        ),
        SecretsCommand::RemoveRegionsFromReplication {
            secret_id,
            remove_replica_regions,
        } => call!(
            remove_regions_from_replication,
            pb::RemoveRegionsFromReplicationRequest {
                secret_id,
                remove_replica_regions,
            }
        ),
        SecretsCommand::StopReplicationToReplica { secret_id } => call!(
            stop_replication_to_replica,
            pb::StopReplicationToReplicaRequest { secret_id }
        ),
        SecretsCommand::GetSecretValue {
            secret_id,
            version_id,
            version_stage,
        } => call!(
            get_secret_value,
            pb::GetSecretValueRequest {
                secret_id,
                version_id,
                version_stage
            }
        ),
        SecretsCommand::BatchGetSecretValue {
            secret_id_list,
            filters,
            max_results,
            next_token,
        } => call!(
            batch_get_secret_value,
            pb::BatchGetSecretValueRequest {
                secret_id_list,
                filters,
                max_results,
                next_token
            }
        ),
        SecretsCommand::PutSecretValue {
            secret_id,
            client_request_token,
            value,
            version_stages,
        } => {
            let (secret_string, secret_binary) = value.read()?;
            call!(
                put_secret_value,
                pb::PutSecretValueRequest {
                    secret_id,
                    client_request_token: super::token_or_new(client_request_token),
                    secret_binary,
                    secret_string,
                    version_stages,
                }
            )
        }
        SecretsCommand::UpdateSecret {
            secret_id,
            client_request_token,
            description,
            kms_key_id,
            value,
        } => {
            let (secret_string, secret_binary) = value.read()?;
            let has_value = secret_string.is_some() || secret_binary.is_some();
            call!(
                update_secret,
                pb::UpdateSecretRequest {
                    secret_id,
                    client_request_token: if has_value {
                        super::token_or_new(client_request_token)
                    } else {
                        client_request_token
                    },
                    description,
                    kms_key_id,
                    secret_binary,
                    secret_string,
                }
            )
        }
        SecretsCommand::UpdateSecretVersionStage {
            secret_id,
            version_stage,
            remove_from_version_id,
            move_to_version_id,
        } => call!(
            update_secret_version_stage,
            pb::UpdateSecretVersionStageRequest {
                secret_id,
                version_stage,
                remove_from_version_id,
                move_to_version_id
            }
        ),
        SecretsCommand::DescribeSecret { secret_id } => {
            call!(describe_secret, pb::DescribeSecretRequest { secret_id })
        }
        SecretsCommand::ListSecrets {
            include_planned_deletion,
            max_results,
            next_token,
            filters,
            sort_order,
        } => call!(
            list_secrets,
            pb::ListSecretsRequest {
                include_planned_deletion,
                max_results,
                next_token,
                filters,
                sort_order
            }
        ),
        SecretsCommand::ListSecretVersionIds {
            secret_id,
            max_results,
            next_token,
            include_deprecated,
        } => call!(
            list_secret_version_ids,
            pb::ListSecretVersionIdsRequest {
                secret_id,
                max_results,
                next_token,
                include_deprecated
            }
        ),
        SecretsCommand::DeleteSecret {
            secret_id,
            recovery_window_in_days,
            force_delete_without_recovery,
        } => call!(
            delete_secret,
            pb::DeleteSecretRequest {
                secret_id,
                recovery_window_in_days,
                force_delete_without_recovery
            }
        ),
        SecretsCommand::RestoreSecret { secret_id } => {
            call!(restore_secret, pb::RestoreSecretRequest { secret_id })
        }
        SecretsCommand::TagResource { secret_id, tags } => {
            call!(tag_resource, pb::TagResourceRequest { secret_id, tags })
        }
        SecretsCommand::UntagResource {
            secret_id,
            tag_keys,
        } => {
            call!(
                untag_resource,
                pb::UntagResourceRequest {
                    secret_id,
                    tag_keys
                }
            )
        }
        SecretsCommand::PutResourcePolicy {
            secret_id,
            resource_policy,
            block_public_policy,
        } => call!(
            put_resource_policy,
            pb::PutResourcePolicyRequest {
                secret_id,
                resource_policy: super::client::document(&resource_policy)?,
                block_public_policy: Some(block_public_policy),
            }
        ),
        SecretsCommand::GetResourcePolicy { secret_id } => call!(
            get_resource_policy,
            pb::GetResourcePolicyRequest { secret_id }
        ),
        SecretsCommand::DeleteResourcePolicy { secret_id } => call!(
            delete_resource_policy,
            pb::DeleteResourcePolicyRequest { secret_id }
        ),
        SecretsCommand::ValidateResourcePolicy {
            secret_id,
            resource_policy,
        } => call!(
            validate_resource_policy,
            pb::ValidateResourcePolicyRequest {
                secret_id,
                resource_policy: super::client::document(&resource_policy)?,
            }
        ),
        SecretsCommand::Rotate(rotate) => call!(rotate_secret, rotate.request()?),
        SecretsCommand::CancelRotateSecret { secret_id } => call!(
            cancel_rotate_secret,
            pb::CancelRotateSecretRequest { secret_id }
        ),
        SecretsCommand::GetRandomPassword {
            password_length,
            exclude_characters,
            exclude_numbers,
            exclude_punctuation,
            exclude_uppercase,
            exclude_lowercase,
            include_space,
            require_each_included_type,
        } => call!(
            get_random_password,
            pb::GetRandomPasswordRequest {
                password_length,
                exclude_characters,
                exclude_numbers,
                exclude_punctuation,
                exclude_uppercase,
                exclude_lowercase,
                include_space,
                require_each_included_type
            }
        ),
    }
}
