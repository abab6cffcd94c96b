//! Writes: CreateSecret, PutSecretValue, UpdateSecret, UpdateSecretVersionStage, tags.
//!
//! Every write is: validate, seal outside any lock or transaction (the hardware call), take the
//! secret's stripe lock, re-read the record, compute label moves, commit the value and the
//! record in one guarded transaction (flushed before the reply).

use super::labels;
use super::values::Value;
use super::{SecretsError, SecretsService, limits, secret_key, value_key};
use crate::store::{
    self, Expect, Op, ReplicaRecord, SecretRecord, SecretValueRecord, SecretVersionMeta, Tag,
};
use crate::time::Timestamp;

/// Versions kept regardless of age (rule Labels 7).
const KEEP_VERSIONS: usize = 100;
/// Deprecated versions younger than this are never removed.
const MIN_AGE_TO_REMOVE: i64 = 86_400;
/// Beyond this many versions, new versions are refused until old ones age out.
pub(super) const MAX_VERSIONS: usize = 200;

pub struct NewSecret {
    pub name: String,
    pub client_request_token: String,
    pub description: String,
    pub kms_key_id: String,
    pub value: Option<Value>,
    pub tags: Vec<Tag>,
    /// Sites to replicate to from the start.
    pub replica_regions: Vec<super::ReplicaRegion>,
    pub force_overwrite_replica_secret: bool,
}

/// PutSecretValue: a new version of `secret_id`, labelled `version_stages` (none given:
/// AWSCURRENT, rule Labels 3).
pub struct PutValue {
    pub secret_id: String,
    /// Empty: the service makes a version id (rule Idempotency 1).
    pub client_request_token: String,
    pub value: Option<Value>,
    pub version_stages: Option<Vec<String>>,
}

/// UpdateSecretVersionStage: move (or, with only `remove_from`, remove) one label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageMove {
    pub secret_id: String,
    pub version_stage: String,
    pub remove_from: Option<String>,
    pub move_to: Option<String>,
}

pub struct SecretUpdate {
    pub secret_id: String,
    pub client_request_token: String,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub value: Option<Value>,
}

/// What a write returns: the secret's ARN and name, and the version it created if any.
pub struct Written {
    pub arn: String,
    pub name: String,
    pub version_id: Option<String>,
    pub version_stages: Vec<String>,
}

/// The secret a call acted on, as AWS answers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub arn: String,
    pub name: String,
}

impl Named {
    pub(super) fn of(record: SecretRecord) -> Self {
        Self {
            arn: record.arn,
            name: record.name,
        }
    }
}

pub(super) fn version_id_for(token: &str) -> String {
    if token.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        token.to_owned()
    }
}

fn merge_tags(existing: &mut Vec<Tag>, new: Vec<Tag>) {
    for tag in new {
        match existing.iter_mut().find(|t| t.key == tag.key) {
            Some(t) => t.value = tag.value,
            None => existing.push(tag),
        }
    }
}

impl SecretsService {
    /// Commits `ops`, with the replication log entries they call for.
    pub(super) async fn commit(&self, ops: Vec<Op>) -> Result<(), SecretsError> {
        self.commit_fanout(ops, Default::default()).await
    }

    /// Commits `ops` as they are.
    pub(super) async fn commit_ops(&self, ops: Vec<Op>) -> Result<(), SecretsError> {
        self.store
            .commit(ops)
            .await
            .map_err(SecretsError::from_commit)
    }

    async fn load_value(
        &self,
        secret: &SecretRecord,
        version_id: &str,
    ) -> Result<SecretValueRecord, SecretsError> {
        let key = value_key(secret, version_id);
        let found = self.store.get(&key).await?.ok_or_else(|| {
            SecretsError::DecryptionFailure(format!(
                "{}: the stored value of version {version_id} is missing",
                secret.name
            ))
        })?;
        store::decode(&key, &found.value).map_err(|_| {
            SecretsError::DecryptionFailure(format!(
                "{}: the stored value of version {version_id} is damaged",
                secret.name
            ))
        })
    }

