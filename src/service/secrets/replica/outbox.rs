//! The primary's side of replication: for each peer site, an ordered, durable log of changes
//! in the store, and what is known of how far that peer has applied it.
//!
//! Entries are appended in the same store commit as the change they describe, so a change is
//! logged if and only if it happened. Sequence numbers are assigned under one lock held
//! across that commit: they are contiguous and in commit order, which lets the sender ship a
//! prefix and the replica drop anything at or below what it has applied.

use crate::store::{self, Expect, Op, SecretRecord, Store, StoreError, keyspace};
use crate::time::{Clock, SystemClock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// One logged change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    /// Wall-clock milliseconds when the primary committed the change.
    pub changed_at_ms: i64,
    pub change: Change,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The secret as it was after the change (no values: those are sealed under this site's
    /// keys and read when the entry is sent), and the versions whose values the peer needs.
    Upsert {
        record: Box<SecretRecord>,
        values: Vec<String>,
    },
    /// The peer was removed from the secret's replicas: delete the replica there.
    Remove,
}

/// A peer's view of one secret, for DescribeSecret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStatus {
    InSync,
    InProgress,
    Failed(String),
}

/// How far behind a peer is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lag {
    pub entries: u64,
    pub seconds: f64,
}

/// What a peer answered for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now or before.
    Applied,
    Refused(String),
    /// The replica was promoted: the secret no longer replicates there.
    Promoted,
}

pub struct Outbox {
    store: Store,
    log_id: String,
    peers: BTreeMap<String, Peer>,
    appending: tokio::sync::Mutex<()>,
}

struct Peer {
    state: Mutex<PeerState>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct PeerState {
    last_seq: u64,
    acked: u64,
    /// Secret name → its newest unacknowledged entry.
    pending: HashMap<String, u64>,
    oldest_at_ms: Option<i64>,
    failed: HashMap<String, String>,
    reachable: bool,
}

fn parse_seq(key: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(key).ok()?;
    text.rsplit('/').next()?.parse().ok()
}

impl Outbox {
    /// Loads each peer's log position, pending entries and failures from the store.
    pub async fn open(
        store: Store,
        peers: impl IntoIterator<Item = String>,
    ) -> Result<Self, StoreError> {
        let log_id = match store.get(keyspace::REPLICATION_LOG_ID).await? {
            Some(found) => String::from_utf8_lossy(&found.value).into_owned(),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                store
                    .commit(vec![Op::Put {
                        key: keyspace::REPLICATION_LOG_ID.to_vec(),
                        value: id.clone().into_bytes(),
                        expect: Expect::Absent,
                    }])
                    .await?;
                id
            }
        };
        let mut loaded = BTreeMap::new();
        for region in peers {
            let mut state = PeerState {
                last_seq: match store.get(&keyspace::replication_seq(&region)).await? {
                    Some(found) => parse_seq(&found.value).unwrap_or(0),
                    None => 0,
                },
                ..Default::default()
            };
            let entries = store.scan_all(&keyspace::replication_log(&region)).await?;
            state.acked = match entries.first() {
                Some((key, _)) => parse_seq(key).unwrap_or(1).saturating_sub(1),
                None => state.last_seq,
            };
            for (key, found) in &entries {
                let entry: Entry = store::decode(key, &found.value)?;
                if state.oldest_at_ms.is_none() {
                    state.oldest_at_ms = Some(entry.changed_at_ms);
                }
                if let Some(seq) = parse_seq(key) {
                    state.pending.insert(entry.name, seq);
                }
            }
            let prefix = keyspace::replication_failures(&region);
            for (key, found) in store.scan_all(&prefix).await? {
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                state
                    .failed
                    .insert(name, String::from_utf8_lossy(&found.value).into_owned());
            }
            loaded.insert(
                region,
                Peer {
                    state: Mutex::new(state),
                    wake: tokio::sync::Notify::new(),
                },
            );
        }
        Ok(Self {
            store,
            log_id,
            peers: loaded,
            appending: tokio::sync::Mutex::new(()),
        })
    }

    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    pub fn has_peer(&self, region: &str) -> bool {
        self.peers.contains_key(region)
    }

    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    fn state(&self, region: &str) -> Option<std::sync::MutexGuard<'_, PeerState>> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.peers
            .get(region)
            .map(|p| p.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Starts appending: entries pushed are numbered after everything committed so far, and
    /// nobody else appends until this is committed or dropped.
    pub async fn begin(&self) -> Appending<'_> {
        Appending {
            outbox: self,
            _turn: self.appending.lock().await,
            added: Vec::new(),
            cleared: Vec::new(),
        }
    }

