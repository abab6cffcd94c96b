//! Replication between sites (regions), as the secrets domain sees it. Here: the primary's
//! side (the replica list, the log entries written with every change, see
//! `outbox`; what is sent; DescribeSecret's status), read-only replicas and
//! promotion. `apply`: the replica's side, each value sealed again under this site's own KMS
//! key with a fresh data key.

use super::values::Value;
use super::{SecretsError, SecretsService, secret_key, value_key, value_prefix};
use crate::store::{self, Expect, Op, ReplicaRecord, SecretRecord, Tag, keyspace};
use crate::time::{Clock, SystemClock, Timestamp};
use outbox::{Change, Entry, Lag, Outbox, ReplicaStatus};
use std::sync::Arc;

mod apply;
pub mod outbox;

pub use apply::Delivered;

/// A site to replicate to, as a client names it.
#[derive(Debug, Clone)]
pub struct ReplicaRegion {
    pub region: String,
    /// A KMS key in that site; empty: its default key.
    pub kms_key_id: String,
}

/// One replica's state, for DescribeSecret.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    pub region: String,
    pub kms_key_id: String,
    pub status: ReplicaStatus,
    /// How far behind that site is, over all secrets.
    pub lag: Lag,
}

/// A secret as a primary ships it: everything a replica shows, values in the clear (they
/// travel inside mutual TLS only and are sealed again on arrival).
pub struct ReplicaState {
    pub primary_arn: String,
    pub description: String,
    pub kms_key_id: String,
    pub created_at: Timestamp,
    pub deletion_date: Option<Timestamp>,
    pub tags: Vec<Tag>,
    pub versions: Vec<ReplicaVersion>,
    pub resource_policy: Option<String>,
    pub force_overwrite: bool,
}

pub struct ReplicaVersion {
    pub version_id: String,
    pub created_at: Timestamp,
    pub stages: Vec<String>,
    pub has_value: bool,
    /// Present for the versions the entry carries values of.
    pub value: Option<Value>,
}

pub enum Incoming {
    Upsert(ReplicaState),
    Remove,
}

/// What a replica did with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// At or below the last entry applied from that primary: nothing changed.
    Duplicate,
    Refused(String),
    Promoted,
}

/// Which sites a commit sends more than the change to.
#[derive(Default)]
pub(super) struct Fanout<'a> {
    /// Newly added replicas: they get every version's value.
    pub seed: &'a [String],
    /// Removed replicas: they delete their copy.
    pub removed: &'a [String],
}

