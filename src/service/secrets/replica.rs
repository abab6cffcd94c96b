//! Replication between sites (regions). On the primary: the replica list, the log entries
//! written with every change (see `replication::outbox`), DescribeSecret's status. On a
//! replica: applying a primary's entries (each value re-sealed under this site's own KMS key
//! with a fresh data key), refusing client writes, promotion.

use super::values::Value;
use super::{SecretsError, SecretsService, indexes, secret_key, value_key, value_prefix};
use crate::replication::outbox::{Change, Entry, Lag, Outbox, ReplicaStatus};
use crate::store::{self, Expect, Op, ReplicaRecord, SecretRecord, SecretVersionMeta, Tag};
use std::collections::HashMap;
use std::sync::Arc;

/// `repl/in/<primary region>`: `<log id> <seq>` of the last entry applied from that site.
const APPLIED_PREFIX: &str = "repl/in/";
/// `repl/promoted/<former primary>/<name>`: promotions that site has not been told of yet.
const PROMOTED_PREFIX: &str = "repl/promoted/";

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
    pub created_at: i64,
    pub deletion_date: Option<i64>,
    pub tags: Vec<Tag>,
    pub versions: Vec<ReplicaVersion>,
    pub resource_policy: Option<String>,
    pub force_overwrite: bool,
}

pub struct ReplicaVersion {
    pub version_id: String,
    pub created_at: i64,
    pub stages: Vec<String>,
    pub has_value: bool,
    /// Present for the versions the entry carries values of.
    pub value: Option<Value>,
}

pub enum Incoming {
    Upsert(ReplicaState),
    Remove,
}

/// An entry as a peer delivered it: its change, or why it could not be read.
pub struct Delivered {
    pub seq: u64,
    pub name: String,
    pub change: Result<Incoming, String>,
}

