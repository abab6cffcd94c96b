//! Destroying keys whose deletion window has ended. Runs from a background task; the schedule
//! is the key record itself, so a restart loses nothing.

use super::KmsService;
use crate::service::KmsError;
use crate::store::{Expect, KeyRecord, KeyState};

impl KmsService {
    /// Destroys every key whose deletion date has passed: its material in the root of trust
    /// first, then its record and aliases. Returns how many keys were destroyed.
    pub async fn purge_expired_keys(&self) -> Result<usize, KmsError> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for (_, record, version) in self.keys.scan_all().await? {
            if record.state == KeyState::PendingDeletion
                && record.deletion_date.is_some_and(|date| date <= now)
            {
                due.push((record, version));
            }
        }
        let count = due.len();
        for (record, version) in due {
            self.destroy(record, version).await?;
        }
        let imports = self.purge_expired_imports().await?;
        if imports > 0 {
            tracing::info!(
                keys = imports,
                "expired imported key material or import parameters"
            );
        }
        Ok(count)
    }

    /// Destroys a key this server just created and never handed out: the default key a
    /// cluster node made at the same moment as another node, whose alias won.
    pub async fn discard_unused_key(&self, key_id: &str) -> Result<(), KmsError> {
        match self.keys.get(key_id).await? {
            Some((record, version)) => self.destroy(record, version).await,
            None => Ok(()),
        }
    }

    async fn destroy(&self, record: KeyRecord, version: u64) -> Result<(), KmsError> {
        // Past its deletion date a key can no longer be cancelled or used, so destroying the
        // material before removing the record cannot race with a client. If we crash in
        // between, the next run destroys again (a no-op) and removes the record.
        for key_version in &record.versions {
            let material = key_version.material.clone();
            self.hw.run(move |root| root.destroy_key(&material)).await?;
        }
        let mut ops = vec![self.keys.delete(&record.key_id, Expect::Version(version))];
        for (alias, alias_version) in self.aliases_of(&record.key_id).await? {
            ops.push(
                self.aliases
                    .delete(&alias.alias_name, Expect::Version(alias_version)),
            );
        }
        self.store.commit(ops).await?;
        if let Some(parameters) = record.import.and_then(|i| i.parameters) {
            self.destroy_wrapping_key(parameters.wrapping_key).await;
        }
        tracing::info!(key_id = %record.key_id, "deleted key and its material");
        Ok(())
    }
}
