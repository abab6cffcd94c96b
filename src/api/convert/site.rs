//! Replication entries between the domain's form and the site-to-site protobuf one, with the
//! client API's conversions for tags and values.

use super::{tags_in, tags_out, value_out};
use crate::api::pb;
use crate::service::secrets::{Applied, Incoming, ReplicaState, ReplicaVersion, Value};
use crate::time::Timestamp;

pub fn entry_out(
    seq: u64,
    changed_at_ms: i64,
    name: &str,
    incoming: Incoming,
) -> pb::ReplicationEntry {
    use pb::replication_entry::Change;
    let change = match incoming {
        Incoming::Remove => Change::Remove(true),
        Incoming::Upsert(state) => Change::Upsert(pb::ReplicaState {
            primary_arn: state.primary_arn,
            description: state.description,
            kms_key_id: state.kms_key_id,
            created_date: state.created_at.secs(),
            deleted_date: state.deletion_date.map(Timestamp::secs),
            tags: tags_out(&state.tags),
            versions: state.versions.into_iter().map(version_out).collect(),
            resource_policy: state.resource_policy,
            force_overwrite: state.force_overwrite,
        }),
    };
    pb::ReplicationEntry {
        seq,
        changed_at: changed_at_ms / 1000,
        name: name.to_owned(),
        change: Some(change),
    }
}

fn version_out(v: ReplicaVersion) -> pb::ReplicaVersion {
    let (secret_string, secret_binary) = v.value.map(value_out).unwrap_or_default();
    pb::ReplicaVersion {
        version_id: v.version_id,
        created_date: v.created_at.secs(),
        stages: v.stages,
        has_value: v.has_value,
        secret_binary,
        secret_string,
    }
}

/// The domain form of an entry's change; Err names what is malformed.
pub fn incoming(change: Option<pb::replication_entry::Change>) -> Result<Incoming, String> {
    use pb::replication_entry::Change;
    match change {
        None => Err("the entry carries no change".into()),
        Some(Change::Remove(_)) => Ok(Incoming::Remove),
        Some(Change::Upsert(state)) => {
            let versions = state
                .versions
                .into_iter()
                .map(version_in)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Incoming::Upsert(ReplicaState {
                primary_arn: state.primary_arn,
                description: state.description,
                kms_key_id: state.kms_key_id,
                created_at: Timestamp::from_secs(state.created_date),
                deletion_date: state.deleted_date.map(Timestamp::from_secs),
                tags: tags_in(state.tags),
                versions,
                resource_policy: state.resource_policy,
                force_overwrite: state.force_overwrite,
            }))
        }
    }
}

fn version_in(v: pb::ReplicaVersion) -> Result<ReplicaVersion, String> {
    // The same checks as a client's value: one of the two fields, 1 to 65,536 bytes.
    let value = Value::from_fields(v.secret_string, v.secret_binary)
        .map_err(|e| format!("version {}: {e}", v.version_id))?;
    Ok(ReplicaVersion {
        version_id: v.version_id,
        created_at: Timestamp::from_secs(v.created_date),
        stages: v.stages,
        has_value: v.has_value,
        value,
    })
}

pub fn outcome_out(seq: u64, applied: Applied) -> pb::EntryOutcome {
    use pb::entry_outcome::Kind;
    let (kind, message) = match applied {
        Applied::Applied => (Kind::Applied, String::new()),
        Applied::Duplicate => (Kind::Duplicate, String::new()),
        Applied::Refused(message) => (Kind::Refused, message),
        Applied::Promoted => (Kind::Promoted, String::new()),
    };
    pb::EntryOutcome {
        seq,
        kind: kind as i32,
        message,
    }
}
