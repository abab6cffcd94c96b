//! Persistence: the only code that touches sled or etcd, and the owner of the keyspace.
//!
//! The interface is deliberately plain key-value, with two [`Backend`]s: sled, embedded in one
//! server's data directory (the default), and etcd, shared by the nodes of a cluster (see
//! `etcd_store`). Operations: `get`, a prefix scan forward or backward from a start key, an
//! atomic `commit` of several puts and deletes guarded by compare-on-version, and insert-once.
//! Every value carries a version number that the store bumps on each write. A commit is durable
//! before it returns: what a client sees acknowledged survives a crash.
//!
//! Every key is built by [`keyspace`]. A [`Table`] reads a typed record with its version and
//! runs the guarded read-modify-write. This module must not use any layer but `crypto`,
//! `time`, `policy` and `telemetry`.

#[cfg(test)]
mod conformance;
mod etcd_store;
pub mod fence;
pub mod keyspace;
mod records;
mod sled_store;
mod table;

pub use etcd_store::{EtcdOptions, EtcdStore, EtcdTls};
pub use records::{
    AliasRecord, ImportParameters, ImportRecord, InFlight, KeyRecord, KeyRotation, KeyState,
    KeyVersionRecord, ORIGIN_EXTERNAL, PasswordPolicy, PostgresStrategy, ReplicaRecord,
    RotationRecord, RotationStep, RotatorSpec, SecretRecord, SecretValueRecord, SecretVersionMeta,
    Tag, decode, encode,
};
pub use sled_store::SledStore;
pub use table::{Table, Updated};

use std::future::Future;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(#[from] sled::Error),
    /// The store cannot be reached or refuses writes for now (etcd without a quorum, at its
    /// space quota, past a deadline). Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A duty's commit refused because this node no longer holds the duty (see [`fence`]).
    #[error("this node no longer holds the {0} duty")]
    Fenced(String),
    /// A guarded write found another version than expected: re-read and retry. Names the key
    /// (lossy UTF-8) of the first expectation that failed.
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

/// What a store backend implements. The contract, which callers rely on:
///
/// - Versions: a put of an absent key gives version 1, each later put adds one, a delete
///   makes the key absent (its next put is version 1 again). Within a commit, each put counts
///   one (the replica batch predicts the versions its earlier operations leave); a commit that
///   puts one key several times leaves it at least one version higher (sled: one per put;
///   etcd: one per commit).
/// - `commit` applies its operations in order, all or none: a later operation on a key sees
///   the earlier ones in the same commit (a replica batch may put one secret twice). Each
///   expectation is checked against the state the earlier operations left. It returns once
///   the commit is durable; on a failed expectation nothing is written and the error is
///   [`StoreError::Conflict`] naming that key.
/// - `scan` returns up to `limit` entries whose keys start with `prefix`, in ascending byte
///   order, strictly after `start_after` when given; `scan_rev` the same in descending order,
///   strictly before `start_before`. Reads see every commit that returned before they began.
/// - `insert_once` puts `key` with an empty value unless it exists and says whether it did;
///   it need not be durable at once.
pub trait Backend: Send + Sync {
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Versioned>>> + Send;

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Versioned)>>> + Send;

    fn scan_rev(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Versioned)>>> + Send;

    fn commit(&self, ops: Vec<Op>) -> impl Future<Output = Result<()>> + Send;

    fn insert_once(&self, key: &[u8]) -> impl Future<Output = Result<bool>> + Send;

    /// Every entry, in key order, as of one moment: no commit is half in it (sled pauses
    /// writes while it reads; etcd reads every page at one revision).
    fn snapshot(&self) -> impl Future<Output = Result<Vec<(Vec<u8>, Versioned)>>> + Send;

    /// Bytes the store occupies, for a gauge: may be a recent figure rather than a live one,
    /// so that rendering metrics never waits on the network.
    fn size_on_disk(&self) -> Result<u64>;

    /// Makes everything written so far durable; called at shutdown.
    fn flush(&self) -> Result<()>;
}

/// The store a server runs on: one variant per backend. An enum rather than `dyn Backend`:
/// the backends' async methods are not object-safe, and a `match` makes adding a backend a
/// compile error at every place that must handle it.
#[derive(Clone)]
pub enum Store {
    Sled(SledStore),
    /// Boxed: the etcd client is large, and a store is cloned into every service.
    Etcd(Box<EtcdStore>),
}

/// Calls one method on whichever backend this store is.
macro_rules! dispatch {
    ($store:expr, $backend:ident => $call:expr) => {
        match $store {
            Store::Sled($backend) => $call,
            Store::Etcd($backend) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the embedded store in `dir`. sled holds a lock on it, so a
    /// second server on the same directory fails here.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self::Sled(SledStore::open(dir)?))
    }

    /// Connects to the site's etcd cluster.
    pub async fn connect_etcd(options: EtcdOptions) -> Result<Self> {
        Ok(Self::Etcd(Box::new(EtcdStore::connect(options).await?)))
    }

    /// The etcd backend, when this store is one: the cluster's leases and elections use it.
    pub fn etcd(&self) -> Option<&EtcdStore> {
        match self {
            Store::Etcd(etcd) => Some(etcd),
            Store::Sled(_) => None,
        }
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        dispatch!(self, b => b.get(key).await)
    }

    /// Up to `limit` entries whose keys start with `prefix`, in key order, strictly after
    /// `start_after` when given.
    pub async fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>> {
        dispatch!(self, b => b.scan(prefix, start_after, limit).await)
    }

    /// Like `scan`, in reverse key order, strictly before `start_before` when given.
    pub async fn scan_rev(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>> {
        dispatch!(self, b => b.scan_rev(prefix, start_before, limit).await)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub async fn scan_all(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Versioned)>> {
        self.scan(prefix, None, usize::MAX).await
    }

    /// Applies all operations atomically if every expectation holds; returns once durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        dispatch!(self, b => b.commit(ops).await)
    }

    /// Puts `key` (with an empty value) unless present; true if this call put it. Not made
    /// durable at once: for bookkeeping that tolerates losing the last moments before a crash
    /// (the alarms' first-read history).
    pub async fn insert_once(&self, key: &[u8]) -> Result<bool> {
        dispatch!(self, b => b.insert_once(key).await)
    }

    /// Every entry as of one moment (see [`Backend::snapshot`]).
    pub async fn snapshot(&self) -> Result<Vec<(Vec<u8>, Versioned)>> {
        dispatch!(self, b => b.snapshot().await)
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        dispatch!(self, b => b.size_on_disk())
    }

    /// Flushes everything; called at shutdown.
    pub fn flush(&self) -> Result<()> {
        dispatch!(self, b => b.flush())
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
    async fn the_sled_backend_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        super::conformance::check(&store).await;
    }

    #[tokio::test]
    async fn guarded_commits_are_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .commit(vec![put("a", "1", Expect::Absent)])
            .await
            .unwrap();
        let a = store.get(b"a").await.unwrap().unwrap();
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
        assert!(store.get(b"b").await.unwrap().is_none());

        store
            .commit(vec![put("a", "3", Expect::Version(1))])
            .await
            .unwrap();
        assert_eq!(store.get(b"a").await.unwrap().unwrap().version, 2);
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
        let first = store.scan(b"k/", None, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
            [b"k/1", b"k/2"]
        );
        let rest = store.scan(b"k/", Some(b"k/2"), 10).await.unwrap();
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
        assert_eq!(store.get(b"a").await.unwrap().unwrap().value, b"1");
    }
}