    /// Rule Idempotency 2-3: a token already used in this secret.
    async fn same_value_as_stored(
        &self,
        secret: &SecretRecord,
        version_id: &str,
        value: &Value,
    ) -> Result<bool, SecretsError> {
        let stored = self.load_value(secret, version_id).await?;
        let existing = self
            .open(&secret.arn, &secret.name, version_id, &stored)
            .await?;
        Ok(existing.same_as(value))
    }

    pub async fn create_secret(&self, new: NewSecret) -> Result<Written, SecretsError> {
        limits::name(&new.name)?;
        limits::token(&new.client_request_token)?;
        limits::description(&new.description)?;
        limits::tags(&new.tags)?;
        if !new.replica_regions.is_empty() {
            self.check_regions(&new.replica_regions)?;
        }
        let version_id = version_id_for(&new.client_request_token);
        let _writer = self.lock(&new.name).lock().await;

        if let Some((existing, _)) = self.load_by_name(&new.name).await? {
            if existing.deletion_date.is_some() {
                return Err(SecretsError::InvalidRequest(format!(
                    "a secret named {} is scheduled for deletion; restore it or choose another name",
                    new.name
                )));
            }
            // Rule Idempotency 4: a retried create (same token, same value) succeeds.
            let retried = match (&new.value, existing.versions.first()) {
                (Some(value), Some(first)) if first.version_id == version_id && first.has_value => {
                    self.same_value_as_stored(&existing, &version_id, value)
                        .await?
                }
                _ => false,
            };
            if retried {
                return Ok(Written {
                    arn: existing.arn.clone(),
                    name: existing.name.clone(),
                    version_id: Some(version_id),
                    version_stages: existing.versions[0].stages.clone(),
                });
            }
            return Err(SecretsError::Exists(format!(
                "The operation failed because the secret {} already exists.",
                new.name
            )));
        }

        let now = self.clock.now();
        let mut record = SecretRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name.clone(),
            arn: self.secret_arn(&new.name)?,
            description: new.description,
            kms_key_id: new.kms_key_id,
            created_at: now,
            last_changed_at: now,
            last_accessed_day: None,
            deletion_date: None,
            tags: Vec::new(),
            versions: Vec::new(),
            rotation: None,
            resource_policy: None,
            primary_region: None,
            replicas: new
                .replica_regions
                .into_iter()
                .map(|r| ReplicaRecord {
                    region: r.region,
                    kms_key_id: r.kms_key_id,
                    force_overwrite: new.force_overwrite_replica_secret,
                })
                .collect(),
            former_primary: None,
        };
        merge_tags(&mut record.tags, new.tags);
        let mut ops = Vec::new();
        let mut created = None;
        if let Some(value) = &new.value {
            let (sealed, kms_key_arn) = self
                .seal(&record.arn, &version_id, &record.kms_key_id, value)
                .await?;
            record.versions.push(SecretVersionMeta {
                version_id: version_id.clone(),
                created_at: now,
                stages: Vec::new(),
                last_accessed_day: None,
                kms_key_arn,
                has_value: true,
            });
            labels::place_new_version(&mut record.versions, 0, None)?;
            ops.push(Op::Put {
                key: value_key(&record, &version_id),
                value: store::encode(&sealed),
                expect: Expect::Absent,
            });
            created = Some(version_id);
        } else if !record.kms_key_id.is_empty() {
            // Without a value nothing is sealed yet: check the key now, not at the first put.
            self.kms
                .describe_key(&record.kms_key_id)
                .await
                .map_err(SecretsError::from_kms_write)?;
        }
        ops.push(Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Absent,
        });
        ops.extend(super::indexes::entries_of(&record));
        self.commit(ops).await?;
        tracing::info!(secret = %record.name, "created secret");
        Ok(Written {
            version_stages: record
                .versions
                .first()
                .map(|v| v.stages.clone())
                .unwrap_or_default(),
            arn: record.arn,
            name: record.name,
            version_id: created,
        })
    }

    pub async fn put_secret_value(&self, request: PutValue) -> Result<Written, SecretsError> {
        let PutValue {
            secret_id,
            client_request_token,
            value,
            version_stages,
        } = request;
        let (secret_id, client_request_token) = (secret_id.as_str(), client_request_token.as_str());
        limits::token(client_request_token)?;
        if let Some(stages) = &version_stages {
            limits::labels(stages)?;
        }
        let value = value.ok_or_else(|| {
            SecretsError::InvalidRequest(
                "You must provide either SecretString or SecretBinary.".into(),
            )
        })?;
        let (snapshot, _) = self.resolve_writable(secret_id).await?;
        let version_id = version_id_for(client_request_token);
        self.write_version(
            &snapshot,
            &version_id,
            value,
            version_stages.as_deref(),
            None,
        )
        .await
    }

    /// Writes a new version (or fills a version that has no value yet), applying label rules
    /// 2-4 and idempotency rules 2-3. `change` edits the record in the same commit.
    pub(super) async fn write_version(
        &self,
        snapshot: &SecretRecord,
        version_id: &str,
        value: Value,
        stages: Option<&[String]>,
        change: Option<&(dyn Fn(&mut SecretRecord) + Sync)>,
    ) -> Result<Written, SecretsError> {
        // A retry of an acknowledged write must not cost a data key: check before sealing.
        if let Some(existing) = snapshot
            .versions
            .iter()
            .find(|v| v.version_id == version_id)
            && existing.has_value
        {
            return self.repeat_of(snapshot, version_id, &value).await;
        }
        let (sealed, kms_key_arn) = self
            .seal(&snapshot.arn, version_id, &snapshot.kms_key_id, &value)
            .await?;

        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, record_version) = self.resolve_writable(&snapshot.arn).await?;
        if record.kms_key_id != snapshot.kms_key_id {
            return Err(SecretsError::Internal(
                "the secret's KMS key changed during the write; retry".into(),
            ));
        }
        let now = self.clock.now();
        let at = match labels::index(&record.versions, version_id) {
            Some(at) if record.versions[at].has_value => {
                drop(_writer);
                return self.repeat_of(&record, version_id, &value).await;
            }
            // A version created by rotation without a value yet: fill it in.
            Some(at) => at,
            None => {
                record
                    .versions
                    .push(SecretVersionMeta::empty(version_id, now));
                record.versions.len() - 1
            }
        };
        record.versions[at].has_value = true;
        record.versions[at].kms_key_arn = kms_key_arn;
        labels::place_new_version(&mut record.versions, at, stages)?;
        let stages_now = record.versions[at].stages.clone();
        if let Some(change) = change {
            change(&mut record);
        }
        record.last_changed_at = now;
        let removed = prune_versions(&mut record, now);
        if record.versions.len() > MAX_VERSIONS {
            return Err(SecretsError::LimitExceeded(format!(
                "{} has {MAX_VERSIONS} versions; deprecated versions are removed once a day old",
                record.name
            )));
        }

        let mut ops = vec![Op::Put {
            key: value_key(&record, version_id),
            value: store::encode(&sealed),
            expect: Expect::Any,
        }];
        for old in removed {
            ops.push(Op::Delete {
                key: value_key(&record, &old),
                expect: Expect::Any,
            });
        }
        ops.push(Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(record_version),
        });
        self.commit(ops).await?;
        Ok(Written {
            arn: record.arn,
            name: record.name,
            version_id: Some(version_id.to_owned()),
            version_stages: stages_now,
        })
    }

    /// A token already used: success with no new version if the value is the same (rule
    /// Idempotency 2), ResourceExists otherwise (3).
    async fn repeat_of(
        &self,
        record: &SecretRecord,
        version_id: &str,
        value: &Value,
    ) -> Result<Written, SecretsError> {
        if !self.same_value_as_stored(record, version_id, value).await? {
            return Err(SecretsError::Exists(
                "You can't modify an existing version, you can only create a new version.".into(),
            ));
        }
        let stages = record
            .versions
            .iter()
            .find(|v| v.version_id == version_id)
            .map(|v| v.stages.clone())
            .unwrap_or_default();
        Ok(Written {
            arn: record.arn.clone(),
            name: record.name.clone(),
            version_id: Some(version_id.to_owned()),
            version_stages: stages,
        })
    }

    /// Rule Labels 5: with a value, like PutSecretValue without labels; description and KMS key
    /// alone create no version. A new KMS key re-wraps the data keys of labelled versions.
    pub async fn update_secret(&self, update: SecretUpdate) -> Result<Written, SecretsError> {
        limits::token(&update.client_request_token)?;
        if let Some(description) = &update.description {
            limits::description(description)?;
        }
        let (snapshot, _) = self.resolve_writable(&update.secret_id).await?;
        let new_key = update
            .kms_key_id
            .clone()
            .filter(|k| *k != snapshot.kms_key_id);
        if let Some(key) = &new_key {
            self.rekey(&snapshot, key).await?;
        }
        let description = update.description.clone();
        let describe = move |record: &mut SecretRecord| {
            if let Some(d) = &description {
                record.description = d.clone();
            }
        };
        match update.value {
            Some(value) => {
                let (snapshot, _) = self.resolve_writable(&snapshot.arn).await?;
                let version_id = version_id_for(&update.client_request_token);
                self.write_version(&snapshot, &version_id, value, None, Some(&describe))
                    .await
            }
            None => {
                let _writer = self.lock(&snapshot.name).lock().await;
                let (mut record, version) = self.resolve_writable(&snapshot.arn).await?;
                describe(&mut record);
                record.last_changed_at = self.clock.now();
                self.commit(vec![Op::Put {
                    key: secret_key(&record.name),
                    value: store::encode(&record),
                    expect: Expect::Version(version),
                }])
                .await?;
                Ok(Written {
                    arn: record.arn,
                    name: record.name,
                    version_id: None,
                    version_stages: Vec::new(),
                })
            }
        }
    }

    /// Re-wraps every labelled version's data key under `kms_key_id` and records the key.
    async fn rekey(&self, snapshot: &SecretRecord, kms_key_id: &str) -> Result<(), SecretsError> {
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn).await?;
        let mut ops = Vec::new();
        for meta in record
            .versions
            .iter_mut()
            .filter(|v| v.has_value && !v.stages.is_empty())
        {
            let stored = {
                let key = value_key(snapshot, &meta.version_id);
                let found = self.store.get(&key).await?.ok_or_else(|| {
                    SecretsError::DecryptionFailure(format!(
                        "{}: a stored value is missing",
                        snapshot.name
                    ))
                })?;
                store::decode::<SecretValueRecord>(&key, &found.value)?
            };
            let (rewrapped, key_arn) = self
                .rewrap(
                    &record.arn,
                    &record.name,
                    &meta.version_id,
                    &stored,
                    kms_key_id,
                )
                .await?;
            meta.kms_key_arn = key_arn;
            ops.push(Op::Put {
                key: value_key(snapshot, &meta.version_id),
                value: store::encode(&rewrapped),
                expect: Expect::Any,
            });
        }
        if record.versions.iter().all(|v| !v.has_value) {
            self.kms
                .describe_key(kms_key_id)
                .await
                .map_err(SecretsError::from_kms_write)?;
        }
        record.kms_key_id = kms_key_id.to_owned();
        record.last_changed_at = self.clock.now();
        ops.push(Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        });
        self.commit(ops).await
    }

    /// Rule Labels 6.
    pub async fn update_secret_version_stage(
        &self,
        request: StageMove,
    ) -> Result<Named, SecretsError> {
        let StageMove {
            secret_id,
            version_stage,
            remove_from,
            move_to,
        } = request;
        let version_stage = version_stage.as_str();
        limits::label("version_stage", version_stage)?;
        if let Some(id) = &remove_from {
            limits::version_id("remove_from_version_id", id)?;
        }
        if let Some(id) = &move_to {
            limits::version_id("move_to_version_id", id)?;
        }
        let (snapshot, _) = self.resolve_writable(&secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn).await?;
        labels::update_stage(
            &mut record.versions,
            version_stage,
            move_to.as_deref(),
            remove_from.as_deref(),
        )?;
        record.last_changed_at = self.clock.now();
        self.commit(vec![Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        }])
        .await?;
        Ok(Named::of(record))
    }

    pub async fn tag_resource(&self, secret_id: &str, tags: Vec<Tag>) -> Result<(), SecretsError> {
        limits::tags(&tags)?;
        self.change_record(secret_id, |record| {
            merge_tags(&mut record.tags, tags);
            limits::tags(&record.tags)
        })
        .await
    }

    pub async fn untag_resource(
        &self,
        secret_id: &str,
        keys: Vec<String>,
    ) -> Result<(), SecretsError> {
        self.change_record(secret_id, |record| {
            record.tags.retain(|t| !keys.contains(&t.key));
            Ok(())
        })
        .await
    }

    /// Applies `change` to a secret's record under its lock (any state but deleted-for-good).
    pub(super) async fn change_record(
        &self,
        secret_id: &str,
        change: impl FnOnce(&mut SecretRecord) -> Result<(), SecretsError>,
    ) -> Result<(), SecretsError> {
        let (snapshot, _) = self.resolve(secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve(&snapshot.arn).await?;
        self.writable(&record)?;
        change(&mut record)?;
        self.commit(vec![Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        }])
        .await
    }
}