    pub fn status(&self, region: &str, name: &str) -> ReplicaStatus {
        let Some(state) = self.state(region) else {
            return ReplicaStatus::Failed(format!("{region} is not a configured peer site"));
        };
        if let Some(message) = state.failed.get(name) {
            return ReplicaStatus::Failed(message.clone());
        }
        match state.pending.get(name) {
            Some(&seq) if seq > state.acked => ReplicaStatus::InProgress,
            _ => ReplicaStatus::InSync,
        }
    }

    pub fn lag(&self, region: &str) -> Lag {
        let Some(state) = self.state(region) else {
            return Lag::default();
        };
        let entries = state.last_seq - state.acked;
        let seconds = match state.oldest_at_ms {
            Some(at) if entries > 0 => (SystemClock.now_ms() - at).max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        Lag { entries, seconds }
    }

    pub fn reachable(&self, region: &str) -> bool {
        self.state(region).is_some_and(|s| s.reachable)
    }

    pub fn set_reachable(&self, region: &str, reachable: bool) {
        if let Some(mut state) = self.state(region) {
            state.reachable = reachable;
        }
    }

    /// Resolves when an entry for `region` has been committed since the last call.
    pub async fn appended(&self, region: &str) {
        match self.peers.get(region) {
            Some(peer) => peer.wake.notified().await,
            None => std::future::pending().await,
        }
    }

    /// The oldest unacknowledged entries for `region`, at most `limit`.
    pub async fn oldest(
        &self,
        region: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Entry)>, StoreError> {
        self.store
            .scan(&keyspace::replication_log(region), None, limit)
            .await?
            .into_iter()
            .map(|(key, found)| {
                let seq = parse_seq(&key).ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "not a log position".into(),
                })?;
                Ok((seq, store::decode(&key, &found.value)?))
            })
            .collect()
    }

    /// Records the peer's answers to the oldest entries (`(seq, secret name, outcome)`, in
    /// order) and trims them from the log.
    pub async fn acknowledge(
        &self,
        region: &str,
        handled: &[(u64, String, Outcome)],
    ) -> Result<(), StoreError> {
        let Some(&(last, _, _)) = handled.last() else {
            return Ok(());
        };
        let mut ops = Vec::with_capacity(handled.len() + 1);
        let mut failed = HashMap::new();
        for (seq, name, outcome) in handled {
            ops.push(Op::Delete {
                key: keyspace::replication_log_entry(region, *seq),
                expect: Expect::Any,
            });
            match outcome {
                Outcome::Refused(message) => {
                    failed.insert(name.clone(), Some(message.clone()));
                }
                Outcome::Applied | Outcome::Promoted => {
                    failed.insert(name.clone(), None);
                }
            }
        }
        for (name, message) in &failed {
            ops.push(match message {
                Some(message) => Op::Put {
                    key: keyspace::replication_failure(region, name),
                    value: message.clone().into_bytes(),
                    expect: Expect::Any,
                },
                None => Op::Delete {
                    key: keyspace::replication_failure(region, name),
                    expect: Expect::Any,
                },
            });
        }
        self.store.commit(ops).await?;
        let oldest_at_ms = self
            .oldest(region, 1)
            .await?
            .first()
            .map(|(_, e)| e.changed_at_ms);
        if let Some(mut state) = self.state(region) {
            state.acked = state.acked.max(last);
            let acked = state.acked;
            state.pending.retain(|_, seq| *seq > acked);
            state.oldest_at_ms = oldest_at_ms;
            for (name, message) in failed {
                match message {
                    Some(message) => state.failed.insert(name, message),
                    None => state.failed.remove(&name),
                };
            }
        }
        Ok(())
    }
}

/// Entries being added to one commit; see [`Outbox::begin`].
pub struct Appending<'a> {
    outbox: &'a Outbox,
    _turn: tokio::sync::MutexGuard<'a, ()>,
    /// (peer, seq, secret, changed_at_ms)
    added: Vec<(String, u64, String, i64)>,
    /// (peer, secret) whose failure is forgotten.
    cleared: Vec<(String, String)>,
}

