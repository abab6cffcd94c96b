//! The gRPC side of the access gate: what each RPC asks for (its IAM action and resource, in
//! one table of `Describe` impls), the caller's credentials from the TLS session and metadata,
//! and [`guarded`], which every handler's work runs inside.

use super::pb;
use super::status::{self, exception};
use crate::access::identity::Credentials;
use crate::access::{Access, Caller, Gate, GateError, Pass, Target};
use crate::outcome::Exception;
use crate::service::KmsError;
use crate::service::secrets::SecretsError;
use std::future::Future;
use tonic::{Code, Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

/// The permission a request needs.
pub trait Describe {
    fn access(&self) -> Access<'_>;
}

/// How often `work` runs again after losing a race to a writer on another node.
const CONTENDED_ATTEMPTS: u32 = 8;

/// Admits the request, runs `work`, audits the answer. The audit record is written before the
/// reply leaves; if it cannot be, the reply is an error (fail closed).
///
/// Work that lost a race to a writer on another node of a cluster (ABORTED: it wrote nothing)
/// runs again from the start, after a short random pause, so that racing nodes behave as
/// racing requests on one node do: each write lands, one after the other.
pub async fn guarded<Req, Resp, W, Fut>(gate: &Gate, request: Request<Req>, work: W) -> Reply<Resp>
where
    Req: Describe + Clone,
    W: Fn(Req) -> Fut,
    Fut: Future<Output = Reply<Resp>>,
{
    let (message, pass) = admitted(gate, request).await?;
    let reply = contended(|| work(message.clone())).await;
    finish(pass, reply).await
}

/// Runs `work` again, as [`guarded`] does, while it loses races to writers on other nodes
/// (ABORTED); for handlers that keep their [`Pass`] and retry only the part that writes.
pub async fn contended<T, W, Fut>(work: W) -> Result<T, Status>
where
    W: Fn() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut attempt = 1;
    loop {
        let reply = work().await;
        match &reply {
            Err(status) if status.code() == Code::Aborted && attempt < CONTENDED_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(jitter(attempt)).await;
            }
            _ => return reply,
        }
    }
}

/// Up to 2 ms per attempt so far: racing writers spread out instead of colliding again.
fn jitter(attempt: u32) -> std::time::Duration {
    let mut byte = [0u8; 1];
    let spread = getrandom::fill(&mut byte).map_or(128, |()| u64::from(byte[0]));
    std::time::Duration::from_micros(spread * 8 * u64::from(attempt))
}

/// The start of every handler: the caller, identifiers bounded, the gate's decision. Handlers
/// whose answer depends on what else the caller may do keep the [`Pass`] and call [`finish`]
/// themselves; the others use [`guarded`].
pub async fn admitted<Req: Describe>(
    gate: &Gate,
    request: Request<Req>,
) -> Result<(Req, Pass<'_>), Status> {
    let caller = caller(gate, &request);
    let message = request.into_inner();
    let access = message.access();
    // An unauthenticated caller is refused as such by the gate, which looks nothing up for it.
    if caller.principal.is_ok()
        && let Err(status) = bounded(&access)
    {
        gate.refuse_invalid(&caller, access, exception(&status), status.message())
            .await?;
        return Err(status);
    }
    let pass = gate.admit(&caller, access).await?;
    Ok((message, pass))
}

