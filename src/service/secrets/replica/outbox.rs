//! The primary's side of replication: for each peer site, an ordered, durable log of changes
//! in the store, and what is known of how far that peer has applied it.
//!
//! Entries are appended in the same store commit as the change they describe, so a change is
//! logged if and only if it happened. Sequence numbers come from the store: an append numbers
//! its entries after the peer's last position (`REPLICATION_SEQ`) and moves that position in
//! the same commit, guarded on the position key's version. Of two appends that read the same
//! position, on one node or on several nodes of a cluster, one commits and the other fails
//! and is numbered again: numbers are contiguous and in commit order, which lets the sender
//! ship a prefix and the replica drop anything at or below what it has applied. Appends of one
//! process take turns under one lock, so only appends from other nodes ever collide.
//!
//! What DescribeSecret, the metrics and the sender read (positions, unacknowledged entries
//! per secret, refusals, reachability) is kept in memory, updated at once by this process's
//! own appends and acknowledgements. On the embedded store this process is the only writer,
//! so memory is the whole truth. On a cluster, [`Outbox::follow`] reads what other nodes did
//! every [`FOLLOW_EVERY`]: a node sees another node's appends, and the sender's
//! acknowledgements, refusals and reachability, at most that long (plus a read) late.

use crate::store::{self, Expect, Op, SecretRecord, Store, StoreError, keyspace};
use crate::time::{Clock, SystemClock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a cluster node reads the other nodes' appends and acknowledgements (see
/// [`Outbox::follow`]): the staleness bound of status and lag on a node that did not make the
/// change, and how soon the sender notices an entry appended on another node.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// How often an append is numbered again after other nodes' appends took its positions.
/// Each retry means another append committed: it only fails under a sustained stream of
/// appends from other nodes, and then the request is retried whole (Contended).
const RENUMBER_TRIES: usize = 16;

/// One logged change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    /// Wall-clock milliseconds when the primary committed the change.
    pub changed_at_ms: i64,
    pub change: Change,
}

/// What `follow` needs of an entry: not the record it carries.
#[derive(Deserialize)]
struct EntryHead {
    name: String,
    changed_at_ms: i64,
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
    /// This process's appends take turns: they never collide with each other.
    appending: tokio::sync::Mutex<()>,
}

struct Peer {
    state: Mutex<PeerState>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct PeerState {
    /// The last sequence number given, as this process last saw it, and the version of its
    /// key (none: absent), which the next append's commit expects.
    last_seq: u64,
    seq_version: Option<u64>,
    /// `last_seq` may be behind the store (a commit failed, perhaps after it was applied):
    /// read the position again before numbering.
    stale: bool,
    /// Every entry up to here is counted in `pending` (or acknowledged).
    loaded: u64,
    acked: u64,
    /// Secret name → its newest unacknowledged entry.
    pending: HashMap<String, u64>,
    oldest_at_ms: Option<i64>,
    failed: HashMap<String, String>,
    reachable: bool,
    /// What this process last recorded in the store for `reachable`.
    recorded_reachable: Option<bool>,
}

impl PeerState {
    /// Takes a position read from the store unless this process already knows a later one
    /// (the key's version grows with its value: one put per append).
    fn position(&mut self, seq: u64, version: Option<u64>) {
        if seq > self.last_seq || (seq == self.last_seq && version > self.seq_version) {
            self.last_seq = seq;
            self.seq_version = version;
        }
    }

    fn acknowledged(&mut self, acked: u64) {
        self.acked = self.acked.max(acked);
        let acked = self.acked;
        self.pending.retain(|_, seq| *seq > acked);
        if self.last_seq <= acked {
            self.oldest_at_ms = None;
        }
    }
}

fn parse_seq(key: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(key).ok()?;
    text.rsplit('/').next()?.parse().ok()
}

fn corrupt_position(key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "not a log position".into(),
    }
}

/// Whether a conflict on `key` (as a commit names it) is about log positions: another node
/// appended to the same peer's log.
fn is_position(key: &str) -> bool {
    let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    key.starts_with(&lossy(keyspace::REPLICATION_SEQ))
        || key.starts_with(&lossy(keyspace::REPLICATION_LOG))
}

