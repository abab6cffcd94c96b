//! Secondary indexes over the secret records, so no request reads every secret: by creation
//! (ListSecrets' order), by deletion date (the purge) and by rotation due time (the scheduler).
//! Each entry is `<prefix><time, 20 digits>/<name>` with an empty value, written in the same
//! commit as the record it describes. Readers check the record and skip (or remove) an entry
//! that no longer matches, so a stale entry costs a lookup, never a wrong answer.

use super::{SecretsError, SecretsService};
use crate::store::keyspace::{
    self, SECRETS_BY_CREATION, SECRETS_BY_DELETION, SECRETS_BY_ROTATION, time_key,
};
use crate::store::{self, Expect, Op, SecretRecord, StoreError};
use crate::time::Timestamp;

/// Index changes when an entry's time goes from `old` to `new` (None: no entry).
pub fn move_entry(
    prefix: &[u8],
    name: &str,
    old: Option<Timestamp>,
    new: Option<Timestamp>,
) -> Vec<Op> {
    if old == new {
        return Vec::new();
    }
    let mut ops = Vec::new();
    if let Some(time) = old {
        ops.push(Op::Delete {
            key: time_key(prefix, time, name),
            expect: Expect::Any,
        });
    }
    if let Some(time) = new {
        ops.push(Op::Put {
            key: time_key(prefix, time, name),
            value: Vec::new(),
            expect: Expect::Any,
        });
    }
    ops
}

/// Every index entry `record` has.
pub fn entries_of(record: &SecretRecord) -> Vec<Op> {
    let mut ops = move_entry(
        SECRETS_BY_CREATION,
        &record.name,
        None,
        Some(record.created_at),
    );
    ops.extend(move_entry(
        SECRETS_BY_DELETION,
        &record.name,
        None,
        record.deletion_date,
    ));
    ops.extend(move_entry(
        SECRETS_BY_ROTATION,
        &record.name,
        None,
        record.rotation.as_ref().and_then(|r| r.due_at()),
    ));
    ops
}

/// Removes every index entry of `record` (it is being erased).
pub fn remove_entries_of(record: &SecretRecord) -> Vec<Op> {
    entries_of(record)
        .into_iter()
        .map(|op| match op {
            Op::Put { key, .. } | Op::Delete { key, .. } => Op::Delete {
                key,
                expect: Expect::Any,
            },
        })
        .collect()
}

impl SecretsService {
    /// Builds the indexes from the records once, for a store made before they existed.
    /// Returns how many records were indexed (0 on every later start: nothing is read).
    pub async fn ensure_indexes(&self) -> Result<usize, SecretsError> {
        if self
            .store
            .get(keyspace::SECRET_INDEXES_BUILT)
            .await?
            .is_some()
        {
            return Ok(0);
        }
        let mut ops = Vec::new();
        let mut indexed = 0;
        for (key, value) in self.store.scan_all(keyspace::SECRETS).await? {
            match store::decode::<SecretRecord>(&key, &value.value) {
                Ok(record) => {
                    ops.extend(entries_of(&record));
                    indexed += 1;
                }
                Err(e) => tracing::error!(error = %e, "not indexing a damaged secret record"),
            }
        }
        ops.push(Op::Put {
            key: keyspace::SECRET_INDEXES_BUILT.to_vec(),
            value: Vec::new(),
            expect: Expect::Absent,
        });
        match self.store.commit(ops).await {
            // Another node of a cluster built them at the same moment.
            Err(StoreError::Conflict(_)) => return Ok(0),
            other => other?,
        }
        if indexed > 0 {
            tracing::info!(secrets = indexed, "built the secret indexes (once)");
        }
        Ok(indexed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn moving_an_entry_deletes_the_old_and_puts_the_new() {
        let moved = move_entry(SECRETS_BY_DELETION, "s", Some(at(5)), Some(at(9)));
        assert!(
            matches!(&moved[..], [Op::Delete { key: old, .. }, Op::Put { key: new, .. }]
            if *old == time_key(SECRETS_BY_DELETION, at(5), "s") && *new == time_key(SECRETS_BY_DELETION, at(9), "s"))
        );
        assert!(move_entry(SECRETS_BY_DELETION, "s", Some(at(5)), Some(at(5))).is_empty());
        assert!(matches!(
            &move_entry(SECRETS_BY_DELETION, "s", Some(at(5)), None)[..],
            [Op::Delete { .. }]
        ));
    }
}
