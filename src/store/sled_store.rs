//! The embedded backend: one sled database in the data directory. Every value is stored behind
//! an 8-byte big-endian version, so a guarded write compares without decoding the record.
//!
//! Reads call sled directly from async code: they are served from sled's page cache or one
//! small disk read, too short to be worth a thread hand-off. Only the flush, which waits for
//! the disk, runs on the blocking pool.

use super::{Backend, Expect, Op, Result, StoreError, Versioned};
use std::path::Path;

#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    durability: std::sync::Arc<GroupFlush>,
    /// Writers share it; a snapshot holds it alone (sled has no snapshot reads, so a
    /// consistent copy of the whole store pauses writes while it is read).
    writes: std::sync::Arc<tokio::sync::RwLock<()>>,
}

/// Group commit: one flush at a time, and every commit that completed before a flush began is
/// made durable by it. Concurrent writers share flushes instead of queueing one each, and
/// sled never sees concurrent flushes (sled 0.34's `flush_async` was seen to deadlock under
/// 64 concurrent writers).
#[derive(Default)]
struct GroupFlush {
    /// Commits applied so far.
    applied: std::sync::atomic::AtomicU64,
    /// Commits known to be on disk.
    flushed: std::sync::atomic::AtomicU64,
    running: tokio::sync::Mutex<()>,
}

const VERSION_LEN: usize = 8;

fn split(key: &[u8], raw: &[u8]) -> Result<Versioned> {
    if raw.len() < VERSION_LEN {
        return Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "value shorter than its version prefix".into(),
        });
    }
    let (version, value) = raw.split_at(VERSION_LEN);
    let mut bytes = [0u8; VERSION_LEN];
    bytes.copy_from_slice(version);
    Ok(Versioned {
        value: value.to_vec(),
        version: u64::from_be_bytes(bytes),
    })
}

impl SledStore {
    /// Opens (creating if needed) the database directory. sled holds a lock on it, so a second
    /// server on the same directory fails here.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            // Every commit flushes (group commit): sled's own periodic flusher thread would add
            // nothing but a thread holding the database open after it is dropped.
            db: sled::Config::new().path(dir).flush_every_ms(None).open()?,
            durability: Default::default(),
            writes: Default::default(),
        })
    }

    fn apply(&self, ops: &[Op]) -> Result<()> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let outcome = self.db.transaction(|tx| {
            for op in ops {
                let (key, expect) = match op {
                    Op::Put { key, expect, .. } | Op::Delete { key, expect } => (key, *expect),
                };
                let current = tx.get(key)?;
                let current_version = match &current {
                    Some(raw) => Some(
                        split(key, raw)
                            .map_err(ConflictableTransactionError::Abort)?
                            .version,
                    ),
                    None => None,
                };
                let holds = match expect {
                    Expect::Any => true,
                    Expect::Absent => current_version.is_none(),
                    Expect::Version(v) => current_version == Some(v),
                };
                if !holds {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        String::from_utf8_lossy(key).into_owned(),
                    )));
                }
                match op {
                    Op::Put { key, value, .. } => {
                        let next = current_version.unwrap_or(0) + 1;
                        let mut raw = Vec::with_capacity(VERSION_LEN + value.len());
                        raw.extend_from_slice(&next.to_be_bytes());
                        raw.extend_from_slice(value);
                        tx.insert(key.as_slice(), raw)?;
                    }
                    Op::Delete { key, .. } => {
                        tx.remove(key.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Returns once every commit applied before the call is on disk.
    async fn make_durable(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let group = &self.durability;
        let mine = group.applied.fetch_add(1, SeqCst) + 1;
        let _running = group.running.lock().await;
        if group.flushed.load(SeqCst) >= mine {
            return Ok(());
        }
        // Everything applied up to here is covered by the flush that starts now.
        let covered = group.applied.load(SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))??;
        group.flushed.fetch_max(covered, SeqCst);
        Ok(())
    }
}

impl Backend for SledStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        self.db.get(key)?.map(|raw| split(key, &raw)).transpose()
    }

    async fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>> {
        let mut out = Vec::new();
        let iter = match start_after {
            Some(after) => {
                let mut from = after.to_vec();
                from.push(0);
                self.db.range(from..)
            }
            None => self.db.range(prefix.to_vec()..),
        };
        for entry in iter {
            let (key, raw) = entry?;
            if !key.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((key.to_vec(), split(&key, &raw)?));
        }
        Ok(out)
    }

    async fn scan_rev(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>> {
        let mut out = Vec::new();
        let iter = match start_before {
            Some(before) => self.db.range(prefix.to_vec()..before.to_vec()),
            None => self.db.scan_prefix(prefix),
        };
        for entry in iter.rev() {
            let (key, raw) = entry?;
            if !key.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((key.to_vec(), split(&key, &raw)?));
        }
        Ok(out)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        {
            let _writing = self.writes.read().await;
            self.apply(&ops)?;
        }
        self.make_durable().await
    }

    async fn insert_once(&self, key: &[u8]) -> Result<bool> {
        let _writing = self.writes.read().await;
        let raw = 1u64.to_be_bytes();
        Ok(self
            .db
            .compare_and_swap(key, None::<&[u8]>, Some(&raw[..]))?
            .is_ok())
    }

    async fn snapshot(&self) -> Result<Vec<(Vec<u8>, Versioned)>> {
        let _alone = self.writes.write().await;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            db.iter()
                .map(|entry| {
                    let (key, raw) = entry?;
                    Ok((key.to_vec(), split(&key, &raw)?))
                })
                .collect()
        })
        .await
        .map_err(|e| StoreError::Io(sled::Error::ReportableBug(e.to_string())))?
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn put(key: &str) -> Vec<Op> {
        vec![Op::Put {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            expect: Expect::Any,
        }]
    }

    /// A snapshot and the commits around it never interleave: a commit waits while a snapshot
    /// reads, and a snapshot waits for the commit being applied.
    #[tokio::test]
    async fn a_snapshot_excludes_commits_while_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(put("a")).await.unwrap();

        // As a snapshot holds it: the commit does not land until it is released.
        let reading = store.writes.write().await;
        let writer = store.clone();
        let commit = tokio::spawn(async move { writer.commit(put("b")).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!commit.is_finished(), "a commit went through a snapshot");
        assert!(store.db.get(b"b").unwrap().is_none());
        drop(reading);
        commit.await.unwrap().unwrap();

        // As a commit holds it: the snapshot waits, then sees the commit whole.
        let applying = store.writes.read().await;
        let reader = store.clone();
        let snapshot = tokio::spawn(async move { reader.snapshot().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!snapshot.is_finished(), "a snapshot read during a commit");
        drop(applying);
        let keys: Vec<Vec<u8>> = snapshot
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
    }
}