impl Outbox {
    /// Loads each peer's log position, pending entries and failures from the store.
    pub async fn open(
        store: Store,
        peers: impl IntoIterator<Item = String>,
    ) -> Result<Self, StoreError> {
        let log_id = Self::log_id_of(&store).await?;
        let mut loaded = BTreeMap::new();
        for region in peers {
            let mut state = PeerState::default();
            if let Some(found) = store.get(&keyspace::replication_seq(&region)).await? {
                state.last_seq = parse_seq(&found.value).unwrap_or(0);
                state.seq_version = Some(found.version);
            }
            let entries = store.scan_all(&keyspace::replication_log(&region)).await?;
            state.acked = match entries.first() {
                Some((key, _)) => parse_seq(key).unwrap_or(1).saturating_sub(1),
                None => state.last_seq,
            };
            state.loaded = state.last_seq;
            for (key, found) in &entries {
                let entry: EntryHead = store::decode(key, &found.value)?;
                if state.oldest_at_ms.is_none() {
                    state.oldest_at_ms = Some(entry.changed_at_ms);
                }
                if let Some(seq) = parse_seq(key) {
                    state.pending.insert(entry.name, seq);
                    state.loaded = state.loaded.max(seq);
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

    /// The id of this site's log, made by whichever node of the site starts first.
    async fn log_id_of(store: &Store) -> Result<String, StoreError> {
        loop {
            if let Some(found) = store.get(keyspace::REPLICATION_LOG_ID).await? {
                return Ok(String::from_utf8_lossy(&found.value).into_owned());
            }
            let id = uuid::Uuid::new_v4().to_string();
            let made = store
                .commit(vec![Op::Put {
                    key: keyspace::REPLICATION_LOG_ID.to_vec(),
                    value: id.clone().into_bytes(),
                    expect: Expect::Absent,
                }])
                .await;
            match made {
                Ok(()) => return Ok(id),
                // Another node made it first: use that one.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
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

    /// Starts appending: entries pushed are numbered when committed (see
    /// [`Appending::commit`]), and nobody else in this process appends until then.
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
        let entries = state.last_seq.saturating_sub(state.acked);
        let seconds = match state.oldest_at_ms {
            Some(at) if entries > 0 => (SystemClock.now_ms() - at).max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        Lag { entries, seconds }
    }

    pub fn reachable(&self, region: &str) -> bool {
        self.state(region).is_some_and(|s| s.reachable)
    }

    /// The sender's latest call to `region` did (not) reach it. Recorded in the store when it
    /// changes, so that every node of a cluster reports it; a failed write is tried again at
    /// the next call.
    pub async fn set_reachable(&self, region: &str, reachable: bool) {
        let changed = match self.state(region) {
            Some(mut state) => {
                state.reachable = reachable;
                state.recorded_reachable != Some(reachable)
            }
            None => return,
        };
        if !changed {
            return;
        }
        let written = self
            .store
            .commit(vec![Op::Put {
                key: keyspace::replication_reachable(region),
                value: if reachable {
                    b"1".to_vec()
                } else {
                    b"0".to_vec()
                },
                expect: Expect::Any,
            }])
            .await;
        match written {
            Ok(()) => {
                if let Some(mut state) = self.state(region) {
                    state.recorded_reachable = Some(reachable);
                }
            }
            Err(e) => {
                tracing::warn!(peer = %region, error = %e, "cannot record the peer's reachability")
            }
        }
    }

    /// Resolves when an entry for `region` has been committed since the last call: appended
    /// by this process, or (on a cluster) seen by [`Self::follow`].
    pub async fn appended(&self, region: &str) {
        match self.peers.get(region) {
            Some(peer) => peer.wake.notified().await,
            None => std::future::pending().await,
        }
    }

    /// On a cluster: reads what the other nodes did every `every`, forever (see the module
    /// docs). A failed read is logged and tried again at the next tick.
    pub async fn follow(self: Arc<Self>, every: Duration) {
        loop {
            for region in self.peers.keys() {
                if let Err(e) = self.refresh(region).await {
                    tracing::debug!(peer = %region, error = %e, "cannot read the replication log's state");
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Reads `region`'s log position, acknowledged position, unacknowledged entries appended
    /// since the last read, refusals and reachability from the store. Wakes the sender when
    /// entries appeared that this process did not append.
    pub async fn refresh(&self, region: &str) -> Result<(), StoreError> {
        let Some((known_last, known_acked, loaded)) =
            self.state(region).map(|s| (s.last_seq, s.acked, s.loaded))
        else {
            return Ok(());
        };
        // The position first: an entry at or below it is committed, so if it is missing
        // from the log below, it was acknowledged.
        let (last, version) = match self.store.get(&keyspace::replication_seq(region)).await? {
            Some(found) => (
                parse_seq(&found.value).ok_or_else(|| corrupt_position(&found.value))?,
                Some(found.version),
            ),
            None => (0, None),
        };
        let log = keyspace::replication_log(region);
        let (acked, oldest_at_ms) = if last > known_acked {
            match self.store.scan(&log, None, 1).await?.first() {
                Some((key, found)) => {
                    let seq = parse_seq(key).ok_or_else(|| corrupt_position(key))?;
                    let head: EntryHead = store::decode(key, &found.value)?;
                    (seq - 1, Some(head.changed_at_ms))
                }
                None => (last, None),
            }
        } else {
            (last, None)
        };
        let mut appended = Vec::new();
        let mut after = keyspace::replication_log_entry(region, loaded.max(acked));
        while last > loaded.max(acked) {
            let page = self.store.scan(&log, Some(&after), 256).await?;
            let Some((key, _)) = page.last() else {
                break;
            };
            after = key.clone();
            for (key, found) in &page {
                let seq = parse_seq(key).ok_or_else(|| corrupt_position(key))?;
                let head: EntryHead = store::decode(key, &found.value)?;
                appended.push((seq, head.name));
            }
            if page.len() < 256 {
                break;
            }
        }
        let prefix = keyspace::replication_failures(region);
        let failed: HashMap<String, String> = self
            .store
            .scan_all(&prefix)
            .await?
            .into_iter()
            .map(|(key, found)| {
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                (name, String::from_utf8_lossy(&found.value).into_owned())
            })
            .collect();
        let reachable = self
            .store
            .get(&keyspace::replication_reachable(region))
            .await?
            .map(|found| found.value == b"1");
        let Some(mut state) = self.state(region) else {
            return Ok(());
        };
        state.position(last, version);
        let newest = appended.last().map_or(0, |(seq, _)| *seq);
        for (seq, name) in appended {
            let at = state.pending.entry(name).or_insert(seq);
            *at = (*at).max(seq);
        }
        state.loaded = state.loaded.max(last).max(newest);
        if oldest_at_ms.is_some() {
            state.oldest_at_ms = oldest_at_ms;
        }
        state.acknowledged(acked);
        state.failed = failed;
        if let Some(reachable) = reachable {
            state.reachable = reachable;
        }
        drop(state);
        if last > known_last
            && let Some(peer) = self.peers.get(region)
        {
            peer.wake.notify_one();
        }
        Ok(())
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
                let seq = parse_seq(&key).ok_or_else(|| corrupt_position(&key))?;
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
            state.oldest_at_ms = oldest_at_ms;
            state.acknowledged(last);
            for (name, message) in failed {
                match message {
                    Some(message) => state.failed.insert(name, message),
                    None => state.failed.remove(&name),
                };
            }
        }
        Ok(())
    }

    /// Reads `regions`' positions again where this process may be behind the store.
    async fn reread_positions(&self, regions: &[&str]) -> Result<(), StoreError> {
        for region in regions {
            if !self.state(region).is_some_and(|s| s.stale) {
                continue;
            }
            let found = self.store.get(&keyspace::replication_seq(region)).await?;
            let (last, version) = match found {
                Some(found) => (
                    parse_seq(&found.value).ok_or_else(|| corrupt_position(&found.value))?,
                    Some(found.version),
                ),
                None => (0, None),
            };
            if let Some(mut state) = self.state(region) {
                state.position(last, version);
                state.stale = false;
            }
        }
        Ok(())
    }
}

/// Entries being added to one commit; see [`Outbox::begin`].
pub struct Appending<'a> {
    outbox: &'a Outbox,
    _turn: tokio::sync::MutexGuard<'a, ()>,
    /// (peer, entry), in the order pushed.
    added: Vec<(String, Entry)>,
    /// (peer, secret) whose failure is forgotten.
    cleared: Vec<(String, String)>,
}

impl Appending<'_> {
    /// Adds the log entry for `region`, numbered at commit. Unknown peers are skipped: the
    /// caller validated regions against the configuration when they were added.
    pub fn push(&mut self, region: &str, entry: &Entry) {
        if self.outbox.has_peer(region) {
            self.added.push((region.to_owned(), entry.clone()));
        }
    }

    /// Forgets that `region` refused `name` (it is being sent again, or removed).
    pub fn clear_failure(&mut self, ops: &mut Vec<Op>, region: &str, name: &str) {
        ops.push(Op::Delete {
            key: keyspace::replication_failure(region, name),
            expect: Expect::Any,
        });
        self.cleared.push((region.to_owned(), name.to_owned()));
    }

    /// The peers entries were pushed for, each once.
    fn regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = self.added.iter().map(|(r, _)| r.clone()).collect();
        regions.sort();
        regions.dedup();
        regions
    }

    /// The pushed entries, numbered after each peer's last position as this process knows
    /// it, and each position moved, guarded on the version it was read at; with the
    /// positions numbered from.
    fn numbered(&self) -> (Vec<Op>, Vec<Base>) {
        let mut ops = Vec::with_capacity(self.added.len() + 1);
        let mut bases = Vec::new();
        for region in self.regions() {
            let Some((last, version)) = self
                .outbox
                .state(&region)
                .map(|s| (s.last_seq, s.seq_version))
            else {
                continue;
            };
            let mut seq = last;
            for (_, entry) in self.added.iter().filter(|(r, _)| *r == region) {
                seq += 1;
                ops.push(Op::Put {
                    key: keyspace::replication_log_entry(&region, seq),
                    value: store::encode(entry),
                    expect: Expect::Absent,
                });
            }
            ops.push(Op::Put {
                key: keyspace::replication_seq(&region),
                value: seq.to_string().into_bytes(),
                expect: version.map_or(Expect::Absent, Expect::Version),
            });
            bases.push(Base {
                region,
                last,
                version,
            });
        }
        (ops, bases)
    }

    /// Commits `ops` (the change) with the pushed entries, numbered from the store's
    /// positions. When another node's append took those positions first, the entries are
    /// numbered again and the commit retried; the change's own expectations are checked
    /// afresh each time. Any other failure is returned as it is: nothing was written.
    pub async fn commit(self, mut ops: Vec<Op>) -> Result<(), StoreError> {
        let regions = self.regions();
        let regions: Vec<&str> = regions.iter().map(String::as_str).collect();
        let mut tries = 0;
        loop {
            self.outbox.reread_positions(&regions).await?;
            // Kept for a retry: a copy is cheap beside a durable commit.
            let again = ops.clone();
            let (numbered, bases) = self.numbered();
            let mut all = ops;
            all.extend(numbered);
            let failed = match self.outbox.store.commit(all).await {
                Ok(()) => {
                    self.committed(bases);
                    return Ok(());
                }
                Err(e) => e,
            };
            // The commit may have been applied even so (an answer lost on the way): read
            // the positions again before numbering anything.
            for region in &regions {
                if let Some(mut state) = self.outbox.state(region) {
                    state.stale = true;
                }
            }
            match failed {
                StoreError::Conflict(key) if is_position(&key) && tries < RENUMBER_TRIES => {
                    tries += 1;
                    ops = again;
                }
                failed => return Err(failed),
            }
        }
    }

    /// The commit holding the pushed entries, numbered from `bases`, succeeded.
    fn committed(self, bases: Vec<Base>) {
        for base in &bases {
            let Some(mut state) = self.outbox.state(&base.region) else {
                continue;
            };
            let mut seq = base.last;
            for (_, entry) in self.added.iter().filter(|(r, _)| *r == base.region) {
                seq += 1;
                let at = state.pending.entry(entry.name.clone()).or_insert(seq);
                *at = (*at).max(seq);
                state.oldest_at_ms.get_or_insert(entry.changed_at_ms);
            }
            // One put of the position key per commit: one version more. (`follow` may have
            // read the new position already.)
            state.position(seq, Some(base.version.map_or(1, |v| v + 1)));
            if state.loaded >= base.last {
                state.loaded = state.loaded.max(seq);
            }
        }
        for (region, name) in &self.cleared {
            if let Some(mut state) = self.outbox.state(region) {
                state.failed.remove(name);
            }
        }
        for base in &bases {
            if let Some(peer) = self.outbox.peers.get(&base.region) {
                peer.wake.notify_one();
            }
        }
    }
}

/// Where one peer's entries of a commit were numbered from.
struct Base {
    region: String,
    last: u64,
    version: Option<u64>,
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
        for name in names {
            appending.push(region, &entry(name));
        }
        appending.commit(Vec::new()).await.unwrap();
    }

    async fn seqs(o: &Outbox, region: &str) -> Vec<u64> {
        let oldest = o.oldest(region, 1000).await.unwrap();
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
        let mut failing = outbox.begin().await;
        failing.push("b", &entry("x"));
        let refused = failing
            .commit(vec![Op::Put {
                key: b"t/guard".to_vec(),
                value: Vec::new(),
                expect: Expect::Version(9),
            }])
            .await;
        assert!(matches!(refused, Err(StoreError::Conflict(ref k)) if k == "t/guard"));
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

    /// Two outboxes on one store stand for two nodes of a cluster.
    #[tokio::test]
    async fn appends_from_two_nodes_share_one_numbering_and_each_sees_the_others_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let peers = || vec!["b".to_owned()];
        let one = Arc::new(Outbox::open(store.clone(), peers()).await.unwrap());
        let two = Arc::new(Outbox::open(store.clone(), peers()).await.unwrap());
        assert_eq!(one.log_id(), two.log_id());

        // `two` numbers from a stale position, loses, and is numbered again after `one`.
        append(&one, "b", &["x"]).await;
        append(&two, "b", &["y"]).await;
        assert_eq!(seqs(&one, "b").await, [1, 2]);

        // Racing appenders: every entry gets its own number, none is skipped.
        let mut racers = Vec::new();
        for (i, outbox) in [&one, &two].into_iter().cycle().take(8).enumerate() {
            let outbox = Arc::clone(outbox);
            racers.push(tokio::spawn(async move {
                for j in 0..10 {
                    append(&outbox, "b", &[&format!("r{i}-{j}")]).await;
                }
            }));
        }
        for racer in racers {
            racer.await.unwrap();
        }
        assert_eq!(seqs(&one, "b").await, (1..=82).collect::<Vec<_>>());
        let names: std::collections::BTreeSet<String> = one
            .oldest("b", 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.name)
            .collect();
        assert_eq!(names.len(), 82, "every append is logged once");

        // What one node appended and the other acknowledged, each sees after a refresh.
        assert_eq!(two.status("b", "x"), ReplicaStatus::InSync, "not read yet");
        two.refresh("b").await.unwrap();
        assert_eq!(two.status("b", "x"), ReplicaStatus::InProgress);
        assert_eq!(two.lag("b").entries, 82);
        one.acknowledge(
            "b",
            &[
                (1, "x".to_owned(), Outcome::Applied),
                (2, "y".to_owned(), Outcome::Refused("taken".into())),
            ],
        )
        .await
        .unwrap();
        one.set_reachable("b", true).await;
        two.refresh("b").await.unwrap();
        assert_eq!(two.status("b", "x"), ReplicaStatus::InSync);
        assert_eq!(two.status("b", "y"), ReplicaStatus::Failed("taken".into()));
        assert_eq!(two.lag("b").entries, 80);
        assert!(two.reachable("b"));
        let rest: Vec<(u64, String, Outcome)> = one
            .oldest("b", 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|(seq, e)| (seq, e.name, Outcome::Applied))
            .collect();
        one.acknowledge("b", &rest).await.unwrap();
        two.refresh("b").await.unwrap();
        assert_eq!(two.lag("b"), Lag::default());
        assert_eq!(two.status("b", "r0-0"), ReplicaStatus::InSync);
    }
}
