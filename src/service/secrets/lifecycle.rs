//! Deletion (SPEC Deletion 1-4): scheduled with a recovery window or forced, restore, and the
//! purge that removes data and wrapped keys for good once the window ends.

use super::{SECRET_PREFIX, SecretsError, SecretsService, limits, secret_key, value_prefix};
use crate::service::clock::SECONDS_PER_DAY;
use crate::store::{self, Expect, Op, SecretRecord};

impl SecretsService {
    /// Returns (ARN, name, deletion date).
    pub async fn delete_secret(
        &self,
        secret_id: &str,
        recovery_window_in_days: Option<i64>,
        force_delete_without_recovery: bool,
    ) -> Result<(String, String, i64), SecretsError> {
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
        let (snapshot, _) = self.resolve(secret_id)?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve(&snapshot.arn)?;
        let now = self.clock.now();
        if force_delete_without_recovery {
            self.erase(&record, version).await?;
            tracing::info!(secret = %record.name, "deleted secret without recovery");
            return Ok((record.arn, record.name, now));
        }
        if record.deletion_date.is_some() {
            return Err(SecretsError::InvalidRequest(format!(
                "secret {} is already marked for deletion",
                record.name
            )));
        }
        let date = now + days * SECONDS_PER_DAY;
        record.deletion_date = Some(date);
        self.store
            .commit(vec![Op::Put {
                key: secret_key(&record.name),
                value: store::encode(&record),
                expect: Expect::Version(version),
            }])
            .await?;
        tracing::info!(secret = %record.name, days, "scheduled secret deletion");
        Ok((record.arn, record.name, date))
    }

    pub async fn restore_secret(&self, secret_id: &str) -> Result<(String, String), SecretsError> {
        let mut names = (String::new(), String::new());
        self.change_record(secret_id, |record| {
            if record.deletion_date.is_none() {
                return Err(SecretsError::InvalidRequest(format!(
                    "secret {} is not marked for deletion",
                    record.name
                )));
            }
            record.deletion_date = None;
            names = (record.arn.clone(), record.name.clone());
            Ok(())
        })
        .await?;
        Ok(names)
    }

    /// Removes every secret whose recovery window has ended; returns how many.
    pub async fn purge_deleted(&self) -> Result<usize, SecretsError> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for (key, value) in self.store.scan_all(SECRET_PREFIX)? {
            match store::decode::<SecretRecord>(&key, &value.value) {
                Ok(record) if record.deletion_date.is_some_and(|d| d <= now) => {
                    due.push(record.name)
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping a damaged secret record"),
            }
        }
        let mut purged = 0;
        for name in due {
            let _writer = self.lock(&name).lock().await;
            // Re-check under the lock: a restore may have won the race.
            if let Some((record, version)) = self.load_by_name(&name)?
                && record.deletion_date.is_some_and(|d| d <= now)
            {
                self.erase(&record, version).await?;
                tracing::info!(secret = %name, "purged secret after its recovery window");
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Deletes the record and every stored value (sealed values and wrapped keys) at once.
    async fn erase(&self, record: &SecretRecord, version: u64) -> Result<(), SecretsError> {
        let prefix = value_prefix(record);
        let mut ops = vec![Op::Delete {
            key: secret_key(&record.name),
            expect: Expect::Version(version),
        }];
        ops.extend(
            self.store
                .scan_all(&prefix)?
                .into_iter()
                .map(|(key, _)| Op::Delete {
                    key,
                    expect: Expect::Any,
                }),
        );
        self.store.commit(ops).await?;
        Ok(())
    }
}
