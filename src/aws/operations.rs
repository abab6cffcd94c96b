//! Every operation the AWS front door answers: the `X-Amz-Target` it arrives with, the IAM
//! action its refusals are audited under, and the gRPC handler that does the work. The
//! handlers are the gRPC services' own, so the access gate, the audit record, limits and every
//! business rule are the same on both front doors.

use super::shapes::{self, Service};
use super::wipe::Document;
use crate::access::Caller;
use crate::api::kms::KmsApi;
use crate::api::pb::{
    self, key_management_service_server::KeyManagementService,
    secrets_manager_service_server::SecretsManagerService,
};
use crate::api::secrets::SecretsApi;
use std::future::Future;
use tonic::{Request, Response, Status};

pub struct Handlers {
    pub kms: KmsApi,
    pub secrets: SecretsApi,
}

/// One operation, found from its target.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub service: Service,
    /// `GetSecretValue`.
    pub name: &'static str,
    /// `secretsmanager:GetSecretValue`.
    pub action: &'static str,
}

/// Deserializes the request, runs the handler with the caller attached, serializes the reply.
/// The documents on the way are zeroized when dropped; the message is read from a borrowed
/// document so that members it ignores are zeroized too.
async fn call<Req, Resp, F, Fut>(
    body: Document,
    caller: Caller,
    service: Service,
    handler: F,
) -> Result<Document, Status>
where
    Req: serde::de::DeserializeOwned,
    Resp: serde::Serialize,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let document = Document::new(shapes::request_in(body.take()));
    let message =
        Req::deserialize(&*document).map_err(|e| super::errors::serialization(&e.to_string()))?;
    drop(document);
    let mut request = Request::new(message);
    request.extensions_mut().insert(caller);
    let reply = handler(request).await?.into_inner();
    let json =
        Document::new(serde_json::to_value(&reply).map_err(|e| Status::internal(e.to_string()))?);
    Ok(Document::new(shapes::response_out(json.take(), service)))
}

macro_rules! action {
    (Kms, $name:literal) => {
        concat!("kms:", $name)
    };
    (SecretsManager, $name:literal) => {
        concat!("secretsmanager:", $name)
    };
}

macro_rules! operations {
    ($($service:ident $name:literal => $api:ident.$method:ident($req:ident);)+) => {
        const OPERATIONS: &[Operation] = &[$(Operation {
            service: Service::$service,
            name: $name,
            action: action!($service, $name),
        },)+];

        impl Handlers {
            /// Runs `op` (from `find`) on `body` for `caller`.
            pub async fn run(&self, op: Operation, body: Document, caller: Caller) -> Result<Document, Status> {
                match (op.service, op.name) {
                    $((Service::$service, $name) => {
                        call::<pb::$req, _, _, _>(body, caller, op.service, |r| self.$api.$method(r)).await
                    })+
                    _ => Err(super::errors::unknown_operation(op.name)),
                }
            }
        }
    };
}

