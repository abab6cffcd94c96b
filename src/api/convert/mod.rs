//! Protobuf <-> domain conversions shared by the gRPC handlers, the AWS front door (through
//! those handlers) and the site-to-site wire: one place decides how a tag, a value or a
//! replica status looks on the wire. Values cross here in the clear; buffers are moved, not
//! copied.

mod kms;
pub mod site;

use super::pb;
use crate::service::secrets::replica::outbox::ReplicaStatus;
use crate::service::secrets::{
    Deletion, Filter, GetValue, PutValue, ReplicaInfo, ReplicaRegion, SecretValue, SecretsError,
    StageMove, Value,
};
use crate::store::{SecretRecord, Tag};
use std::collections::HashMap;

pub fn tags_in(tags: Vec<pb::SecretTag>) -> Vec<Tag> {
    tags.into_iter()
        .map(|t| Tag {
            key: t.key,
            value: t.value,
        })
        .collect()
}

pub fn tags_out(tags: &[Tag]) -> Vec<pb::SecretTag> {
    tags.iter()
        .map(|t| pb::SecretTag {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect()
}

pub fn filters_in(filters: Vec<pb::Filter>) -> Vec<Filter> {
    filters
        .into_iter()
        .map(|f| Filter {
            key: f.key,
            values: f.values,
        })
        .collect()
}

/// Labelled versions only (rule Labels 7).
pub fn stages_map(record: &SecretRecord) -> HashMap<String, pb::VersionStages> {
    record
        .versions
        .iter()
        .filter(|v| !v.stages.is_empty())
        .map(|v| {
            (
                v.version_id.clone(),
                pb::VersionStages {
                    stages: v.stages.clone(),
                },
            )
        })
        .collect()
}

/// The value's two protobuf fields. The copies belong to prost from here and are not
/// zeroized: a limit of the protobuf stack.
pub fn value_out(value: Value) -> (Option<String>, Option<Vec<u8>>) {
    match value {
        Value::String(bytes) => (
            Some(String::from_utf8_lossy(bytes.expose()).into_owned()),
            None,
        ),
        Value::Binary(bytes) => (None, Some(bytes.into_vec())),
    }
}

pub fn value_entry(v: SecretValue) -> pb::SecretValueEntry {
    let (secret_string, secret_binary) = value_out(v.value);
    pb::SecretValueEntry {
        arn: v.arn,
        name: v.name,
        version_id: v.version_id,
        secret_binary,
        secret_string,
        version_stages: v.version_stages,
        created_date: v.created_date.secs(),
    }
}

pub fn replication_out(replicas: Vec<ReplicaInfo>) -> Vec<pb::ReplicationStatusType> {
    replicas
        .into_iter()
        .map(|r| {
            let (status, status_message) = match r.status {
                ReplicaStatus::InSync => ("InSync", String::new()),
                ReplicaStatus::InProgress => ("InProgress", String::new()),
                ReplicaStatus::Failed(message) => ("Failed", message),
            };
            pb::ReplicationStatusType {
                region: r.region,
                kms_key_id: r.kms_key_id,
                status: status.into(),
                status_message,
                // Reads in the replica's site are recorded there only.
                last_accessed_date: None,
                lag_entries: r.lag.entries,
                lag_seconds: r.lag.seconds,
            }
        })
        .collect()
}

pub fn regions_in(regions: Vec<pb::ReplicaRegionType>) -> Vec<ReplicaRegion> {
    regions
        .into_iter()
        .map(|r| ReplicaRegion {
            region: r.region,
            kms_key_id: r.kms_key_id,
        })
        .collect()
}

fn given(member: String) -> Option<String> {
    (!member.is_empty()).then_some(member)
}

/// An empty member is one the client left out.
impl From<pb::GetSecretValueRequest> for GetValue {
    fn from(r: pb::GetSecretValueRequest) -> Self {
        Self {
            secret_id: r.secret_id,
            version_id: given(r.version_id),
            version_stage: given(r.version_stage),
        }
    }
}

impl TryFrom<pb::PutSecretValueRequest> for PutValue {
    type Error = SecretsError;

    fn try_from(r: pb::PutSecretValueRequest) -> Result<Self, SecretsError> {
        // AWS answers both values at once with InvalidRequestException here (CreateSecret and
        // UpdateSecret: InvalidParameterException).
        if r.secret_string.is_some() && r.secret_binary.is_some() {
            return Err(SecretsError::InvalidRequest(
                "You must provide either SecretString or SecretBinary, not both.".into(),
            ));
        }
        Ok(Self {
            value: Value::from_fields(r.secret_string, r.secret_binary)?,
            version_stages: (!r.version_stages.is_empty()).then_some(r.version_stages),
            secret_id: r.secret_id,
            client_request_token: r.client_request_token,
        })
    }
}

impl From<pb::UpdateSecretVersionStageRequest> for StageMove {
    fn from(r: pb::UpdateSecretVersionStageRequest) -> Self {
        Self {
            secret_id: r.secret_id,
            version_stage: r.version_stage,
            remove_from: given(r.remove_from_version_id),
            move_to: given(r.move_to_version_id),
        }
    }
}

impl From<pb::DeleteSecretRequest> for Deletion {
    fn from(r: pb::DeleteSecretRequest) -> Self {
        Self {
            secret_id: r.secret_id,
            recovery_window_in_days: r.recovery_window_in_days,
            force_delete_without_recovery: r.force_delete_without_recovery,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_member_is_one_left_out() {
        let read = GetValue::from(pb::GetSecretValueRequest {
            secret_id: "s".into(),
            version_id: String::new(),
            version_stage: "AWSPREVIOUS".into(),
        });
        assert_eq!(read, GetValue::by_stage("s", "AWSPREVIOUS"));
        assert_eq!(
            GetValue::from(pb::GetSecretValueRequest {
                secret_id: "s".into(),
                ..Default::default()
            }),
            GetValue::current("s")
        );
    }
}