/// Refuses identifiers longer than any valid one before the gate resolves them, matches them
/// against policies or audits them: AWS's limits, defined once in the services.
fn bounded(access: &Access) -> Result<(), Status> {
    use crate::service::kms::names::{MAX_ALIAS_LEN, MAX_KEY_ID};
    use crate::service::secrets::limits::{MAX_LABEL, MAX_SECRET_ID, TOKEN_LEN};
    let kms = access.action.starts_with("kms:");
    let refuse = |field: &'static str, limit: usize| -> Status {
        let reason = format!("must be at most {limit} characters");
        if kms {
            KmsError::validation(field, reason).into()
        } else {
            SecretsError::invalid(field, reason).into()
        }
    };
    let targets = std::iter::once(access.target).chain(access.also.map(|(_, target)| target));
    for target in targets {
        match target {
            Target::Secret(id) if id.len() > MAX_SECRET_ID => {
                return Err(refuse("secret_id", MAX_SECRET_ID));
            }
            Target::Key(id) if id.len() > MAX_KEY_ID => return Err(refuse("key_id", MAX_KEY_ID)),
            Target::Alias(name) if name.len() > MAX_ALIAS_LEN => {
                return Err(refuse("alias_name", MAX_ALIAS_LEN));
            }
            Target::Secret(_) | Target::Key(_) | Target::Alias(_) => {}
            Target::All | Target::Ciphertext(_) => {}
        }
    }
    if access.version_id.len() > *TOKEN_LEN.end() {
        return Err(refuse("version_id", *TOKEN_LEN.end()));
    }
    if access.version_stage.len() > MAX_LABEL {
        return Err(refuse("version_stage", MAX_LABEL));
    }
    Ok(())
}

/// Audits the reply; an audit failure replaces it.
pub async fn finish<T>(pass: Pass<'_>, reply: Reply<T>) -> Reply<T> {
    if let Some(delay) = audit_delay() {
        tokio::time::sleep(delay).await;
    }
    pass.finish(reply.as_ref().err().map(exception)).await?;
    reply
}

/// For tests only: `KEYWARD_TEST_AUDIT_DELAY_MS` holds every request between its work and its
/// audit record, so a test can make its client give up in exactly that window and check that
/// the record is written anyway. Read once; unset in production.
fn audit_delay() -> Option<std::time::Duration> {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("KEYWARD_TEST_AUDIT_DELAY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(std::time::Duration::from_millis)
    })
}

/// The caller, from the TLS session's client certificate and the `authorization` metadata,
/// unless another front door (the AWS endpoint) has already authenticated it.
pub fn caller<T>(gate: &Gate, request: &Request<T>) -> Caller {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return caller.clone();
    }
    let certificates = request.peer_certs();
    let credentials = Credentials {
        authorization: request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        certificate: certificates
            .as_deref()
            .and_then(|c| c.first())
            .map(|c| c.as_ref()),
    };
    let source = request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    gate.authenticate(&credentials, source, "grpc")
}

impl From<GateError> for Status {
    fn from(err: GateError) -> Self {
        let (code, exception) = match &err {
            GateError::Unauthenticated(failure) => (Code::Unauthenticated, failure.exception()),
            GateError::Denied { .. } => (Code::PermissionDenied, Exception::AccessDenied),
            GateError::AuditUnavailable => (Code::Unavailable, Exception::InternalServiceError),
        };
        status::status(code, exception, err.to_string())
    }
}

macro_rules! describe {
    ($($ty:ident => |$r:ident| $access:expr;)+) => {
        $(impl Describe for pb::$ty {
            fn access(&self) -> Access<'_> {
                let $r = self;
                $access
            }
        })+
    };
}

