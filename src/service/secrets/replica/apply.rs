//! The receiving side: a primary's entries applied to this site's replicas, in batches, and
//! the promotion notices it is owed.

use super::{Applied, Incoming, ReplicaState};
use crate::service::secrets::{SecretsError, SecretsService, indexes, secret_key, value_key};
use crate::store::{self, Expect, Op, SecretRecord, SecretVersionMeta, keyspace};
use std::collections::HashMap;

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

impl SecretsService {
    /// Promotions of `primary`'s replicas it has not been told of; told now, so forgotten.
    pub async fn take_promotions(&self, primary: &str) -> Result<Vec<String>, SecretsError> {
        let prefix = keyspace::replication_promotions(primary);
        let found = self.store.scan_all(&prefix).await?;
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

    /// Applies consecutive entries of `from`'s log (`log_id`) in order, in one commit: one
    /// flush per batch, not per entry. Only `from`'s own replicas change, and a secret of this
    /// site's own only when `from` may overwrite local secrets (this site's configuration for
    /// that peer, whatever the entry asks). Stops at the first
    /// retryable error (root of trust or store unavailable) and returns it after the outcomes
    /// of the entries before it, which are committed; a refusal is final for its entry.
    pub async fn apply_replicated(
        &self,
        from: &str,
        log_id: &str,
        entries: Vec<Delivered>,
        may_overwrite_local: bool,
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
                .apply_one(
                    from,
                    &mut batch,
                    &name,
                    delivered.change,
                    may_overwrite_local,
                )
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
        let applied_key = keyspace::replication_applied(from);
        let applied = self.store.get(&applied_key).await?;
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
        may_overwrite_local: bool,
    ) -> Result<Applied, SecretsError> {
        let incoming = match (change, crate::service::secrets::limits::name(name)) {
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
            None => self.load_by_name(name).await?,
        };
        let (applied, after) = match incoming {
            Incoming::Remove => match local {
                Some((record, version)) if record.primary_region.as_deref() == Some(from) => {
                    batch.ops.extend(self.erase_ops(&record, version).await?);
                    tracing::info!(secret = %name, primary = %from, "replica removed by its primary");
                    (Applied::Applied, None)
                }
                Some(local) => (promoted_or_refused(from, &local.0), Some(local)),
                // Nothing of the caller's here (never created, or removed before).
                None => (Applied::Applied, None),
            },
            Incoming::Upsert(state) => {
                match refusal(from, local.as_ref(), &state, may_overwrite_local) {
                    Some(refused) => (refused, local),
                    None => {
                        let version = local.as_ref().map_or(0, |(_, v)| *v);
                        match self.replica_ops(from, name, local.clone(), state).await {
                            Ok((ops, record)) => {
                                batch.ops.extend(ops);
                                // The store bumps a record's version by one per write.
                                (Applied::Applied, Some((record, version + 1)))
                            }
                            Err(e) if e.is_retryable() => {
                                return Err(e);
                            }
                            Err(e) => (Applied::Refused(e.to_string()), local),
                        }
                    }
                }
            }
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
                ops.extend(self.erase_ops(&record, version).await?);
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
    may_overwrite_local: bool,
) -> Option<Applied> {
    if let Some(policy) = &state.resource_policy
        && crate::policy::Policy::parse(policy, crate::policy::PolicyKind::Resource).is_err()
    {
        // Stored, it would fail closed for everyone; refused, the primary shows why.
        return Some(Applied::Refused(
            "the secret's resource policy is not valid here".into(),
        ));
    }
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
    if !may_overwrite_local {
        return Some(Applied::Refused(format!(
            "a secret with this name already exists in this region, and this region does not let \
             {from} overwrite its own secrets (replication.peers allow_overwrite_local)"
        )));
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

    fn state(resource_policy: Option<&str>) -> ReplicaState {
        ReplicaState {
            primary_arn: "arn:keyward:secretsmanager:site-a:000000000000:secret:db/x-AbC123".into(),
            description: String::new(),
            kms_key_id: String::new(),
            created_at: crate::time::Timestamp::EPOCH,
            deletion_date: None,
            tags: Vec::new(),
            versions: Vec::new(),
            resource_policy: resource_policy.map(str::to_owned),
            force_overwrite: false,
        }
    }

    #[test]
    fn a_replicated_policy_that_does_not_parse_here_is_refused() {
        let valid = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"secretsmanager:DeleteSecret","Resource":"*"}]}"#;
        assert!(refusal("site-a", None, &state(Some(valid)), false).is_none());
        assert!(refusal("site-a", None, &state(None), false).is_none());
        // A condition key this site never supplies: stored, it would deny everyone.
        let unparsable = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:SourceIp":"10.0.0.1"}}}]}"#;
        match refusal("site-a", None, &state(Some(unparsable)), false) {
            Some(Applied::Refused(why)) => assert!(why.contains("resource policy"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