operations! {
    Kms "CreateKey" => kms.create_key(CreateKeyRequest);
    Kms "DescribeKey" => kms.describe_key(DescribeKeyRequest);
    Kms "ListKeys" => kms.list_keys(ListKeysRequest);
    Kms "EnableKey" => kms.enable_key(EnableKeyRequest);
    Kms "DisableKey" => kms.disable_key(DisableKeyRequest);
    Kms "ScheduleKeyDeletion" => kms.schedule_key_deletion(ScheduleKeyDeletionRequest);
    Kms "CancelKeyDeletion" => kms.cancel_key_deletion(CancelKeyDeletionRequest);
    Kms "RotateKeyOnDemand" => kms.rotate_key_on_demand(RotateKeyOnDemandRequest);
    Kms "ListKeyRotations" => kms.list_key_rotations(ListKeyRotationsRequest);
    Kms "EnableKeyRotation" => kms.enable_key_rotation(EnableKeyRotationRequest);
    Kms "DisableKeyRotation" => kms.disable_key_rotation(DisableKeyRotationRequest);
    Kms "GetKeyRotationStatus" => kms.get_key_rotation_status(GetKeyRotationStatusRequest);
    Kms "CreateAlias" => kms.create_alias(CreateAliasRequest);
    Kms "DeleteAlias" => kms.delete_alias(DeleteAliasRequest);
    Kms "UpdateAlias" => kms.update_alias(UpdateAliasRequest);
    Kms "TagResource" => kms.tag_resource(KeyTagResourceRequest);
    Kms "UntagResource" => kms.untag_resource(KeyUntagResourceRequest);
    Kms "ListResourceTags" => kms.list_resource_tags(ListResourceTagsRequest);
    Kms "UpdateKeyDescription" => kms.update_key_description(UpdateKeyDescriptionRequest);
    Kms "ListKeyPolicies" => kms.list_key_policies(ListKeyPoliciesRequest);
    Kms "ListAliases" => kms.list_aliases(ListAliasesRequest);
    Kms "GenerateDataKey" => kms.generate_data_key(GenerateDataKeyRequest);
    Kms "GenerateDataKeyWithoutPlaintext" => kms.generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest);
    Kms "Encrypt" => kms.encrypt(EncryptRequest);
    Kms "Decrypt" => kms.decrypt(DecryptRequest);
    Kms "ReEncrypt" => kms.re_encrypt(ReEncryptRequest);
    Kms "GenerateRandom" => kms.generate_random(GenerateRandomRequest);
    Kms "PutKeyPolicy" => kms.put_key_policy(PutKeyPolicyRequest);
    Kms "GetKeyPolicy" => kms.get_key_policy(GetKeyPolicyRequest);
    Kms "GetParametersForImport" => kms.get_parameters_for_import(GetParametersForImportRequest);
    Kms "ImportKeyMaterial" => kms.import_key_material(ImportKeyMaterialRequest);
    Kms "DeleteImportedKeyMaterial" => kms.delete_imported_key_material(DeleteImportedKeyMaterialRequest);
    SecretsManager "CreateSecret" => secrets.create_secret(CreateSecretRequest);
    SecretsManager "GetSecretValue" => secrets.get_secret_value(GetSecretValueRequest);
    SecretsManager "BatchGetSecretValue" => secrets.batch_get_secret_value(BatchGetSecretValueRequest);
    SecretsManager "PutSecretValue" => secrets.put_secret_value(PutSecretValueRequest);
    SecretsManager "UpdateSecret" => secrets.update_secret(UpdateSecretRequest);
    SecretsManager "UpdateSecretVersionStage" => secrets.update_secret_version_stage(UpdateSecretVersionStageRequest);
    SecretsManager "DescribeSecret" => secrets.describe_secret(DescribeSecretRequest);
    SecretsManager "ListSecrets" => secrets.list_secrets(ListSecretsRequest);
    SecretsManager "ListSecretVersionIds" => secrets.list_secret_version_ids(ListSecretVersionIdsRequest);
    SecretsManager "DeleteSecret" => secrets.delete_secret(DeleteSecretRequest);
    SecretsManager "RestoreSecret" => secrets.restore_secret(RestoreSecretRequest);
    SecretsManager "TagResource" => secrets.tag_resource(TagResourceRequest);
    SecretsManager "UntagResource" => secrets.untag_resource(UntagResourceRequest);
    SecretsManager "GetRandomPassword" => secrets.get_random_password(GetRandomPasswordRequest);
    SecretsManager "RotateSecret" => secrets.rotate_secret(RotateSecretRequest);
    SecretsManager "CancelRotateSecret" => secrets.cancel_rotate_secret(CancelRotateSecretRequest);
    SecretsManager "PutResourcePolicy" => secrets.put_resource_policy(PutResourcePolicyRequest);
    SecretsManager "GetResourcePolicy" => secrets.get_resource_policy(GetResourcePolicyRequest);
    SecretsManager "DeleteResourcePolicy" => secrets.delete_resource_policy(DeleteResourcePolicyRequest);
    SecretsManager "ValidateResourcePolicy" => secrets.validate_resource_policy(ValidateResourcePolicyRequest);
    SecretsManager "ReplicateSecretToRegions" => secrets.replicate_secret_to_regions(ReplicateSecretToRegionsRequest);
    SecretsManager "RemoveRegionsFromReplication" => secrets.remove_regions_from_replication(RemoveRegionsFromReplicationRequest);
    SecretsManager "StopReplicationToReplica" => secrets.stop_replication_to_replica(StopReplicationToReplicaRequest);
}

/// The operation an `X-Amz-Target` names: `secretsmanager.GetSecretValue`,
/// `TrentService.Decrypt` (KMS's target prefix).
pub fn find(target: &str) -> Option<Operation> {
    let (prefix, name) = target.split_once('.')?;
    let service = match prefix {
        "secretsmanager" => Service::SecretsManager,
        "TrentService" => Service::Kms,
        _ => return None,
    };
    OPERATIONS
        .iter()
        .find(|op| op.service == service && op.name == name)
        .copied()
}