impl SecretsService {
    /// Turns replication on: changes to secrets with replicas are logged in `outbox`.
    pub fn with_outbox(mut self, outbox: Arc<Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    fn outbox(&self) -> Result<&Outbox, SecretsError> {
        self.outbox.as_deref().ok_or_else(|| {
            SecretsError::InvalidRequest(
                "this site has no [replication] section: it has no peer regions".into(),
            )
        })
    }

    /// Client writes to a replica are refused: its primary is the only writer.
    pub(super) fn writable(&self, record: &SecretRecord) -> Result<(), SecretsError> {
        match &record.primary_region {
            Some(primary) => Err(SecretsError::InvalidRequest(format!(
                "{} is a replica of the primary secret in region {primary}: make changes there, \
                 or make this replica a standalone secret with StopReplicationToReplica",
                record.name
            ))),
            None => Ok(()),
        }
    }

    /// The region DescribeSecret reports as primary; None for a secret never replicated.
    pub fn primary_region(&self, record: &SecretRecord) -> Option<String> {
        match &record.primary_region {
            Some(region) => Some(region.clone()),
            None if !record.replicas.is_empty() => Some(self.arns.region.clone()),
            None => None,
        }
    }

    pub fn replication_status(&self, record: &SecretRecord) -> Vec<ReplicaInfo> {
        let Some(outbox) = self.outbox.as_deref() else {
            return Vec::new();
        };
        record
            .replicas
            .iter()
            .map(|r| ReplicaInfo {
                region: r.region.clone(),
                kms_key_id: r.kms_key_id.clone(),
                status: outbox.status(&r.region, &record.name),
                lag: outbox.lag(&r.region),
            })
            .collect()
    }

    /// Checks regions a client asks to replicate to: configured peers, each once.
    /// The own region is a bad parameter whatever the configuration (as in AWS), so it is
    /// checked before whether this site replicates at all.
    pub(super) fn check_regions(&self, regions: &[ReplicaRegion]) -> Result<(), SecretsError> {
        if let Some(own) = regions.iter().find(|r| r.region == self.arns.region) {
            return Err(SecretsError::invalid(
                "add_replica_regions",
                format!("{} is this site's own region", own.region),
            ));
        }
        let outbox = self.outbox()?;
        for (i, r) in regions.iter().enumerate() {
            if !outbox.has_peer(&r.region) {
                return Err(SecretsError::invalid(
                    "add_replica_regions",
                    format!(
                        "{} is not a peer region in this site's configuration",
                        r.region
                    ),
                ));
            }
            if regions[..i].iter().any(|o| o.region == r.region) {
                return Err(SecretsError::invalid(
                    "add_replica_regions",
                    format!("{} is listed twice", r.region),
                ));
            }
        }
        Ok(())
    }

    /// Commits `ops`. When they write a primary secret with replicas, a log entry per
    /// replica goes into the same commit. Conflicts are `Contended`, as in `commit_ops`.
    pub(super) async fn commit_fanout(
        &self,
        mut ops: Vec<Op>,
        fanout: Fanout<'_>,
    ) -> Result<(), SecretsError> {
        let Some(outbox) = self.outbox.as_deref() else {
            return self.commit_ops(ops).await;
        };
        let records = replicated_records(&ops, &fanout)?;
        if records.is_empty() {
            return self.commit_ops(ops).await;
        }
        let mut appending = outbox.begin().await;
        let changed_at_ms = SystemClock.now_ms();
        for record in records {
            let prefix = value_prefix(&record);
            let written: Vec<String> = ops
                .iter()
                .filter_map(|op| match op {
                    Op::Put { key, .. } => key.strip_prefix(prefix.as_slice()),
                    Op::Delete { .. } => None,
                })
                .map(|id| String::from_utf8_lossy(id).into_owned())
                .collect();
            let every_value: Vec<String> = record
                .versions
                .iter()
                .filter(|v| v.has_value)
                .map(|v| v.version_id.clone())
                .collect();
            let name = record.name.clone();
            for region in fanout.removed {
                let entry = Entry {
                    name: name.clone(),
                    changed_at_ms,
                    change: Change::Remove,
                };
                appending.push(region, &entry);
                appending.clear_failure(&mut ops, region, &name);
            }
            let regions: Vec<String> = record.replicas.iter().map(|r| r.region.clone()).collect();
            let record = Box::new(record);
            for region in regions {
                let seeded = fanout.seed.contains(&region);
                let values = if seeded {
                    every_value.clone()
                } else {
                    written.clone()
                };
                let entry = Entry {
                    name: name.clone(),
                    changed_at_ms,
                    change: Change::Upsert {
                        record: record.clone(),
                        values,
                    },
                };
                appending.push(&region, &entry);
                if seeded {
                    appending.clear_failure(&mut ops, &region, &name);
                }
            }
        }
        // Numbered from the store's positions; renumbered if another node's append took
        // them (see `Appending::commit`).
        appending
            .commit(ops)
            .await
            .map_err(SecretsError::from_commit)
    }

    /// ReplicateSecretToRegions. A region already replicated to is sent everything again
    /// (with its new key and overwrite setting), which is how a Failed replica is retried.
    pub async fn replicate_to_regions(
        &self,
        secret_id: &str,
        regions: Vec<ReplicaRegion>,
        force_overwrite: bool,
    ) -> Result<(String, Vec<ReplicaInfo>), SecretsError> {
        if regions.is_empty() {
            return Err(SecretsError::invalid(
                "add_replica_regions",
                "name at least one region",
            ));
        }
        self.check_regions(&regions)?;
        let (snapshot, _) = self.resolve_writable(secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn).await?;
        let seed: Vec<String> = regions.iter().map(|r| r.region.clone()).collect();
        for wanted in regions {
            let replica = ReplicaRecord {
                region: wanted.region,
                kms_key_id: wanted.kms_key_id,
                force_overwrite,
            };
            match record
                .replicas
                .iter_mut()
                .find(|r| r.region == replica.region)
            {
                Some(existing) => *existing = replica,
                None => record.replicas.push(replica),
            }
        }
        record.last_changed_at = self.clock.now();
        let ops = vec![Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        }];
        self.commit_fanout(
            ops,
            Fanout {
                seed: &seed,
                removed: &[],
            },
        )
        .await?;
        tracing::info!(secret = %record.name, regions = ?seed, "replicating secret");
        let status = self.replication_status(&record);
        Ok((record.arn, status))
    }

