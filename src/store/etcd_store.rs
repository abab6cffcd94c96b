//! The cluster backend: every node of a site keeps its data in one etcd cluster (v3 API, as
//! etcd 3.4 serves it), under the site's key prefix.
//!
//! How the [`Backend`] contract maps onto etcd:
//!
//! - A value's version is etcd's per-key `version`: 1 when created, one more per put, and the
//!   key is gone (version 0) after a delete. A guarded write is a `Txn` comparing it.
//! - etcd refuses a `Txn` that names one key twice, so a commit is folded first: per key, the
//!   first expectation becomes the `Txn`'s comparison, later ones are checked against what the
//!   earlier operations leave, and only the last write is sent. A key whose first operation
//!   expects nothing in particular but which is written again is read first, so that the later
//!   expectations can be checked; the read's version then guards the write. A key written
//!   several times in one commit goes up by one version (the contract allows it).
//! - Reads are linearizable (etcd's default): a read on any node sees every commit any node
//!   had acknowledged before the read began. A scan longer than one page is read at the
//!   revision of its first page, so it is one consistent view.
//! - Every call has a deadline. A member that is down, a cluster without a quorum, a cluster
//!   at its space quota (NOSPACE): all are [`StoreError::Unavailable`], which clients see as
//!   a retryable UNAVAILABLE; a read still works while only writes are refused.
//! - A commit is never split: one that exceeds etcd's limits (operations per `Txn`, request
//!   bytes) fails whole, with an error that names the limit.
//!
//! Duties that must run on one node at a time fence their commits with [`super::fence`]: the
//! commit also compares the revision of the duty's election key, so a holder that lost its
//! lease commits nothing.

use super::{Backend, Expect, Op, Result, StoreError, Versioned};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, SortOrder, SortTarget,
    TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Entries per range request of a long scan: pages stay far below gRPC's message limit even
/// with the largest records (a secret value is at most 64 KiB sealed).
const PAGE: i64 = 256;

/// gRPC's default 4 MiB would refuse a page of large records.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How to reach the cluster, as the configuration gives it.
#[derive(Clone)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// Every key of this site starts with it (e.g. `/keyward/site-a/`); several sites may
    /// share one etcd cluster under different prefixes.
    pub prefix: Vec<u8>,
    pub tls: Option<EtcdTls>,
    /// User name and password, when etcd has authentication on.
    pub user: Option<(String, secrecy::SecretString)>,
    /// Deadline of each call to etcd.
    pub timeout: Duration,
    /// The most operations (and comparisons) one `Txn` may carry: etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
}

/// Client TLS towards etcd: PEM bytes.
#[derive(Clone)]
pub struct EtcdTls {
    pub ca: Vec<u8>,
    /// Certificate and key, when etcd requires client certificates.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    prefix: Arc<[u8]>,
    max_txn_ops: usize,
    /// The database size etcd last reported (see [`Backend::size_on_disk`]).
    size: Arc<AtomicU64>,
}

/// Any failure to talk to etcd: transport, deadline, no leader, NOSPACE. Retryable.
fn unavailable(err: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(match &err {
        etcd_client::Error::GRpcStatus(status) => {
            format!("etcd: {} ({:?})", status.message(), status.code())
        }
        other => format!("etcd: {other}"),
    })
}

