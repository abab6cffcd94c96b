//! `SecretsManagerService` handlers: convert the request, call the domain, convert back.

use super::convert::{
    filters_in, regions_in, replication_out, stages_map, tags_in, tags_out, value_entry, value_out,
};
use super::guard::guarded;
use super::pb::{self, secrets_manager_service_server::SecretsManagerService};
use crate::access::{Access, Gate, Pass, Target};
use crate::service::secrets::{
    BatchItem, Deleted, ListOptions, Named, NewSecret, PasswordOptions, RotateRequest,
    RotationAnswer, SecretUpdate, SecretsService, Value,
};
use crate::store::SecretRecord;
use crate::time::Timestamp;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SecretsApi {
    secrets: Arc<SecretsService>,
    gate: Arc<Gate>,
}

impl SecretsApi {
    pub fn new(secrets: Arc<SecretsService>, gate: Arc<Gate>) -> Self {
        Self { secrets, gate }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// What a failed rotation's `last_error` shows a caller who may not read the secret: the
/// error can quote a rotator's stderr, which is about the secret's value and its systems.
const LAST_ERROR_HIDDEN: &str =
    "(shown only to callers allowed secretsmanager:GetSecretValue on the secret)";

/// Whether the caller sees why `record`'s rotation failed (asked only when one is in flight:
/// a policy decision per listed secret costs a store read).
async fn sees_errors(pass: &Pass<'_>, record: &SecretRecord) -> bool {
    record
        .rotation
        .as_ref()
        .is_some_and(|r| r.in_flight.is_some())
        && pass.allows_secret_read(&record.arn).await
}

/// One secret as DescribeSecret and ListSecrets show it; `readable`: the caller may read its
/// value, and so see why a rotation failed.
fn list_entry(
    secrets: &SecretsService,
    record: &SecretRecord,
    readable: bool,
) -> pb::SecretListEntry {
    let mut rotation = super::rotation::fields_out(record.rotation.as_ref());
    if let Some(status) = rotation.status.as_mut()
        && !readable
        && !status.last_error.is_empty()
    {
        status.last_error = LAST_ERROR_HIDDEN.into();
    }
    pb::SecretListEntry {
        arn: record.arn.clone(),
        name: record.name.clone(),
        description: record.description.clone(),
        kms_key_id: record.kms_key_id.clone(),
        rotation_enabled: rotation.enabled,
        rotation_rules: rotation.rules,
        last_rotated_date: rotation.last_rotated_date,
        next_rotation_date: rotation.next_rotation_date,
        rotator: rotation.rotator,
        rotation_status: rotation.status,
        last_changed_date: Some(record.last_changed_at.secs()),
        last_accessed_date: record.last_accessed_day.map(Timestamp::secs),
        deleted_date: record.deletion_date.map(Timestamp::secs),
        tags: tags_out(&record.tags),
        secret_versions_to_stages: stages_map(record),
        created_date: record.created_at.secs(),
        primary_region: secrets.primary_region(record).unwrap_or_default(),
        replication_status: replication_out(secrets.replication_status(record)),
    }
}

#[tonic::async_trait]
impl SecretsManagerService for SecretsApi {
    async fn create_secret(
        &self,
        request: Request<pb::CreateSecretRequest>,
    ) -> Reply<pb::CreateSecretResponse> {
        guarded(&self.gate, request, |r| async move {
            let written = self
                .secrets
                .create_secret(NewSecret {
                    name: r.name,
                    client_request_token: r.client_request_token,
                    description: r.description,
                    kms_key_id: r.kms_key_id,
                    value: Value::from_fields(r.secret_string, r.secret_binary)?,
                    tags: tags_in(r.tags),
                    replica_regions: regions_in(r.add_replica_regions),
                    force_overwrite_replica_secret: r.force_overwrite_replica_secret,
                })
                .await?;
            let replication_status = match self.secrets.describe_secret(&written.arn).await {
                Ok(record) => replication_out(self.secrets.replication_status(&record)),
                Err(_) => Vec::new(),
            };
            Ok(Response::new(pb::CreateSecretResponse {
                arn: written.arn,
                name: written.name,
                version_id: written.version_id,
                replication_status,
            }))
        })
        .await
    }

    async fn get_secret_value(
        &self,
        request: Request<pb::GetSecretValueRequest>,
    ) -> Reply<pb::GetSecretValueResponse> {
        guarded(&self.gate, request, |r| async move {
            let v = self.secrets.get_secret_value(r.into()).await?;
            let (secret_string, secret_binary) = value_out(v.value);
            Ok(Response::new(pb::GetSecretValueResponse {
                arn: v.arn,
                name: v.name,
                version_id: v.version_id,
                secret_binary,
                secret_string,
                version_stages: v.version_stages,
                created_date: v.created_date.secs(),
            }))
        })
        .await
    }

    async fn batch_get_secret_value(
        &self,
        request: Request<pb::BatchGetSecretValueRequest>,
    ) -> Reply<pb::BatchGetSecretValueResponse> {
        use super::guard::{admitted, finish};
        let (r, pass) = admitted(&self.gate, request).await?;
        let pass_ref = &pass;
        let allowed =
            move |secret_id: String| -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>> {
                Box::pin(async move { pass_ref.allows_secret_read(&secret_id).await })
            };
        let reply = async {
            let (items, next) = self
                .secrets
                .batch_get_secret_value(
                    r.secret_id_list,
                    filters_in(r.filters),
                    r.max_results,
                    &r.next_token,
                    &allowed,
                )
                .await?;
            let mut response = pb::BatchGetSecretValueResponse {
                next_token: next.unwrap_or_default(),
                ..Default::default()
            };
            for item in items {
                match item {
                    BatchItem::Value(v) => response.secret_values.push(value_entry(v)),
                    BatchItem::Error { secret_id, error } => {
                        let status = Status::from(error);
                        response.errors.push(pb::ApiErrorType {
                            secret_id,
                            error_code: super::status::exception(&status).as_str().to_owned(),
                            message: status.message().to_owned(),
                        });
                    }
                }
            }
            Ok(Response::new(response))
        }
        .await;
        finish(pass, reply).await
    }

    async fn put_secret_value(
        &self,
        request: Request<pb::PutSecretValueRequest>,
    ) -> Reply<pb::PutSecretValueResponse> {
        guarded(&self.gate, request, |r| async move {
            let written = self.secrets.put_secret_value(r.try_into()?).await?;
            Ok(Response::new(pb::PutSecretValueResponse {
                arn: written.arn,
                name: written.name,
                version_id: written.version_id.unwrap_or_default(),
                version_stages: written.version_stages,
            }))
        })
        .await
    }

    async fn update_secret(
        &self,
        request: Request<pb::UpdateSecretRequest>,
    ) -> Reply<pb::UpdateSecretResponse> {
        guarded(&self.gate, request, |r| async move {
            let written = self
                .secrets
                .update_secret(SecretUpdate {
                    secret_id: r.secret_id,
                    client_request_token: r.client_request_token,
                    description: r.description,
                    kms_key_id: r.kms_key_id,
                    value: Value::from_fields(r.secret_string, r.secret_binary)?,
                })
                .await?;
            Ok(Response::new(pb::UpdateSecretResponse {
                arn: written.arn,
                name: written.name,
                version_id: written.version_id,
            }))
        })
        .await
    }

    async fn update_secret_version_stage(
        &self,
        request: Request<pb::UpdateSecretVersionStageRequest>,
    ) -> Reply<pb::UpdateSecretVersionStageResponse> {
        guarded(&self.gate, request, |r| async move {
            let Named { arn, name } = self.secrets.update_secret_version_stage(r.into()).await?;
            Ok(Response::new(pb::UpdateSecretVersionStageResponse {
                arn,
                name,
            }))
        })
        .await
    }

    async fn describe_secret(
        &self,
        request: Request<pb::DescribeSecretRequest>,
    ) -> Reply<pb::DescribeSecretResponse> {
        use super::guard::{admitted, finish};
        let (r, pass) = admitted(&self.gate, request).await?;
        let reply = async {
            let record = self.secrets.describe_secret(&r.secret_id).await?;
            let entry = list_entry(&self.secrets, &record, sees_errors(&pass, &record).await);
            Ok(Response::new(pb::DescribeSecretResponse {
                arn: entry.arn,
                name: entry.name,
                description: entry.description,
                kms_key_id: entry.kms_key_id,
                rotation_enabled: entry.rotation_enabled,
                last_changed_date: entry.last_changed_date,
                last_accessed_date: entry.last_accessed_date,
                deleted_date: entry.deleted_date,
                tags: entry.tags,
                version_ids_to_stages: entry.secret_versions_to_stages,
                created_date: entry.created_date,
                rotation_rules: entry.rotation_rules,
                last_rotated_date: entry.last_rotated_date,
                next_rotation_date: entry.next_rotation_date,
                rotator: entry.rotator,
                rotation_status: entry.rotation_status,
                primary_region: entry.primary_region,
                replication_status: entry.replication_status,
            }))
        }
        .await;
        finish(pass, reply).await
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Reply<pb::ListSecretsResponse> {
        use super::guard::{admitted, finish};
        let (r, pass) = admitted(&self.gate, request).await?;
        let reply = async {
            let (records, next) = self
                .secrets
                .list_records(ListOptions {
                    include_planned_deletion: r.include_planned_deletion,
                    max_results: r.max_results,
                    next_token: r.next_token,
                    filters: filters_in(r.filters),
                    sort_order: r.sort_order,
                })
                .await?;
            let mut secret_list = Vec::with_capacity(records.len());
            for record in &records {
                let readable = sees_errors(&pass, record).await;
                secret_list.push(list_entry(&self.secrets, record, readable));
            }
            Ok(Response::new(pb::ListSecretsResponse {
                secret_list,
                next_token: next.unwrap_or_default(),
            }))
        }
        .await;
        finish(pass, reply).await
    }

    async fn list_secret_version_ids(
        &self,
        request: Request<pb::ListSecretVersionIdsRequest>,
    ) -> Reply<pb::ListSecretVersionIdsResponse> {
        guarded(&self.gate, request, |r| async move {
            let (record, versions, next) = self
                .secrets
                .list_secret_version_ids(
                    &r.secret_id,
                    r.max_results,
                    &r.next_token,
                    r.include_deprecated,
                )
                .await?;
            Ok(Response::new(pb::ListSecretVersionIdsResponse {
                versions: versions
                    .into_iter()
                    .map(|v| pb::SecretVersionsListEntry {
                        version_id: v.version_id,
                        version_stages: v.stages,
                        last_accessed_date: v.last_accessed_day.map(Timestamp::secs),
                        created_date: v.created_at.secs(),
                        kms_key_ids: if v.kms_key_arn.is_empty() {
                            vec![]
                        } else {
                            vec![v.kms_key_arn]
                        },
                    })
                    .collect(),
                next_token: next.unwrap_or_default(),
                arn: record.arn,
                name: record.name,
            }))
        })
        .await
    }

    async fn delete_secret(
        &self,
        request: Request<pb::DeleteSecretRequest>,
    ) -> Reply<pb::DeleteSecretResponse> {
        guarded(&self.gate, request, |r| async move {
            let Deleted {
                secret: Named { arn, name },
                deletion_date,
            } = self.secrets.delete_secret(r.into()).await?;
            Ok(Response::new(pb::DeleteSecretResponse {
                arn,
                name,
                deletion_date: deletion_date.secs(),
            }))
        })
        .await
    }

    async fn restore_secret(
        &self,
        request: Request<pb::RestoreSecretRequest>,
    ) -> Reply<pb::RestoreSecretResponse> {
        guarded(&self.gate, request, |r| async move {
            let Named { arn, name } = self.secrets.restore_secret(&r.secret_id).await?;
            Ok(Response::new(pb::RestoreSecretResponse { arn, name }))
        })
        .await
    }

    async fn tag_resource(
        &self,
        request: Request<pb::TagResourceRequest>,
    ) -> Reply<pb::TagResourceResponse> {
        guarded(&self.gate, request, |r| async move {
            self.secrets
                .tag_resource(&r.secret_id, tags_in(r.tags))
                .await?;
            Ok(Response::new(pb::TagResourceResponse {}))
        })
        .await
    }

    async fn untag_resource(
        &self,
        request: Request<pb::UntagResourceRequest>,
    ) -> Reply<pb::UntagResourceResponse> {
        guarded(&self.gate, request, |r| async move {
            self.secrets
                .untag_resource(&r.secret_id, r.tag_keys)
                .await?;
            Ok(Response::new(pb::UntagResourceResponse {}))
        })
        .await
    }

    async fn get_random_password(
        &self,
        request: Request<pb::GetRandomPasswordRequest>,
    ) -> Reply<pb::GetRandomPasswordResponse> {
        guarded(&self.gate, request, |r| async move {
            let password = self
                .secrets
                .get_random_password(PasswordOptions {
                    password_length: r.password_length,
                    exclude_characters: r.exclude_characters,
                    exclude_numbers: r.exclude_numbers,
                    exclude_punctuation: r.exclude_punctuation,
                    exclude_uppercase: r.exclude_uppercase,
                    exclude_lowercase: r.exclude_lowercase,
                    include_space: r.include_space,
                    require_each_included_type: r.require_each_included_type,
                })
                .await?;
            Ok(Response::new(pb::GetRandomPasswordResponse {
                random_password: String::from_utf8_lossy(password.expose()).into_owned(),
            }))
        })
        .await
    }

    async fn rotate_secret(
        &self,
        request: Request<pb::RotateSecretRequest>,
    ) -> Reply<pb::RotateSecretResponse> {
        use super::guard::{admitted, contended, finish};
        let (r, pass) = admitted(&self.gate, request).await?;
        let reply = async {
            let rotator = r.rotator.map(super::rotation::rotator_in).transpose()?;
            // The rotation will read these with the server's authority: the caller must be
            // allowed to read them itself (no confused deputy).
            for other in self
                .secrets
                .secrets_a_rotation_reads(&r.secret_id, rotator.as_ref())
                .await?
            {
                let read = Access::new("secretsmanager:GetSecretValue", Target::Secret(&other))
                    .version("", "AWSCURRENT");
                pass.on_behalf(read).await?;
            }
            let RotationAnswer {
                secret: Named { arn, name },
                version_id,
            } = contended(|| async {
                // The write alone runs again after losing a race to another node: the
                // on-behalf decisions above stand, and are audited once.
                let request = RotateRequest {
                    secret_id: r.secret_id.clone(),
                    client_request_token: r.client_request_token.clone(),
                    rules: r.rotation_rules.clone().map(super::rotation::rules_in),
                    rotator: rotator.clone(),
                    rotate_immediately: r.rotate_immediately.unwrap_or(true),
                };
                Ok::<_, tonic::Status>(self.secrets.rotate_secret(request).await?)
            })
            .await?;
            Ok(Response::new(pb::RotateSecretResponse {
                arn,
                name,
                version_id: version_id.unwrap_or_default(),
            }))
        }
        .await;
        finish(pass, reply).await
    }

    async fn cancel_rotate_secret(
        &self,
        request: Request<pb::CancelRotateSecretRequest>,
    ) -> Reply<pb::CancelRotateSecretResponse> {
        guarded(&self.gate, request, |r| async move {
            let RotationAnswer {
                secret: Named { arn, name },
                version_id,
            } = self.secrets.cancel_rotate_secret(&r.secret_id).await?;
            Ok(Response::new(pb::CancelRotateSecretResponse {
                arn,
                name,
                version_id: version_id.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn put_resource_policy(
        &self,
        request: Request<pb::PutResourcePolicyRequest>,
    ) -> Reply<pb::PutResourcePolicyResponse> {
        guarded(&self.gate, request, |r| async move {
            let secret = self
                .secrets
                .put_resource_policy(
                    &r.secret_id,
                    r.resource_policy,
                    r.block_public_policy.unwrap_or(false),
                )
                .await?;
            Ok(Response::new(pb::PutResourcePolicyResponse {
                arn: secret.arn,
                name: secret.name,
            }))
        })
        .await
    }

    async fn get_resource_policy(
        &self,
        request: Request<pb::GetResourcePolicyRequest>,
    ) -> Reply<pb::GetResourcePolicyResponse> {
        guarded(&self.gate, request, |r| async move {
            let (secret, resource_policy) = self.secrets.get_resource_policy(&r.secret_id).await?;
            Ok(Response::new(pb::GetResourcePolicyResponse {
                arn: secret.arn,
                name: secret.name,
                resource_policy,
            }))
        })
        .await
    }

    async fn delete_resource_policy(
        &self,
        request: Request<pb::DeleteResourcePolicyRequest>,
    ) -> Reply<pb::DeleteResourcePolicyResponse> {
        guarded(&self.gate, request, |r| async move {
            let secret = self.secrets.delete_resource_policy(&r.secret_id).await?;
            Ok(Response::new(pb::DeleteResourcePolicyResponse {
                arn: secret.arn,
                name: secret.name,
            }))
        })
        .await
    }

    async fn replicate_secret_to_regions(
        &self,
        request: Request<pb::ReplicateSecretToRegionsRequest>,
    ) -> Reply<pb::ReplicateSecretToRegionsResponse> {
        guarded(&self.gate, request, |r| async move {
            let (arn, replicas) = self
                .secrets
                .replicate_to_regions(
                    &r.secret_id,
                    regions_in(r.add_replica_regions),
                    r.force_overwrite_replica_secret,
                )
                .await?;
            Ok(Response::new(pb::ReplicateSecretToRegionsResponse {
                arn,
                replication_status: replication_out(replicas),
            }))
        })
        .await
    }

    async fn remove_regions_from_replication(
        &self,
        request: Request<pb::RemoveRegionsFromReplicationRequest>,
    ) -> Reply<pb::RemoveRegionsFromReplicationResponse> {
        guarded(&self.gate, request, |r| async move {
            let (arn, replicas) = self
                .secrets
                .remove_regions(&r.secret_id, r.remove_replica_regions)
                .await?;
            Ok(Response::new(pb::RemoveRegionsFromReplicationResponse {
                arn,
                replication_status: replication_out(replicas),
            }))
        })
        .await
    }

    async fn stop_replication_to_replica(
        &self,
        request: Request<pb::StopReplicationToReplicaRequest>,
    ) -> Reply<pb::StopReplicationToReplicaResponse> {
        guarded(&self.gate, request, |r| async move {
            let arn = self.secrets.stop_replication(&r.secret_id).await?;
            Ok(Response::new(pb::StopReplicationToReplicaResponse { arn }))
        })
        .await
    }

    async fn validate_resource_policy(
        &self,
        request: Request<pb::ValidateResourcePolicyRequest>,
    ) -> Reply<pb::ValidateResourcePolicyResponse> {
        guarded(&self.gate, request, |r| async move {
            let validation = self
                .secrets
                .validate_resource_policy(r.secret_id.as_deref(), &r.resource_policy)
                .await?;
            Ok(Response::new(pb::ValidateResourcePolicyResponse {
                policy_validation_passed: validation.passed,
                validation_errors: validation
                    .errors
                    .into_iter()
                    .map(|e| pb::ValidationErrorsEntry {
                        check_name: e.check_name.into(),
                        error_message: e.message,
                    })
                    .collect(),
            }))
        })
        .await
    }
}
