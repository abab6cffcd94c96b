//! `KeyManagementService` handlers: convert the request, call the domain, convert back.

use super::guard::guarded;
use super::pb::{self, key_management_service_server::KeyManagementService};
use crate::access::Gate;
use crate::backend::KeyProtection;
use crate::service::kms::KmsService;
use crate::service::kms::names::Arns;
use crate::store::{AliasRecord, KeyRecord, Tag};
use crate::time::Timestamp;
use std::sync::Arc;
use tonic::{Request, Response, Status};

const ALGORITHM: &str = "SYMMETRIC_DEFAULT";

pub struct KmsApi {
    kms: Arc<KmsService>,
    gate: Arc<Gate>,
}

impl KmsApi {
    pub fn new(kms: Arc<KmsService>, gate: Arc<Gate>) -> Self {
        Self { kms, gate }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn key_metadata(arns: &Arns, key: &KeyRecord) -> pb::KeyMetadata {
    pb::KeyMetadata {
        key_id: key.key_id.clone(),
        arn: arns.key(&key.key_id),
        creation_date: key.created_at.secs(),
        enabled: key.state == crate::store::KeyState::Enabled,
        description: key.description.clone(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        key_state: key.state.as_str().into(),
        deletion_date: key.deletion_date.map(Timestamp::secs),
        pending_deletion_window_in_days: key.pending_window_days,
        key_manager: "CUSTOMER".into(),
        key_spec: "SYMMETRIC_DEFAULT".into(),
        encryption_algorithms: vec![ALGORITHM.into()],
        origin: key.origin.clone(),
        current_key_version: key.current().map_or(0, |v| v.version),
        last_rotation_date: key
            .versions
            .iter()
            .skip(1)
            .next_back()
            .map(|v| v.created_at.secs()),
        tags: key.tags.iter().map(key_tag_out).collect(),
        tpm_key_mode: key.protection.mode.clone(),
        tpm_pcrs: key.protection.pcrs.iter().map(|&p| u32::from(p)).collect(),
        expiration_model: key
            .import
            .as_ref()
            .map(|i| i.expiration_model.clone())
            .unwrap_or_default(),
        valid_to: key
            .import
            .as_ref()
            .and_then(|i| i.valid_to)
            .map(Timestamp::secs),
        aws_account_id: arns.account_id.clone(),
        multi_region: false,
        customer_master_key_spec: "SYMMETRIC_DEFAULT".into(),
    }
}

fn key_tag_in(t: pb::Tag) -> Tag {
    Tag {
        key: t.tag_key,
        value: t.tag_value,
    }
}

fn key_tag_out(t: &Tag) -> pb::Tag {
    pb::Tag {
        tag_key: t.key.clone(),
        tag_value: t.value.clone(),
    }
}

fn alias_entry(arns: &Arns, alias: AliasRecord) -> pb::AliasListEntry {
    pb::AliasListEntry {
        alias_arn: arns.alias(&alias.alias_name),
        alias_name: alias.alias_name,
        target_key_id: alias.target_key_id,
        creation_date: alias.created_at.secs(),
        last_updated_date: alias.updated_at.secs(),
    }
}

#[tonic::async_trait]
impl KeyManagementService for KmsApi {
    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Reply<pb::CreateKeyResponse> {
        guarded(&self.gate, request, |r| async move {
            let new = crate::service::kms::NewKey {
                description: r.description,
                key_usage: r.key_usage,
                key_spec: r.key_spec,
                tags: r.tags.into_iter().map(key_tag_in).collect(),
                protection: KeyProtection {
                    mode: r.tpm_key_mode,
                    pcrs: r
                        .tpm_pcrs
                        .into_iter()
                        .map(|p| u8::try_from(p).unwrap_or(u8::MAX))
                        .collect(),
                },
                origin: r.origin,
            };
            let key = self.kms.create_key(new).await?;
            Ok(Response::new(pb::CreateKeyResponse {
                key_metadata: Some(key_metadata(self.kms.arns(), &key)),
            }))
        })
        .await
    }

    async fn describe_key(
        &self,
        request: Request<pb::DescribeKeyRequest>,
    ) -> Reply<pb::DescribeKeyResponse> {
        guarded(&self.gate, request, |r| async move {
            let key = self.kms.describe_key(&r.key_id).await?;
            Ok(Response::new(pb::DescribeKeyResponse {
                key_metadata: Some(key_metadata(self.kms.arns(), &key)),
            }))
        })
        .await
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Reply<pb::ListKeysResponse> {
        guarded(&self.gate, request, |r| async move {
            let page = self.kms.list_keys(r.limit, &r.marker).await?;
            let arns = self.kms.arns();
            Ok(Response::new(pb::ListKeysResponse {
                keys: page
                    .items
                    .iter()
                    .map(|k| pb::KeyListEntry {
                        key_id: k.key_id.clone(),
                        key_arn: arns.key(&k.key_id),
                    })
                    .collect(),
                truncated: page.next_marker.is_some(),
                next_marker: page.next_marker.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn enable_key(
        &self,
        request: Request<pb::EnableKeyRequest>,
    ) -> Reply<pb::EnableKeyResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms.enable_key(&r.key_id).await?;
            Ok(Response::new(pb::EnableKeyResponse {}))
        })
        .await
    }

    async fn disable_key(
        &self,
        request: Request<pb::DisableKeyRequest>,
    ) -> Reply<pb::DisableKeyResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms.disable_key(&r.key_id).await?;
            Ok(Response::new(pb::DisableKeyResponse {}))
        })
        .await
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<pb::ScheduleKeyDeletionRequest>,
    ) -> Reply<pb::ScheduleKeyDeletionResponse> {
        guarded(&self.gate, request, |r| async move {
            let key = self
                .kms
                .schedule_key_deletion(&r.key_id, r.pending_window_in_days)
                .await?;
            Ok(Response::new(pb::ScheduleKeyDeletionResponse {
                key_id: self.kms.arns().key(&key.key_id),
                deletion_date: key.deletion_date.map_or(0, Timestamp::secs),
                key_state: key.state.as_str().into(),
                pending_window_in_days: key.pending_window_days.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn cancel_key_deletion(
        &self,
        request: Request<pb::CancelKeyDeletionRequest>,
    ) -> Reply<pb::CancelKeyDeletionResponse> {
        guarded(&self.gate, request, |r| async move {
            let key = self.kms.cancel_key_deletion(&r.key_id).await?;
            Ok(Response::new(pb::CancelKeyDeletionResponse {
                key_id: self.kms.arns().key(&key.key_id),
            }))
        })
        .await
    }

    async fn rotate_key_on_demand(
        &self,
        request: Request<pb::RotateKeyOnDemandRequest>,
    ) -> Reply<pb::RotateKeyOnDemandResponse> {
        guarded(&self.gate, request, |r| async move {
            let (key, key_version) = self.kms.rotate_key_on_demand(&r.key_id).await?;
            Ok(Response::new(pb::RotateKeyOnDemandResponse {
                key_id: key.key_id,
                key_version,
            }))
        })
        .await
    }

    async fn enable_key_rotation(
        &self,
        request: Request<pb::EnableKeyRotationRequest>,
    ) -> Reply<pb::EnableKeyRotationResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms
                .enable_key_rotation(&r.key_id, r.rotation_period_in_days)
                .await?;
            Ok(Response::new(pb::EnableKeyRotationResponse {}))
        })
        .await
    }

    async fn disable_key_rotation(
        &self,
        request: Request<pb::DisableKeyRotationRequest>,
    ) -> Reply<pb::DisableKeyRotationResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms.disable_key_rotation(&r.key_id).await?;
            Ok(Response::new(pb::DisableKeyRotationResponse {}))
        })
        .await
    }

    async fn get_key_rotation_status(
        &self,
        request: Request<pb::GetKeyRotationStatusRequest>,
    ) -> Reply<pb::GetKeyRotationStatusResponse> {
        guarded(&self.gate, request, |r| async move {
            let status = self.kms.key_rotation_status(&r.key_id).await?;
            Ok(Response::new(pb::GetKeyRotationStatusResponse {
                key_rotation_enabled: status.enabled,
                key_id: self.kms.arns().key(&status.key_id),
                rotation_period_in_days: status.period_days,
                next_rotation_date: status.next_rotation_at.map(Timestamp::secs),
            }))
        })
        .await
    }

    async fn list_key_rotations(
        &self,
        request: Request<pb::ListKeyRotationsRequest>,
    ) -> Reply<pb::ListKeyRotationsResponse> {
        guarded(&self.gate, request, |r| async move {
            let (key, page) = self
                .kms
                .list_key_rotations(&r.key_id, r.limit, &r.marker)
                .await?;
            Ok(Response::new(pb::ListKeyRotationsResponse {
                rotations: page
                    .items
                    .into_iter()
                    .map(|v| pb::RotationsListEntry {
                        key_id: key.key_id.clone(),
                        rotation_date: v.created_at.secs(),
                        rotation_type: if v.on_demand {
                            "ON_DEMAND"
                        } else {
                            "AUTOMATIC"
                        }
                        .into(),
                        key_version: v.version,
                    })
                    .collect(),
                truncated: page.next_marker.is_some(),
                next_marker: page.next_marker.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn create_alias(
        &self,
        request: Request<pb::CreateAliasRequest>,
    ) -> Reply<pb::CreateAliasResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms
                .create_alias(&r.alias_name, &r.target_key_id)
                .await?;
            Ok(Response::new(pb::CreateAliasResponse {}))
        })
        .await
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Reply<pb::DeleteAliasResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms.delete_alias(&r.alias_name).await?;
            Ok(Response::new(pb::DeleteAliasResponse {}))
        })
        .await
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Reply<pb::ListAliasesResponse> {
        guarded(&self.gate, request, |r| async move {
            let page = self.kms.list_aliases(&r.key_id, r.limit, &r.marker).await?;
            let arns = self.kms.arns();
            Ok(Response::new(pb::ListAliasesResponse {
                aliases: page
                    .items
                    .into_iter()
                    .map(|a| alias_entry(arns, a))
                    .collect(),
                truncated: page.next_marker.is_some(),
                next_marker: page.next_marker.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn generate_data_key(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Reply<pb::GenerateDataKeyResponse> {
        guarded(&self.gate, request, |r| async move {
            let key = self.kms.generate_data_key(r.try_into()?).await?;
            Ok(Response::new(pb::GenerateDataKeyResponse {
                ciphertext_blob: key.ciphertext_blob,
                // prost owns the bytes from here on and does not zeroize them: the price of the
                // protobuf stack. The copy lives until the response is written.
                plaintext: key.plaintext.into_vec(),
                key_id: key.key_arn,
            }))
        })
        .await
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<pb::GenerateDataKeyWithoutPlaintextRequest>,
    ) -> Reply<pb::GenerateDataKeyWithoutPlaintextResponse> {
        guarded(&self.gate, request, |r| async move {
            let key = self.kms.generate_data_key(r.try_into()?).await?;
            Ok(Response::new(pb::GenerateDataKeyWithoutPlaintextResponse {
                ciphertext_blob: key.ciphertext_blob,
                key_id: key.key_arn,
            }))
        })
        .await
    }

    async fn encrypt(&self, request: Request<pb::EncryptRequest>) -> Reply<pb::EncryptResponse> {
        guarded(&self.gate, request, |r| async move {
            let sealed = self.kms.encrypt(r.try_into()?).await?;
            Ok(Response::new(pb::EncryptResponse {
                ciphertext_blob: sealed.ciphertext_blob,
                key_id: sealed.key_arn,
                encryption_algorithm: ALGORITHM.into(),
            }))
        })
        .await
    }

    async fn decrypt(&self, request: Request<pb::DecryptRequest>) -> Reply<pb::DecryptResponse> {
        guarded(&self.gate, request, |r| async move {
            let opened = self.kms.decrypt(r.try_into()?).await?;
            Ok(Response::new(pb::DecryptResponse {
                key_id: opened.key_arn,
                plaintext: opened.plaintext.into_vec(),
                encryption_algorithm: ALGORITHM.into(),
            }))
        })
        .await
    }

    async fn re_encrypt(
        &self,
        request: Request<pb::ReEncryptRequest>,
    ) -> Reply<pb::ReEncryptResponse> {
        guarded(&self.gate, request, |r| async move {
            let resealed = self.kms.re_encrypt(r.try_into()?).await?;
            Ok(Response::new(pb::ReEncryptResponse {
                ciphertext_blob: resealed.ciphertext_blob,
                source_key_id: resealed.source_key_arn,
                key_id: resealed.key_arn,
            }))
        })
        .await
    }

    async fn generate_random(
        &self,
        request: Request<pb::GenerateRandomRequest>,
    ) -> Reply<pb::GenerateRandomResponse> {
        guarded(&self.gate, request, |r| async move {
            let bytes = self.kms.generate_random(r.number_of_bytes).await?;
            Ok(Response::new(pb::GenerateRandomResponse {
                plaintext: bytes.into_vec(),
            }))
        })
        .await
    }

    async fn put_key_policy(
        &self,
        request: Request<pb::PutKeyPolicyRequest>,
    ) -> Reply<pb::PutKeyPolicyResponse> {
        use super::guard::{admitted, finish};
        let (r, pass) = admitted(&self.gate, request).await?;
        // The lockout check needs the caller's identity policies: the gate's, through the pass.
        let keeps_access = |policy: &str| pass.keeps_key_policy_access(policy);
        let reply = self
            .kms
            .put_key_policy(
                &r.key_id,
                &r.policy_name,
                r.policy,
                (!r.bypass_policy_lockout_safety_check).then_some(&keeps_access as _),
            )
            .await
            .map(|()| Response::new(pb::PutKeyPolicyResponse {}))
            .map_err(Status::from);
        finish(pass, reply).await
    }

    async fn get_key_policy(
        &self,
        request: Request<pb::GetKeyPolicyRequest>,
    ) -> Reply<pb::GetKeyPolicyResponse> {
        guarded(&self.gate, request, |r| async move {
            let policy = self.kms.get_key_policy(&r.key_id, &r.policy_name).await?;
            Ok(Response::new(pb::GetKeyPolicyResponse {
                policy,
                policy_name: crate::service::kms::policy::DEFAULT_POLICY_NAME.into(),
            }))
        })
        .await
    }

    async fn get_parameters_for_import(
        &self,
        request: Request<pb::GetParametersForImportRequest>,
    ) -> Reply<pb::GetParametersForImportResponse> {
        guarded(&self.gate, request, |r| async move {
            let out = self
                .kms
                .get_parameters_for_import(&r.key_id, &r.wrapping_algorithm, &r.wrapping_key_spec)
                .await?;
            Ok(Response::new(pb::GetParametersForImportResponse {
                key_id: out.key_arn,
                import_token: out.import_token,
                public_key: out.public_key,
                parameters_valid_to: out.valid_to.secs(),
            }))
        })
        .await
    }

    async fn import_key_material(
        &self,
        request: Request<pb::ImportKeyMaterialRequest>,
    ) -> Reply<pb::ImportKeyMaterialResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms.import_key_material(r.into()).await?;
            Ok(Response::new(pb::ImportKeyMaterialResponse {}))
        })
        .await
    }

    async fn delete_imported_key_material(
        &self,
        request: Request<pb::DeleteImportedKeyMaterialRequest>,
    ) -> Reply<pb::DeleteImportedKeyMaterialResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms.delete_imported_key_material(&r.key_id).await?;
            Ok(Response::new(pb::DeleteImportedKeyMaterialResponse {}))
        })
        .await
    }

    async fn tag_resource(
        &self,
        request: Request<pb::KeyTagResourceRequest>,
    ) -> Reply<pb::KeyTagResourceResponse> {
        guarded(&self.gate, request, |r| async move {
            let tags = r.tags.into_iter().map(key_tag_in).collect();
            self.kms.tag_key(&r.key_id, tags).await?;
            Ok(Response::new(pb::KeyTagResourceResponse {}))
        })
        .await
    }

    async fn untag_resource(
        &self,
        request: Request<pb::KeyUntagResourceRequest>,
    ) -> Reply<pb::KeyUntagResourceResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms.untag_key(&r.key_id, r.tag_keys).await?;
            Ok(Response::new(pb::KeyUntagResourceResponse {}))
        })
        .await
    }

    async fn list_resource_tags(
        &self,
        request: Request<pb::ListResourceTagsRequest>,
    ) -> Reply<pb::ListResourceTagsResponse> {
        guarded(&self.gate, request, |r| async move {
            let page = self
                .kms
                .list_key_tags(&r.key_id, r.limit, &r.marker)
                .await?;
            Ok(Response::new(pb::ListResourceTagsResponse {
                tags: page.items.iter().map(key_tag_out).collect(),
                truncated: page.next_marker.is_some(),
                next_marker: page.next_marker.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn update_key_description(
        &self,
        request: Request<pb::UpdateKeyDescriptionRequest>,
    ) -> Reply<pb::UpdateKeyDescriptionResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms
                .update_key_description(&r.key_id, &r.description)
                .await?;
            Ok(Response::new(pb::UpdateKeyDescriptionResponse {}))
        })
        .await
    }

    async fn update_alias(
        &self,
        request: Request<pb::UpdateAliasRequest>,
    ) -> Reply<pb::UpdateAliasResponse> {
        guarded(&self.gate, request, |r| async move {
            self.kms
                .update_alias(&r.alias_name, &r.target_key_id)
                .await?;
            Ok(Response::new(pb::UpdateAliasResponse {}))
        })
        .await
    }

    async fn list_key_policies(
        &self,
        request: Request<pb::ListKeyPoliciesRequest>,
    ) -> Reply<pb::ListKeyPoliciesResponse> {
        guarded(&self.gate, request, |r| async move {
            let policy_names = self.kms.list_key_policies(&r.key_id).await?;
            Ok(Response::new(pb::ListKeyPoliciesResponse {
                policy_names,
                next_marker: String::new(),
                truncated: false,
            }))
        })
        .await
    }
}