/// Entries applied together: their writes, and the secrets as those writes leave them.
struct Batch<'a> {
    applied_key: Vec<u8>,
    applied_version: Expect,
    /// The last entry applied from this log, before or in this batch.
    last: Option<u64>,
    changed: bool,
    ops: Vec<Op>,
    /// Secret name → (record, store version) after this batch's writes; None: absent.
    secrets: HashMap<String, Option<(SecretRecord, u64)>>,
    /// Stripe locks of the secrets the batch writes, held until it is committed.
    held: HashMap<usize, tokio::sync::MutexGuard<'a, ()>>,
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
    pub(super) fn check_regions(&self, regions: &[ReplicaRegion]) -> Result<(), SecretsError> {
        let outbox = self.outbox()?;
        for (i, r) in regions.iter().enumerate() {
            if r.region == self.arns.region {
                return Err(SecretsError::invalid(
                    "add_replica_regions",
                    format!("{} is this site's own region", r.region),
                ));
            }
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
    /// replica goes into the same commit.
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
        let changed_at_ms = crate::calendar::now_ms();
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
                appending.push(&mut ops, region, &entry);
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
                appending.push(&mut ops, &region, &entry);
                if seeded {
                    appending.clear_failure(&mut ops, &region, &name);
                }
            }
        }
        self.commit_ops(ops).await?;
        appending.committed();
        Ok(())
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
        let (snapshot, _) = self.resolve_writable(secret_id)?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn)?;
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
        let (snapshot, _) = self.resolve_writable(secret_id)?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn)?;
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
        let (snapshot, _) = self.resolve_live(secret_id)?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_live(&snapshot.arn)?;
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
                key: format!("{PROMOTED_PREFIX}{primary}/{}", record.name).into_bytes(),
                value: Vec::new(),
                expect: Expect::Any,
            },
        ])
        .await?;
        tracing::warn!(secret = %record.name, former_primary = %primary,
            "replica promoted to a standalone secret");
        Ok(record.arn)
    }

    /// Promotions of `primary`'s replicas it has not been told of; told now, so forgotten.
    pub async fn take_promotions(&self, primary: &str) -> Result<Vec<String>, SecretsError> {
        let prefix = format!("{PROMOTED_PREFIX}{primary}/").into_bytes();
        let found = self.store.scan_all(&prefix)?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let names = found
            .iter()
            .map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            .collect();
        let ops = found
            .into_iter()
            .map(|(key, _)| Op::Delete {
                key,
                expect: Expect::Any,
            })
            .collect();
        self.commit_ops(ops).await?;
        Ok(names)
    }

    /// The primary learned that `region` promoted its replica: stop replicating there.
    pub async fn forget_replica(&self, name: &str, region: &str) -> Result<(), SecretsError> {
        let _writer = self.lock(name).lock().await;
        let Some((mut record, version)) = self.load_by_name(name)? else {
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
                let Some(found) = self.store.get(&key)? else {
                    continue;
                };
                let stored = store::decode(&key, &found.value)?;
                value = match self
                    .open(&record.arn, &record.name, &meta.version_id, &stored)
                    .await
                {
                    Ok(value) => Some(value),
                    Err(e @ (SecretsError::Unavailable(_) | SecretsError::Internal(_))) => {
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

    /// Applies consecutive entries of `from`'s log (`log_id`) in order, in one commit: one
    /// flush per batch, not per entry. Only `from`'s own replicas change. Stops at the first
    /// retryable error (root of trust or store unavailable) and returns it after the outcomes
    /// of the entries before it, which are committed; a refusal is final for its entry.
    pub async fn apply_replicated(
        &self,
        from: &str,
        log_id: &str,
        entries: Vec<Delivered>,
    ) -> (Vec<(u64, String, Applied)>, Option<SecretsError>) {
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut batch = match self.start_batch(from, log_id).await {
            Ok(batch) => batch,
            Err(e) => return (outcomes, Some(e)),
        };
        let mut failure = None;
        for delivered in entries {
            let (seq, name) = (delivered.seq, delivered.name);
            if batch.last.is_some_and(|last| seq <= last) {
                outcomes.push((seq, name, Applied::Duplicate));
                continue;
            }
            match self
                .apply_one(from, &mut batch, &name, delivered.change)
                .await
            {
                Ok(applied) => {
                    batch.last = Some(seq);
                    batch.changed = true;
                    outcomes.push((seq, name, applied));
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if batch.changed {
            let mut ops = std::mem::take(&mut batch.ops);
            ops.push(Op::Put {
                key: batch.applied_key.clone(),
                value: format!("{log_id} {}", batch.last.unwrap_or_default()).into_bytes(),
                expect: batch.applied_version,
            });
            if let Err(e) = self.commit_ops(ops).await {
                // Nothing was applied: the caller sends it all again.
                return (Vec::new(), Some(e));
            }
        }
        (outcomes, failure)
    }

    async fn start_batch(&self, from: &str, log_id: &str) -> Result<Batch<'_>, SecretsError> {
        let applied_key = format!("{APPLIED_PREFIX}{from}").into_bytes();
        let applied = self.store.get(&applied_key)?;
        let last = applied.as_ref().and_then(|found| {
            let text = std::str::from_utf8(&found.value).ok()?;
            let (id, seq) = text.split_once(' ')?;
            (id == log_id).then(|| seq.parse::<u64>().ok())?
        });
        Ok(Batch {
            applied_key,
            applied_version: applied.map_or(Expect::Absent, |a| Expect::Version(a.version)),
            last,
            changed: false,
            ops: Vec::new(),
            secrets: HashMap::new(),
            held: HashMap::new(),
        })
    }

    /// One entry: its writes join the batch, and the batch remembers the secret as they
    /// leave it, for the entries after it.
    async fn apply_one<'a>(
        &'a self,
        from: &str,
        batch: &mut Batch<'a>,
        name: &str,
        change: Result<Incoming, String>,
    ) -> Result<Applied, SecretsError> {
        let incoming = match (change, super::limits::name(name)) {
            (Err(malformed), _) => return Ok(Applied::Refused(malformed)),
            (_, Err(e)) => return Ok(Applied::Refused(e.to_string())),
            (Ok(incoming), Ok(())) => incoming,
        };
        let stripe = self.stripe(name);
        if let std::collections::hash_map::Entry::Vacant(slot) = batch.held.entry(stripe) {
            slot.insert(self.locks[stripe].lock().await);
        }
        let local = match batch.secrets.get(name) {
            Some(current) => current.clone(),
            None => self.load_by_name(name)?,
        };
        let (applied, after) = match incoming {
            Incoming::Remove => match local {
                Some((record, version)) if record.primary_region.as_deref() == Some(from) => {
                    batch.ops.extend(self.erase_ops(&record, version)?);
                    tracing::info!(secret = %name, primary = %from, "replica removed by its primary");
                    (Applied::Applied, None)
                }
                Some(local) => (promoted_or_refused(from, &local.0), Some(local)),
                // Nothing of the caller's here (never created, or removed before).
                None => (Applied::Applied, None),
            },
            Incoming::Upsert(state) => match refusal(from, local.as_ref(), &state) {
                Some(refused) => (refused, local),
                None => {
                    let version = local.as_ref().map_or(0, |(_, v)| *v);
                    match self.replica_ops(from, name, local.clone(), state).await {
                        Ok((ops, record)) => {
                            batch.ops.extend(ops);
                            // The store bumps a record's version by one per write.
                            (Applied::Applied, Some((record, version + 1)))
                        }
                        Err(e @ (SecretsError::Unavailable(_) | SecretsError::Internal(_))) => {
                            return Err(e);
                        }
                        Err(e) => (Applied::Refused(e.to_string()), local),
                    }
                }
            },
        };
        batch.secrets.insert(name.to_owned(), after);
        Ok(applied)
    }

    /// The writes that make the local copy of `name` match `state`. Values this site already
    /// holds are kept; new ones are sealed under this site's key with a fresh data key.
    async fn replica_ops(
        &self,
        from: &str,
        name: &str,
        local: Option<(SecretRecord, u64)>,
        state: ReplicaState,
    ) -> Result<(Vec<Op>, SecretRecord), SecretsError> {
        let arn = replica_arn(&state.primary_arn, &self.arns.region).ok_or_else(|| {
            SecretsError::invalid("primary_arn", "not a secret ARN with a region")
        })?;
        let mut ops = Vec::new();
        let expect = local
            .as_ref()
            .map_or(Expect::Absent, |(_, v)| Expect::Version(*v));
        // Only this primary's copy of this very secret is updated in place; anything else
        // under the name (overwritten, or a re-created primary) is replaced whole.
        let kept = match local {
            Some((record, _))
                if record.primary_region.as_deref() == Some(from) && record.arn == arn =>
            {
                ops.extend(indexes::remove_entries_of(&record));
                Some(record)
            }
            Some((record, version)) => {
                ops.extend(self.erase_ops(&record, version)?);
                // The record itself is written again below.
                ops.retain(|op| !matches!(op, Op::Delete { key, .. } if *key == secret_key(name)));
                None
            }
            None => None,
        };
        let mut record = SecretRecord {
            id: kept
                .as_ref()
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), |r| r.id.clone()),
            name: name.to_owned(),
            arn,
            description: state.description,
            kms_key_id: state.kms_key_id,
            created_at: state.created_at,
            last_changed_at: self.clock.now(),
            last_accessed_day: kept.as_ref().and_then(|r| r.last_accessed_day),
            deletion_date: state.deletion_date,
            tags: state.tags,
            versions: Vec::with_capacity(state.versions.len()),
            rotation: None,
            resource_policy: state.resource_policy,
            primary_region: Some(from.to_owned()),
            replicas: Vec::new(),
            former_primary: None,
        };
        for shipped in state.versions {
            let held = kept
                .as_ref()
                .and_then(|r| {
                    r.versions
                        .iter()
                        .find(|m| m.version_id == shipped.version_id)
                })
                .filter(|m| m.has_value || !shipped.has_value);
            let mut meta = match held {
                Some(m) => m.clone(),
                None => SecretVersionMeta::empty(&shipped.version_id, shipped.created_at),
            };
            meta.created_at = shipped.created_at;
            meta.stages = shipped.stages;
            if shipped.has_value && !meta.has_value {
                let value = shipped.value.ok_or_else(|| {
                    SecretsError::InvalidRequest(format!(
                        "the value of version {} was not sent; replicate the secret again",
                        shipped.version_id
                    ))
                })?;
                let (sealed, kms_key_arn) = self
                    .seal(&record.arn, &shipped.version_id, &record.kms_key_id, &value)
                    .await?;
                meta.has_value = true;
                meta.kms_key_arn = kms_key_arn;
                ops.push(Op::Put {
                    key: value_key(&record, &shipped.version_id),
                    value: store::encode(&sealed),
                    expect: Expect::Any,
                });
            }
            record.versions.push(meta);
        }
        if let Some(old) = &kept {
            for gone in old
                .versions
                .iter()
                .filter(|m| !record.versions.iter().any(|v| v.version_id == m.version_id))
            {
                ops.push(Op::Delete {
                    key: value_key(old, &gone.version_id),
                    expect: Expect::Any,
                });
            }
        }
        ops.push(Op::Put {
            key: secret_key(name),
            value: store::encode(&record),
            expect,
        });
        ops.extend(indexes::entries_of(&record));
        Ok((ops, record))
    }
}

/// Why a primary's entry cannot change what this site holds under the name, if it cannot.
fn refusal(
    from: &str,
    local: Option<&(SecretRecord, u64)>,
    state: &ReplicaState,
) -> Option<Applied> {
    let (record, _) = local?;
    if record.primary_region.as_deref() == Some(from) {
        return None;
    }
    // Checked before overwriting: entries logged before the old primary heard of the
    // promotion must not undo it.
    let promoted =
        record.primary_region.is_none() && record.former_primary.as_deref() == Some(from);
    if promoted || record.primary_region.is_some() {
        return Some(promoted_or_refused(from, record));
    }
    if !state.force_overwrite {
        return Some(Applied::Refused(
            "a secret with this name already exists in this region".into(),
        ));
    }
    if !record.replicas.is_empty() {
        return Some(Applied::Refused(
            "a secret with this name already exists in this region and has replicas of its own"
                .into(),
        ));
    }
    None
}

/// The answer to `from` about a local secret that is not its replica: promoted from it, or
/// another site's replica.
fn promoted_or_refused(from: &str, record: &SecretRecord) -> Applied {
    match &record.primary_region {
        None if record.former_primary.as_deref() == Some(from) => Applied::Promoted,
        Some(other) => Applied::Refused(format!(
            "a replica of the secret with this name from region {other} exists in this region"
        )),
        None => Applied::Refused("a secret with this name already exists in this region".into()),
    }
}

/// `arn:keyward:secretsmanager:<region>:...` with this site's region.
fn replica_arn(primary_arn: &str, region: &str) -> Option<String> {
    let mut parts: Vec<&str> = primary_arn.splitn(5, ':').collect();
    if parts.len() != 5 || parts[0] != "arn" || parts[2] != "secretsmanager" {
        return None;
    }
    parts[3] = region;
    Some(parts.join(":"))
}

/// The primary secret records `ops` write that have replicas, or that `fanout` names.
fn replicated_records(ops: &[Op], fanout: &Fanout) -> Result<Vec<SecretRecord>, SecretsError> {
    let mut records = Vec::new();
    for op in ops {
        let Op::Put { key, value, .. } = op else {
            continue;
        };
        if !key.starts_with(super::SECRET_PREFIX) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_arn_is_the_primary_arn_in_this_region() {
        assert_eq!(
            replica_arn(
                "arn:keyward:secretsmanager:site-a:000000000000:secret:db/x-AbC123",
                "site-b"
            )
            .as_deref(),
            Some("arn:keyward:secretsmanager:site-b:000000000000:secret:db/x-AbC123")
        );
        assert_eq!(replica_arn("arn:keyward:kms:a:0:key/k", "b"), None);
        assert_eq!(replica_arn("nonsense", "b"), None);
    }
}