impl Appending<'_> {
    /// Adds to `ops` the log entry for `region`. Unknown peers are skipped: the caller
    /// validated regions against the configuration when they were added.
    pub fn push(&mut self, ops: &mut Vec<Op>, region: &str, entry: &Entry) {
        let Some(last) = self.outbox.state(region).map(|s| s.last_seq) else {
            return;
        };
        let already = self.added.iter().filter(|a| a.0 == region).count() as u64;
        let seq = last + already + 1;
        ops.push(Op::Put {
            key: keyspace::replication_log_entry(region, seq),
            value: store::encode(entry),
            expect: Expect::Absent,
        });
        ops.push(Op::Put {
            key: keyspace::replication_seq(region),
            value: seq.to_string().into_bytes(),
            expect: Expect::Any,
        });
        self.added.push((
            region.to_owned(),
            seq,
            entry.name.clone(),
            entry.changed_at_ms,
        ));
    }

    /// Forgets that `region` refused `name` (it is being sent again, or removed).
    pub fn clear_failure(&mut self, ops: &mut Vec<Op>, region: &str, name: &str) {
        ops.push(Op::Delete {
            key: keyspace::replication_failure(region, name),
            expect: Expect::Any,
        });
        self.cleared.push((region.to_owned(), name.to_owned()));
    }

    /// Call once the commit holding the pushed operations succeeded.
    pub fn committed(self) {
        for (region, seq, name, at) in &self.added {
            if let Some(mut state) = self.outbox.state(region) {
                state.last_seq = state.last_seq.max(*seq);
                state.pending.insert(name.clone(), *seq);
                state.oldest_at_ms.get_or_insert(*at);
            }
        }
        for (region, name) in &self.cleared {
            if let Some(mut state) = self.outbox.state(region) {
                state.failed.remove(name);
            }
        }
        for (region, ..) in &self.added {
            if let Some(peer) = self.outbox.peers.get(region) {
                peer.wake.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            changed_at_ms: 1,
            change: Change::Remove,
        }
    }

    async fn append(outbox: &Outbox, region: &str, names: &[&str]) {
        let mut appending = outbox.begin().await;
        let mut ops = Vec::new();
        for name in names {
            appending.push(&mut ops, region, &entry(name));
        }
        outbox.store.commit(ops).await.unwrap();
        appending.committed();
    }

    async fn seqs(o: &Outbox, region: &str) -> Vec<u64> {
        let oldest = o.oldest(region, 10).await.unwrap();
        oldest.iter().map(|(s, _)| *s).collect()
    }

    #[tokio::test]
    async fn positions_are_contiguous_and_survive_trimming_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let peers = || vec!["b".to_owned(), "c".to_owned()];
        let outbox = Outbox::open(store.clone(), peers()).await.unwrap();
        append(&outbox, "b", &["x", "y"]).await;
        append(&outbox, "c", &["x"]).await;
        // A commit that failed numbers nothing: the next one continues without a gap.
        drop(outbox.begin().await);
        append(&outbox, "b", &["x"]).await;
        assert_eq!(seqs(&outbox, "b").await, [1, 2, 3]);
        assert_eq!(seqs(&outbox, "c").await, [1]);
        assert_eq!(outbox.lag("b").entries, 3);
        assert_eq!(outbox.status("b", "x"), ReplicaStatus::InProgress);

        let handled = [
            (1, "x".to_owned(), Outcome::Applied),
            (2, "y".to_owned(), Outcome::Refused("taken".into())),
        ];
        outbox.acknowledge("b", &handled).await.unwrap();
        assert_eq!(outbox.lag("b").entries, 1);
        assert_eq!(
            outbox.status("b", "y"),
            ReplicaStatus::Failed("taken".into())
        );
        assert_eq!(outbox.status("b", "x"), ReplicaStatus::InProgress);
        outbox
            .acknowledge("b", &[(3, "x".to_owned(), Outcome::Applied)])
            .await
            .unwrap();
        assert_eq!(outbox.status("b", "x"), ReplicaStatus::InSync);

        // Reopened with the log for b empty: numbering goes on from 3, the failure is kept.
        let reopened = Outbox::open(store, peers()).await.unwrap();
        assert_eq!(reopened.log_id(), outbox.log_id());
        assert_eq!(reopened.lag("b").entries, 0);
        assert_eq!(reopened.lag("c").entries, 1);
        assert_eq!(
            reopened.status("b", "y"),
            ReplicaStatus::Failed("taken".into())
        );
        append(&reopened, "b", &["z"]).await;
        assert_eq!(seqs(&reopened, "b").await, [4]);
    }
}