const fn all(action: &'static str) -> Access<'static> {
    Access {
        action,
        target: Target::All,
        version_id: "",
        version_stage: "",
        encryption_context: None,
        also: None,
        also_context: None,
    }
}

describe! {
    // KMS
    CreateKeyRequest => |_r| all("kms:CreateKey");
    DescribeKeyRequest => |r| Access::new("kms:DescribeKey", Target::Key(&r.key_id));
    ListKeysRequest => |_r| all("kms:ListKeys");
    EnableKeyRequest => |r| Access::new("kms:EnableKey", Target::Key(&r.key_id));
    DisableKeyRequest => |r| Access::new("kms:DisableKey", Target::Key(&r.key_id));
    ScheduleKeyDeletionRequest => |r| Access::new("kms:ScheduleKeyDeletion", Target::Key(&r.key_id));
    CancelKeyDeletionRequest => |r| Access::new("kms:CancelKeyDeletion", Target::Key(&r.key_id));
    RotateKeyOnDemandRequest => |r| Access::new("kms:RotateKeyOnDemand", Target::Key(&r.key_id));
    ListKeyRotationsRequest => |r| Access::new("kms:ListKeyRotations", Target::Key(&r.key_id));
    EnableKeyRotationRequest => |r| Access::new("kms:EnableKeyRotation", Target::Key(&r.key_id));
    DisableKeyRotationRequest => |r| Access::new("kms:DisableKeyRotation", Target::Key(&r.key_id));
    GetKeyRotationStatusRequest => |r| Access::new("kms:GetKeyRotationStatus", Target::Key(&r.key_id));
    // As in AWS: the permission on the key and on the alias name, so policies can reserve names.
    CreateAliasRequest => |r| Access::new("kms:CreateAlias", Target::Key(&r.target_key_id))
        .also("kms:CreateAlias", Target::Alias(&r.alias_name));
    DeleteAliasRequest => |r| Access::new("kms:DeleteAlias", Target::Key(&r.alias_name))
        .also("kms:DeleteAlias", Target::Alias(&r.alias_name));
    ListAliasesRequest => |_r| all("kms:ListAliases");
    // As in AWS: UpdateAlias needs the permission on the alias and on the key it now names.
    UpdateAliasRequest => |r| Access::new("kms:UpdateAlias", Target::Key(&r.target_key_id))
        .also("kms:UpdateAlias", Target::Alias(&r.alias_name));
    KeyTagResourceRequest => |r| Access::new("kms:TagResource", Target::Key(&r.key_id));
    KeyUntagResourceRequest => |r| Access::new("kms:UntagResource", Target::Key(&r.key_id));
    ListResourceTagsRequest => |r| Access::new("kms:ListResourceTags", Target::Key(&r.key_id));
    UpdateKeyDescriptionRequest => |r| {
        Access::new("kms:UpdateKeyDescription", Target::Key(&r.key_id))
    };
    ListKeyPoliciesRequest => |r| Access::new("kms:ListKeyPolicies", Target::Key(&r.key_id));
    GenerateDataKeyRequest => |r| Access::new("kms:GenerateDataKey", Target::Key(&r.key_id))
        .context(&r.encryption_context);
    GenerateDataKeyWithoutPlaintextRequest => |r| {
        Access::new("kms:GenerateDataKeyWithoutPlaintext", Target::Key(&r.key_id))
            .context(&r.encryption_context)
    };
    EncryptRequest => |r| Access::new("kms:Encrypt", Target::Key(&r.key_id))
        .context(&r.encryption_context);
    DecryptRequest => |r| Access::new("kms:Decrypt", Target::Ciphertext(&r.ciphertext_blob))
        .context(&r.encryption_context);
    ReEncryptRequest => |r| {
        Access::new("kms:ReEncryptFrom", Target::Ciphertext(&r.ciphertext_blob))
            .context(&r.source_encryption_context)
            .also("kms:ReEncryptTo", Target::Key(&r.destination_key_id))
            .also_context(&r.destination_encryption_context)
    };
    GenerateRandomRequest => |_r| all("kms:GenerateRandom");
    PutKeyPolicyRequest => |r| Access::new("kms:PutKeyPolicy", Target::Key(&r.key_id));
    GetKeyPolicyRequest => |r| Access::new("kms:GetKeyPolicy", Target::Key(&r.key_id));
    GetParametersForImportRequest => |r| {
        Access::new("kms:GetParametersForImport", Target::Key(&r.key_id))
    };
    ImportKeyMaterialRequest => |r| Access::new("kms:ImportKeyMaterial", Target::Key(&r.key_id));
    DeleteImportedKeyMaterialRequest => |r| {
        Access::new("kms:DeleteImportedKeyMaterial", Target::Key(&r.key_id))
    };
    // Secrets Manager
    CreateSecretRequest => |r| {
        let access = Access::new("secretsmanager:CreateSecret", Target::Secret(&r.name));
        // As in AWS: creating with replicas is also replicating the secret.
        if r.add_replica_regions.is_empty() {
            access
        } else {
            access.also("secretsmanager:ReplicateSecretToRegions", Target::Secret(&r.name))
        }
    };
    GetSecretValueRequest => |r| {
        Access::new("secretsmanager:GetSecretValue", Target::Secret(&r.secret_id))
            .version(&r.version_id, &r.version_stage)
    };
    // Each secret is then decided as its GetSecretValue would be (`Pass::allows_secret_read`);
    // filters list secrets, so they need ListSecrets too.
    BatchGetSecretValueRequest => |r| match r.filters.is_empty() {
        true => all("secretsmanager:BatchGetSecretValue"),
        false => all("secretsmanager:BatchGetSecretValue")
            .also("secretsmanager:ListSecrets", Target::All),
    };
    PutSecretValueRequest => |r| Access::new("secretsmanager:PutSecretValue", Target::Secret(&r.secret_id));
    UpdateSecretRequest => |r| Access::new("secretsmanager:UpdateSecret", Target::Secret(&r.secret_id));
    UpdateSecretVersionStageRequest => |r| {
        Access::new("secretsmanager:UpdateSecretVersionStage", Target::Secret(&r.secret_id))
            .version("", &r.version_stage)
    };
    DescribeSecretRequest => |r| Access::new("secretsmanager:DescribeSecret", Target::Secret(&r.secret_id));
    ListSecretsRequest => |_r| all("secretsmanager:ListSecrets");
    ListSecretVersionIdsRequest => |r| {
        Access::new("secretsmanager:ListSecretVersionIds", Target::Secret(&r.secret_id))
    };
    DeleteSecretRequest => |r| Access::new("secretsmanager:DeleteSecret", Target::Secret(&r.secret_id));
    RestoreSecretRequest => |r| Access::new("secretsmanager:RestoreSecret", Target::Secret(&r.secret_id));
    TagResourceRequest => |r| Access::new("secretsmanager:TagResource", Target::Secret(&r.secret_id));
    UntagResourceRequest => |r| Access::new("secretsmanager:UntagResource", Target::Secret(&r.secret_id));
    GetRandomPasswordRequest => |_r| all("secretsmanager:GetRandomPassword");
    RotateSecretRequest => |r| Access::new("secretsmanager:RotateSecret", Target::Secret(&r.secret_id));
    CancelRotateSecretRequest => |r| {
        Access::new("secretsmanager:CancelRotateSecret", Target::Secret(&r.secret_id))
    };
    PutResourcePolicyRequest => |r| {
        Access::new("secretsmanager:PutResourcePolicy", Target::Secret(&r.secret_id))
    };
    GetResourcePolicyRequest => |r| {
        Access::new("secretsmanager:GetResourcePolicy", Target::Secret(&r.secret_id))
    };
    ReplicateSecretToRegionsRequest => |r| {
        Access::new("secretsmanager:ReplicateSecretToRegions", Target::Secret(&r.secret_id))
    };
    RemoveRegionsFromReplicationRequest => |r| {
        Access::new("secretsmanager:RemoveRegionsFromReplication", Target::Secret(&r.secret_id))
    };
    StopReplicationToReplicaRequest => |r| {
        Access::new("secretsmanager:StopReplicationToReplica", Target::Secret(&r.secret_id))
    };
    DeleteResourcePolicyRequest => |r| {
        Access::new("secretsmanager:DeleteResourcePolicy", Target::Secret(&r.secret_id))
    };
    ValidateResourcePolicyRequest => |r| match r.secret_id.as_deref() {
        Some(id) => Access::new("secretsmanager:ValidateResourcePolicy", Target::Secret(id)),
        None => all("secretsmanager:ValidateResourcePolicy"),
    };
    // Audit
    GetAuditHeadRequest => |_r| all("keyward:GetAuditHead");
    VerifyAuditCheckpointsRequest => |_r| all("keyward:VerifyAuditCheckpoints");
    // Backups
    CreateBackupRequest => |_r| all("keyward:CreateBackup");
}
