//! Deletion (rule Deletion 1-4): scheduled with a recovery window or forced, restore, and the
//! purge that removes data and wrapped keys for good once the window ends.

use super::indexes;
use super::write::Named;
use super::{SecretsError, SecretsService, limits, secret_key, value_key, value_prefix};
use crate::store::keyspace::{self, SECRETS_BY_DELETION};
use crate::store::{self, Expect, Op, SecretRecord};
use crate::time::Timestamp;

/// A deletion scheduled (or done, when forced: the date is then now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub secret: Named,
    pub deletion_date: Timestamp,
}

/// DeleteSecret: scheduled after a recovery window (default 30 days), or forced now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub secret_id: String,
    pub recovery_window_in_days: Option<i64>,
    pub force_delete_without_recovery: bool,
}

impl Deletion {
    pub fn scheduled(secret_id: impl Into<String>, recovery_window_in_days: Option<i64>) -> Self {
        Self {
            secret_id: secret_id.into(),
            recovery_window_in_days,
            force_delete_without_recovery: false,
        }
    }

    pub fn forced(secret_id: impl Into<String>) -> Self {
        Self {
            force_delete_without_recovery: true,
            ..Self::scheduled(secret_id, None)
        }
    }
}

impl SecretsService {
    pub async fn delete_secret(&self, request: Deletion) -> Result<Deleted, SecretsError> {
        let Deletion {
            secret_id,
            recovery_window_in_days,
            force_delete_without_recovery,
        } = request;
        let secret_id = secret_id.as_str();
        if force_delete_without_recovery && recovery_window_in_days.is_some() {
            return Err(SecretsError::invalid(
                "recovery_window_in_days",
                "cannot be combined with force_delete_without_recovery",
            ));
        }
        let days = recovery_window_in_days.unwrap_or(limits::DEFAULT_RECOVERY_DAYS);
        if !limits::RECOVERY_DAYS.contains(&days) {
            return Err(SecretsError::invalid(
                "recovery_window_in_days",
                "must be between 7 and 30",
            ));
        }
        let (snapshot, _) = self.resolve(secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve(&snapshot.arn).await?;
        self.writable(&record)?;
        if !record.replicas.is_empty() {
            let regions: Vec<&str> = record.replicas.iter().map(|r| r.region.as_str()).collect();
            return Err(SecretsError::InvalidRequest(format!(
                "{} is replicated to {}: remove its replicas first (RemoveRegionsFromReplication)",
                record.name,
                regions.join(", ")
            )));
        }
        let now = self.clock.now();
        if force_delete_without_recovery {
            self.erase(&record, version).await?;
            tracing::info!(secret = %record.name, "deleted secret without recovery");
            return Ok(Deleted {
                secret: Named::of(record),
                deletion_date: now,
            });
        }
        if record.deletion_date.is_some() {
            return Err(SecretsError::InvalidRequest(format!(
                "secret {} is already marked for deletion",
                record.name
            )));
        }
        let date = now.add_days(days);
        record.deletion_date = Some(date);
        let mut ops = vec![Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        }];
        ops.extend(indexes::move_entry(
            SECRETS_BY_DELETION,
            &record.name,
            None,
            Some(date),
        ));
        self.store.commit(ops).await?;
        tracing::info!(secret = %record.name, days, "scheduled secret deletion");
        Ok(Deleted {
            secret: Named::of(record),
            deletion_date: date,
        })
    }

    pub async fn restore_secret(&self, secret_id: &str) -> Result<Named, SecretsError> {
        let (snapshot, _) = self.resolve(secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve(&snapshot.arn).await?;
        self.writable(&record)?;
        let Some(date) = record.deletion_date.take() else {
            return Err(SecretsError::InvalidRequest(format!(
                "secret {} is not marked for deletion",
                record.name
            )));
        };
        let mut ops = vec![Op::Put {
            key: secret_key(&record.name),
            value: store::encode(&record),
            expect: Expect::Version(version),
        }];
        ops.extend(indexes::move_entry(
            SECRETS_BY_DELETION,
            &record.name,
            Some(date),
            None,
        ));
        self.store.commit(ops).await?;
        Ok(Named::of(record))
    }

    /// Removes every secret whose recovery window has ended; returns how many. Reads only the
    /// deletion index up to now, never every secret.
    pub async fn purge_deleted(&self) -> Result<usize, SecretsError> {
        let now = self.clock.now();
        let mut purged = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(SECRETS_BY_DELETION, after.as_deref(), 256)
                .await?;
            let Some((last, _)) = page.last() else {
                return Ok(purged);
            };
            after = Some(last.clone());
            for (key, _) in page {
                let Some((date, name)) = keyspace::parse_time_key(SECRETS_BY_DELETION, &key) else {
                    continue;
                };
                if date > now {
                    return Ok(purged);
                }
                let _writer = self.lock(name).lock().await;
                // Re-check under the lock: a restore may have won the race.
                match self.load_by_name(name).await? {
                    Some((record, version)) if record.deletion_date == Some(date) => {
                        self.erase(&record, version).await?;
                        tracing::info!(secret = %name, "purged secret after its recovery window");
                        purged += 1;
                    }
                    _ => {
                        self.store
                            .commit(vec![Op::Delete {
                                key: key.clone(),
                                expect: Expect::Any,
                            }])
                            .await?;
                    }
                }
            }
        }
    }

    /// Deletes the record and every stored value (sealed values and wrapped keys) at once.
    async fn erase(&self, record: &SecretRecord, version: u64) -> Result<(), SecretsError> {
        let ops = self.erase_ops(record, version).await?;
        self.store.commit(ops).await?;
        Ok(())
    }

    /// The writes that delete a secret: its record, index entries and every stored value.
    pub(super) async fn erase_ops(
        &self,
        record: &SecretRecord,
        version: u64,
    ) -> Result<Vec<Op>, SecretsError> {
        let prefix = value_prefix(record);
        let mut ops = vec![Op::Delete {
            key: secret_key(&record.name),
            expect: Expect::Version(version),
        }];
        ops.extend(indexes::remove_entries_of(record));
        // The versions the record lists too: a value written earlier in the same commit
        // (replication applies a batch at once) is not in the store yet.
        let mut keys: std::collections::BTreeSet<Vec<u8>> = record
            .versions
            .iter()
            .map(|v| value_key(record, &v.version_id))
            .collect();
        keys.extend(
            self.store
                .scan_all(&prefix)
                .await?
                .into_iter()
                .map(|(key, _)| key),
        );
        ops.extend(keys.into_iter().map(|key| Op::Delete {
            key,
            expect: Expect::Any,
        }));
        Ok(ops)
    }
}