/// Whether the call failed before anything reached etcd: the balanced channel sent it to a
/// member whose connection could not be made (it is down). Safe to send again, also a write.
fn not_sent(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable && status.message().contains("connect error")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Tries per call: the channel picks members at random, so a few tries reach a live one.
const TRIES: usize = 6;

/// Runs `call` until it is answered or fails with etcd's answer; a call that never left is
/// sent again.
async fn answered<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut tries = 1;
    loop {
        match call().await {
            Err(e) if not_sent(&e) && tries < TRIES => tries += 1,
            other => return other.map_err(unavailable),
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: etcd's "to the end of the keyspace".
    vec![0]
}

fn versioned(kv: &etcd_client::KeyValue) -> Versioned {
    Versioned {
        value: kv.value().to_vec(),
        version: u64::try_from(kv.version()).unwrap_or(0),
    }
}

/// What one key's operations in a commit amount to.
struct Folded {
    key: Vec<u8>,
    /// The state the commit requires before it runs.
    guard: Expect,
    /// The key's version as the operations so far leave it, when known.
    state: Option<Option<u64>>,
    /// The value the key ends with; `None`: deleted.
    last: Option<Vec<u8>>,
}

impl Folded {
    fn holds(state: Option<u64>, expect: Expect) -> bool {
        match expect {
            Expect::Any => true,
            Expect::Absent => state.is_none(),
            Expect::Version(v) => state == Some(v),
        }
    }
}

impl EtcdStore {
    /// Connects to the cluster. Fails when no member answers within the deadline.
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        let mut connect = ConnectOptions::new()
            .with_timeout(options.timeout)
            .with_connect_timeout(options.timeout)
            .with_keep_alive(Duration::from_secs(5), options.timeout)
            // Without a leader a member cannot serve a linearizable call: fail it at once
            // rather than at the deadline.
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            let mut config = TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(tls.ca.clone()));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(etcd_client::Identity::from_pem(cert, key));
            }
            connect = connect.with_tls(config);
        }
        if let Some((user, password)) = &options.user {
            use secrecy::ExposeSecret;
            connect = connect
                .with_user(user.clone(), password.expose_secret().to_owned())
                .with_auto_token_refresh(true);
        }
        let client = tokio::time::timeout(
            options.timeout,
            Client::connect(&options.endpoints, Some(connect)),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "etcd: no member of {} answered within {:?}",
                options.endpoints.join(","),
                options.timeout
            ))
        })?
        .map_err(unavailable)?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let store = Self {
            client,
            kv,
            prefix: options.prefix.into(),
            max_txn_ops: options.max_txn_ops,
            size: Arc::default(),
        };
        // One linearizable read proves a quorum answers before the server says it is up.
        store.get(b"").await?;
        store.refresh_size().await;
        Ok(store)
    }

    /// The etcd client, for the cluster's leases, elections and status.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The full etcd key of a store key.
    pub fn full_key(&self, key: &[u8]) -> Vec<u8> {
        [&self.prefix[..], key].concat()
    }

    fn strip<'a>(&self, full: &'a [u8]) -> &'a [u8] {
        full.strip_prefix(&self.prefix[..]).unwrap_or(full)
    }

    /// Asks etcd for its database size; the gauge shows the last answer.
    pub async fn refresh_size(&self) {
        let mut maintenance = self.client.maintenance_client();
        if let Ok(status) = maintenance.status().await {
            self.size.store(
                u64::try_from(status.db_size()).unwrap_or(0),
                Ordering::Relaxed,
            );
        }
    }

    /// Entries of `[start, end)` in key order (or reverse), up to `limit`, paging through
    /// long ranges at one revision.
    async fn range(
        &self,
        mut start: Vec<u8>,
        mut end: Vec<u8>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<(Vec<u8>, Versioned)>> {
        let mut out = Vec::new();
        let mut revision = 0;
        while out.len() < limit && start < end {
            let want = i64::try_from(limit - out.len())
                .unwrap_or(i64::MAX)
                .min(PAGE);
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(want)
                .with_revision(revision);
            if descending {
                options = options.with_sort(SortTarget::Key, SortOrder::Descend);
            }
            let mut response = answered(|| {
                let (mut kv, start, options) = (self.kv.clone(), start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            let more = response.more();
            let kvs = response.take_kvs();
            let Some(last) = kvs.last() else { break };
            if descending {
                end = last.key().to_vec();
            } else {
                start = [last.key(), &[0]].concat();
            }
            out.extend(
                kvs.iter()
                    .map(|kv| (self.strip(kv.key()).to_vec(), versioned(kv))),
            );
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// Folds a commit into one entry per key, in order of first appearance, checking every
    /// expectation after a key's first against the state the earlier operations leave.
    async fn fold(&self, ops: Vec<Op>) -> Result<Vec<Folded>> {
        let mut folded: Vec<Folded> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        for op in ops {
            let (key, expect, value) = match op {
                Op::Put { key, value, expect } => (key, expect, Some(value)),
                Op::Delete { key, expect } => (key, expect, None),
            };
            let Some(&at) = index.get(&key) else {
                index.insert(key.clone(), folded.len());
                let state = match expect {
                    Expect::Any => None,
                    Expect::Absent => Some(None),
                    Expect::Version(v) => Some(Some(v)),
                };
                folded.push(Folded {
                    state: state.map(|s| after(s, value.is_some())),
                    key,
                    guard: expect,
                    last: value,
                });
                continue;
            };
            let entry = &mut folded[at];
            if entry.state.is_none() {
                // Written again after a first write that expected nothing: learn what that
                // first write started from, and guard on it.
                let current = self.get(&entry.key).await?.map(|found| found.version);
                entry.guard = current.map_or(Expect::Absent, Expect::Version);
                entry.state = Some(after(current, entry.last.is_some()));
            }
            let state = entry.state.flatten();
            if !Folded::holds(state, expect) {
                return Err(StoreError::Conflict(
                    String::from_utf8_lossy(&entry.key).into_owned(),
                ));
            }
            entry.state = Some(after(state, value.is_some()));
            entry.last = value;
        }
        Ok(folded)
    }
}

/// A key's version after one more put (`true`) or delete.
fn after(state: Option<u64>, put: bool) -> Option<u64> {
    put.then(|| state.unwrap_or(0) + 1)
}

impl Backend for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Versioned>> {
        let full = self.full_key(key);
        let response = answered(|| {
            let (mut kv, full) = (self.kv.clone(), full.clone());
            async move { kv.get(full, None).await }
        })
        .await?;
        Ok(response.kvs().first().map(versioned))
    }

    async fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>> {
        let full = self.full_key(prefix);
        let start = match start_after {
            Some(after) if after >= prefix => [&self.full_key(after)[..], &[0]].concat(),
            _ => full.clone(),
        };
        self.range(start, prefix_end(&full), limit, false).await
    }

    async fn scan_rev(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>> {
        let full = self.full_key(prefix);
        let end = match start_before {
            Some(before) => self.full_key(before).min(prefix_end(&full)),
            None => prefix_end(&full),
        };
        self.range(full, end, limit, true).await
    }

    async fn snapshot(&self) -> Result<Vec<(Vec<u8>, Versioned)>> {
        // Every page of one scan is read at the revision of its first.
        self.scan(b"", None, usize::MAX).await
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let folded = self.fold(ops).await?;
        let fence = super::fence::current();
        let mut compares = Vec::new();
        let mut writes = Vec::new();
        let mut guarded = Vec::new();
        for entry in &folded {
            let full = self.full_key(&entry.key);
            match entry.guard {
                Expect::Any => {}
                Expect::Absent => {
                    compares.push(Compare::version(full.clone(), CompareOp::Equal, 0))
                }
                Expect::Version(v) => compares.push(Compare::version(
                    full.clone(),
                    CompareOp::Equal,
                    i64::try_from(v).unwrap_or(i64::MAX),
                )),
            }
            if entry.guard != Expect::Any {
                guarded.push(entry);
            }
            writes.push(match &entry.last {
                Some(value) => TxnOp::put(full, value.clone(), None),
                None => TxnOp::delete(full, None),
            });
        }
        if let Some(fence) = &fence {
            compares.push(Compare::mod_revision(
                self.full_key(&fence.key),
                CompareOp::Equal,
                fence.revision,
            ));
        }
        let largest = compares.len().max(writes.len());
        if largest > self.max_txn_ops {
            return Err(StoreError::Unavailable(format!(
                "a commit of {largest} operations exceeds etcd's limit of {} per transaction \
                 (store.max_txn_ops, etcd --max-txn-ops)",
                self.max_txn_ops
            )));
        }
        // On failure, read back what was compared, to name the key that changed.
        let mut reads: Vec<TxnOp> = guarded
            .iter()
            .map(|entry| {
                TxnOp::get(
                    self.full_key(&entry.key),
                    Some(GetOptions::new().with_keys_only()),
                )
            })
            .collect();
        if let Some(fence) = &fence {
            reads.push(TxnOp::get(
                self.full_key(&fence.key),
                Some(GetOptions::new().with_keys_only()),
            ));
        }
        let txn = Txn::new().when(compares).and_then(writes).or_else(reads);
        let response = answered(|| {
            let (mut kv, txn) = (self.kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await?;
        if response.succeeded() {
            return Ok(());
        }
        let found = response.op_responses();
        for (entry, read) in guarded.iter().zip(&found) {
            let version = match read {
                TxnOpResponse::Get(got) => got
                    .kvs()
                    .first()
                    .map(|kv| u64::try_from(kv.version()).unwrap_or(0)),
                _ => None,
            };
            if !Folded::holds(version, entry.guard) {
                return Err(StoreError::Conflict(
                    String::from_utf8_lossy(&entry.key).into_owned(),
                ));
            }
        }
        match fence {
            Some(fence) => Err(StoreError::Fenced(fence.duty.clone())),
            None => Err(StoreError::Conflict("(the store changed meanwhile)".into())),
        }
    }

    async fn insert_once(&self, key: &[u8]) -> Result<bool> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::version(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, Vec::new(), None)]);
        let response = answered(|| {
            let (mut kv, txn) = (self.kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await?;
        Ok(response.succeeded())
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(self.size.load(Ordering::Relaxed))
    }

    fn flush(&self) -> Result<()> {
        // Every acknowledged commit is already on a quorum's disks.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One etcd member in a temp dir, killed on drop.
    struct Member {
        child: std::process::Child,
        client_url: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Member {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    fn member() -> Member {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = std::process::Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("etcd (apt install etcd-server)");
        Member {
            child,
            client_url,
            _dir: dir,
        }
    }

    async fn connect(member: &Member, prefix: &str) -> EtcdStore {
        let options = EtcdOptions {
            endpoints: vec![member.client_url.clone()],
            prefix: prefix.as_bytes().to_vec(),
            tls: None,
            user: None,
            timeout: Duration::from_secs(2),
            max_txn_ops: 128,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match EtcdStore::connect(options.clone()).await {
                Ok(store) => return store,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("etcd did not come up: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn the_etcd_backend_keeps_the_contract() {
        let etcd = member();
        let store = connect(&etcd, "/site-a/").await;
        super::super::conformance::check(&store).await;
        // Another site's prefix sees none of it, and a scan pages through more than a page.
        let other = connect(&etcd, "/site-b/").await;
        assert!(other.scan(b"", None, usize::MAX).await.unwrap().is_empty());
        let many: Vec<Op> = (0..PAGE * 2 + 5)
            .map(|i| Op::Put {
                key: format!("p/{i:05}").into_bytes(),
                value: vec![],
                expect: Expect::Any,
            })
            .collect();
        for chunk in many.chunks(100) {
            other.commit(chunk.to_vec()).await.unwrap();
        }
        let all = other.scan(b"p/", None, usize::MAX).await.unwrap();
        assert_eq!(all.len(), (PAGE * 2 + 5) as usize);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let back = other.scan_rev(b"p/", None, usize::MAX).await.unwrap();
        assert_eq!(back.len(), all.len());
        assert_eq!(back.first().unwrap().0, all.last().unwrap().0);
    }

    #[tokio::test]
    async fn a_commit_beyond_the_transaction_limit_fails_whole() {
        let etcd = member();
        let store = connect(&etcd, "/limits/").await;
        let ops: Vec<Op> = (0..129)
            .map(|i| Op::Put {
                key: format!("k/{i}").into_bytes(),
                value: vec![],
                expect: Expect::Absent,
            })
            .collect();
        match store.commit(ops).await {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("max_txn_ops"), "{message}")
            }
            other => panic!("expected the limit to refuse it, got {other:?}"),
        }
        assert!(store.scan(b"k/", None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_fenced_commit_fails_once_the_election_key_moved() {
        let etcd = member();
        let store = connect(&etcd, "/fence/").await;
        let put = |key: &str| Op::Put {
            key: key.as_bytes().to_vec(),
            value: b"node-a".to_vec(),
            expect: Expect::Any,
        };
        store.commit(vec![put("duty/x")]).await.unwrap();
        let revision = {
            let mut kv = store.kv.clone();
            let found = kv.get(store.full_key(b"duty/x"), None).await.unwrap();
            found.kvs()[0].mod_revision()
        };
        let fence = Arc::new(super::super::fence::Fence {
            duty: "x".into(),
            key: b"duty/x".to_vec(),
            revision,
        });
        super::super::fence::scope(Some(Arc::clone(&fence)), store.commit(vec![put("a")]))
            .await
            .unwrap();
        // Another node takes the duty: the former holder's commits write nothing.
        store.commit(vec![put("duty/x")]).await.unwrap();
        let refused = super::super::fence::scope(Some(fence), store.commit(vec![put("b")])).await;
        assert!(
            matches!(refused, Err(StoreError::Fenced(ref duty)) if duty == "x"),
            "{refused:?}"
        );
        assert!(store.get(b"b").await.unwrap().is_none());
        assert!(store.get(b"a").await.unwrap().is_some());
    }

    #[test]
    fn prefix_ends_sort_after_every_key_of_the_prefix() {
        assert_eq!(prefix_end(b"/k/a/"), b"/k/a0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