    /// RemoveRegionsFromReplication: the replicas there are deleted once they hear of it.
    pub async fn remove_regions(
        &self,
        secret_id: &str,
        regions: Vec<String>,
    ) -> Result<(String, Vec<ReplicaInfo>), SecretsError> {
        if regions.is_empty() {
            return Err(SecretsError::invalid(
                "remove_replica_regions",
                "name at least one region",
            ));
        }
        let (snapshot, _) = self.resolve_writable(secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn).await?;
        if let Some(missing) = regions
            .iter()
            .find(|wanted| !record.replicas.iter().any(|r| &r.region == *wanted))
        {
            return Err(SecretsError::invalid(
                "remove_replica_regions",
                format!("{} has no replica in {missing}", record.name),
            ));
        }
        record.replicas.retain(|r| !regions.contains(&r.region));
        record.last_changed_at = self.clock.now();
        let ops = vec![Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        }];
        self.commit_fanout(
            ops,
            Fanout {
                seed: &[],
                removed: &regions,
            },
        )
        .await?;
        tracing::info!(secret = %record.name, regions = ?regions, "removed replica regions");
        let status = self.replication_status(&record);
        Ok((record.arn, status))
    }

    /// StopReplicationToReplica, in the replica's site: the replica becomes a standalone
    /// secret, writable here; its former primary stops sending once it hears of it.
    pub async fn stop_replication(&self, secret_id: &str) -> Result<String, SecretsError> {
        let (snapshot, _) = self.resolve_live(secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_live(&snapshot.arn).await?;
        let Some(primary) = record.primary_region.take() else {
            return Err(SecretsError::InvalidRequest(format!(
                "{} is not a replica of a secret in another region",
                record.name
            )));
        };
        record.former_primary = Some(primary.clone());
        record.last_changed_at = self.clock.now();
        self.commit_ops(vec![
            Op::Put {
                key: secret_key(&record.name),
                value: store::encode(&record),
                expect: Expect::Version(version),
            },
            Op::Put {
                key: keyspace::replication_promotion(&primary, &record.name),
                value: Vec::new(),
                expect: Expect::Any,
            },
        ])
        .await?;
        tracing::warn!(secret = %record.name, former_primary = %primary,
            "replica promoted to a standalone secret");
        Ok(record.arn)
    }

    /// The primary learned that `region` promoted its replica: stop replicating there.
    pub async fn forget_replica(&self, name: &str, region: &str) -> Result<(), SecretsError> {
        let _writer = self.lock(name).lock().await;
        let Some((mut record, version)) = self.load_by_name(name).await? else {
            return Ok(());
        };
        let before = record.replicas.len();
        record.replicas.retain(|r| r.region != region);
        if record.replicas.len() == before {
            return Ok(());
        }
        // Nothing the other replicas show changed: no log entries.
        self.commit_ops(vec![Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        }])
        .await?;
        tracing::warn!(secret = %name, %region,
            "the replica was promoted to a standalone secret there; no longer replicating to it");
        Ok(())
    }

    /// What to send `region` for a logged entry: values are read and opened now, under this
    /// site's keys. A value removed since (an old deprecated version) is left out, as the
    /// entries after it no longer list it.
    pub async fn outgoing(&self, entry: &Entry, region: &str) -> Result<Incoming, SecretsError> {
        let (record, values) = match &entry.change {
            Change::Remove => return Ok(Incoming::Remove),
            Change::Upsert { record, values } => (record, values),
        };
        let replica = record.replicas.iter().find(|r| r.region == region);
        let mut versions = Vec::with_capacity(record.versions.len());
        for meta in &record.versions {
            let mut value = None;
            if meta.has_value && values.contains(&meta.version_id) {
                let key = value_key(record, &meta.version_id);
                let Some(found) = self.store.get(&key).await? else {
                    continue;
                };
                let stored = store::decode(&key, &found.value)?;
                value = match self
                    .open(&record.arn, &record.name, &meta.version_id, &stored)
                    .await
                {
                    Ok(value) => Some(value),
                    Err(e) if e.is_retryable() => {
                        return Err(e);
                    }
                    // Sent without it: the peer refuses the entry, and the secret's status
                    // there says why, instead of every secret waiting behind this one.
                    Err(e) => {
                        tracing::warn!(secret = %record.name, version = %meta.version_id,
                            error = %e, "cannot open a value to replicate");
                        None
                    }
                };
            }
            versions.push(ReplicaVersion {
                version_id: meta.version_id.clone(),
                created_at: meta.created_at,
                stages: meta.stages.clone(),
                has_value: meta.has_value,
                value,
            });
        }
        Ok(Incoming::Upsert(ReplicaState {
            primary_arn: record.arn.clone(),
            description: record.description.clone(),
            kms_key_id: replica.map(|r| r.kms_key_id.clone()).unwrap_or_default(),
            created_at: record.created_at,
            deletion_date: record.deletion_date,
            tags: record.tags.clone(),
            versions,
            resource_policy: record.resource_policy.clone(),
            force_overwrite: replica.is_some_and(|r| r.force_overwrite),
        }))
    }
}

/// The primary secret records `ops` write that have replicas, or that `fanout` names.
fn replicated_records(ops: &[Op], fanout: &Fanout) -> Result<Vec<SecretRecord>, SecretsError> {
    let mut records = Vec::new();
    for op in ops {
        let Op::Put { key, value, .. } = op else {
            continue;
        };
        if !key.starts_with(keyspace::SECRETS) {
            continue;
        }
        let record: SecretRecord = store::decode(key, value)?;
        let replicated = !record.replicas.is_empty() || !fanout.removed.is_empty();
        if record.primary_region.is_none() && replicated {
            records.push(record);
        }
    }
    Ok(records)
}
