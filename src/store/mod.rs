//! Persistence: the only code that touches sled.
//!
//! The interface is deliberately plain key-value so that a distributed store (etcd) can stand
//! in later: `get`, a prefix `scan` from a start key, and an atomic `commit` of several puts and
//! deletes guarded by compare-on-version. Every value carries a version number that the store
//! bumps on each write. A commit is flushed to disk before it returns: what a client sees
//! acknowledged survives a crash.

mod records;

pub use records::{
    AliasRecord, InFlight, KeyRecord, KeyRotation, KeyState, KeyVersionRecord, PasswordPolicy,
    PostgresStrategy, ReplicaRecord, RotationRecord, RotationStep, RotatorSpec, SecretRecord,
    SecretValueRecord, SecretVersionMeta, Tag, decode, encode,
};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(#[from] sled::Error),
    /// A guarded write found another version than expected: re-read and retry.
    #[error("concurrent update of {0}")]
    Conflict(String),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A stored value and the version the store gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub version: u64,
}

/// The condition a write in a commit requires of the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Any,
    Absent,
    Version(u64),
}

#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expect: Expect,
    },
    Delete {
        key: Vec<u8>,
        expect: Expect,
    },
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    durability: std::sync::Arc<GroupFlush>,
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

impl Store {
    /// Opens (creating if needed) the database directory. sled holds a lock on it, so a second
    /// server on the same directory fails here.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            // Every commit flushes (group commit): sled's own periodic flusher thread would add
            // nothing but a thread holding the database open after it is dropped.
            db: sled::Config::new().path(dir).flush_every_ms(None).open()?,
            durability: Default::default(),
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        self.db.get(key)?.map(|raw| split(key, &raw)).transpose()
    }

    /// Up to `limit` entries whose keys start with `prefix`, in key order, strictly after
    /// `start_after` when given.
    pub fn scan(
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

    /// Like `scan`, in reverse key order, strictly before `start_before` when given.
    pub fn scan_rev(
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

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn scan_all(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>> {
        self.scan(prefix, None, usize::MAX)
    }

    /// Applies all operations atomically if every expectation holds, then flushes.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let outcome = self.db.transaction(|tx| {
            for op in &ops {
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
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        self.make_durable().await
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

    /// Puts `key` (with an empty value) unless present; true if this call put it. Not flushed
    /// at once: for bookkeeping that tolerates losing the last moments before a crash (the
    /// alarms' first-read history).
    pub fn insert_once(&self, key: &[u8]) -> Result<bool> {
        let raw = 1u64.to_be_bytes();
        Ok(self
            .db
            .compare_and_swap(key, None::<&[u8]>, Some(&raw[..]))?
            .is_ok())
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Flushes everything; called at shutdown.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, expect: Expect) -> Op {
        Op::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            expect,
        }
    }

    #[tokio::test]
    async fn guarded_commits_are_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .commit(vec![put("a", "1", Expect::Absent)])
            .await
            .unwrap();
        let a = store.get(b"a").unwrap().unwrap();
        assert_eq!((a.value.as_slice(), a.version), (&b"1"[..], 1));

        // The second op's expectation fails: the first must not be applied either.
        let err = store
            .commit(vec![
                put("b", "2", Expect::Absent),
                put("a", "x", Expect::Version(7)),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)));
        assert!(store.get(b"b").unwrap().is_none());

        store
            .commit(vec![put("a", "3", Expect::Version(1))])
            .await
            .unwrap();
        assert_eq!(store.get(b"a").unwrap().unwrap().version, 2);
    }

    #[tokio::test]
    async fn scan_pages_within_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ops = ["k/1", "k/2", "k/3", "l/1"]
            .iter()
            .map(|k| put(k, "v", Expect::Any))
            .collect();
        store.commit(ops).await.unwrap();
        let first = store.scan(b"k/", None, 2).unwrap();
        assert_eq!(
            first.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
            [b"k/1", b"k/2"]
        );
        let rest = store.scan(b"k/", Some(b"k/2"), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, b"k/3");
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .commit(vec![put("a", "1", Expect::Absent)])
                .await
                .unwrap();
        }
        // sled lets go of its lock a moment after the last handle is dropped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let store = loop {
            match Store::open(dir.path()) {
                Ok(store) => break store,
                Err(e)
                    if std::time::Instant::now() < deadline
                        && e.to_string().contains("acquire lock") =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(store.get(b"a").unwrap().unwrap().value, b"1");
    }
}