/// Rule Labels 7: deprecated versions beyond the newest 100, at least a day old, are removed.
/// Returns the removed version ids.
fn prune_versions(record: &mut SecretRecord, now: Timestamp) -> Vec<String> {
    let len = record.versions.len();
    if len <= KEEP_VERSIONS {
        return Vec::new();
    }
    let cutoff = len - KEEP_VERSIONS;
    let mut removed = Vec::new();
    let mut index = 0;
    record.versions.retain(|v| {
        let old_enough = now.secs_since(v.created_at) >= MIN_AGE_TO_REMOVE;
        let remove = index < cutoff && v.stages.is_empty() && old_enough;
        index += 1;
        if remove {
            removed.push(v.version_id.clone());
        }
        !remove
    });
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::secrets::labels::CURRENT;

    fn record(count: usize, now: Timestamp) -> SecretRecord {
        SecretRecord {
            id: "id".into(),
            name: "n".into(),
            arn: "a".into(),
            description: String::new(),
            kms_key_id: String::new(),
            created_at: Timestamp::EPOCH,
            last_changed_at: Timestamp::EPOCH,
            last_accessed_day: None,
            deletion_date: None,
            tags: Vec::new(),
            versions: (0..count)
                .map(|i| SecretVersionMeta {
                    version_id: format!("v{i:03}"),
                    // The first 10 versions are old, the rest recent.
                    created_at: if i < 10 { Timestamp::EPOCH } else { now },
                    stages: if i == 3 {
                        vec![CURRENT.into()]
                    } else {
                        Vec::new()
                    },
                    last_accessed_day: None,
                    kms_key_arn: String::new(),
                    has_value: true,
                })
                .collect(),
            rotation: None,
            resource_policy: None,
            primary_region: None,
            replicas: Vec::new(),
            former_primary: None,
        }
    }

    #[test]
    fn pruning_keeps_the_newest_hundred_labelled_and_young_versions() {
        let now = Timestamp::from_secs(10 * 86_400);
        let mut r = record(105, now);
        let removed = prune_versions(&mut r, now);
        // Five beyond 100; among the oldest five, v003 is labelled: it stays.
        assert_eq!(removed, ["v000", "v001", "v002", "v004"]);
        assert_eq!(r.versions.len(), 101);
        let mut young = record(105, Timestamp::EPOCH);
        assert!(prune_versions(&mut young, Timestamp::EPOCH).is_empty());
    }
}
