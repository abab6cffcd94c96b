//! The nodes of a site on etcd: who is alive, and which node runs each background duty.
//!
//! Every node holds one etcd lease, kept alive while the process runs. Bound to it:
//!
//! - its membership entry, `cluster/node/<node id>`: a JSON [`Member`] (address, version,
//!   start time). A node refuses to start while the entry of its id exists (another live node
//!   has that id); it disappears by itself one lease TTL after a node dies.
//! - the election entry of each duty it runs, `cluster/duty/<duty>`, holding its node id.
//!   A node takes a duty only while no entry exists (a `Txn` on version 0), so there is at most
//!   one holder; when the holder dies, its lease expires, the entry goes, and another node
//!   takes the duty at its next look (every [`Duty::poll`]). The holder's commits are fenced
//!   by the entry's revision (`store::fence`): after a pause past its lease, a former holder
//!   writes nothing.
//!
//! Duties pick up from what the store records (a rotation's step, the replication log's
//! position), and every step of theirs is safe to run twice, so a duty cut short on one node
//! is finished by the next holder.

use crate::store::fence::Fence;
use crate::store::{EtcdStore, StoreError};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::store::keyspace::{CLUSTER_DUTIES as DUTIES, CLUSTER_NODES as NODES};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "node id {0:?} is held by a live node (its lease has not expired): give every node its own store.node_id, or wait one lease TTL after stopping the other"
    )]
    NodeIdInUse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A node as its membership entry describes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Its gRPC endpoint, as clients reach it.
    pub address: String,
    /// The Keyward version it runs.
    pub version: String,
    /// Epoch seconds when it joined.
    pub started: i64,
}

fn unavailable(err: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {err}"))
}

/// This process as a member of the site.
pub struct Node {
    store: EtcdStore,
    id: String,
    /// What the membership entry says; the address is filled in once the listener is bound.
    member: std::sync::Mutex<Member>,
    ttl: Duration,
    /// The lease everything of this node is bound to; replaced if it is ever lost.
    lease: AtomicI64,
}

impl Node {
    /// Joins the site: takes a lease and the membership entry of `member.id`, refusing when a
    /// live node holds that id, and keeps the lease alive from then on.
    ///
    /// `previous`: the lease this node's data directory recorded at its last start. The caller
    /// holds the directory's lock, so an entry still bound to that lease belongs to this same
    /// node's earlier process, which crashed: it is revoked instead of waited out.
    pub async fn join(
        store: &EtcdStore,
        member: Member,
        ttl: Duration,
        previous: Option<i64>,
    ) -> Result<Arc<Self>, ClusterError> {
        let node = Arc::new(Self {
            store: store.clone(),
            id: member.id.clone(),
            member: std::sync::Mutex::new(member),
            ttl,
            lease: AtomicI64::new(0),
        });
        let lease = node.grant().await?;
        let mut registered = node.register(lease).await?;
        if !registered
            && let Some(previous) = previous
            && node.entry_lease().await? == Some(previous)
        {
            tracing::info!(node = %node.id, "taking over the entry of this node's previous, crashed process");
            let _ = node.store.client().lease_client().revoke(previous).await;
            registered = node.register(lease).await?;
        }
        if !registered {
            // Do not leave the unused lease behind for its whole TTL.
            let _ = node.store.client().lease_client().revoke(lease).await;
            return Err(ClusterError::NodeIdInUse(node.id.clone()));
        }
        node.lease.store(lease, Ordering::SeqCst);
        tokio::spawn(Arc::clone(&node).keep_alive());
        Ok(node)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lease this node's entries are bound to now.
    pub fn lease(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    fn entry_key(&self) -> Vec<u8> {
        self.store.full_key(&[NODES, self.id.as_bytes()].concat())
    }

    /// The lease the membership entry of this node's id is bound to, if there is one.
    async fn entry_lease(&self) -> Result<Option<i64>, StoreError> {
        let mut kv = self.store.client().kv_client();
        let found = kv.get(self.entry_key(), None).await.map_err(unavailable)?;
        Ok(found.kvs().first().map(|kv| kv.lease()))
    }

    fn entry(&self) -> Result<Vec<u8>, StoreError> {
        let member = self.member.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_vec(&*member)
            .map_err(|e| StoreError::Unavailable(format!("membership entry: {e}")))
    }

    /// Publishes the address clients reach this node at, once its listener is bound.
    pub async fn announce(&self, address: String) -> Result<(), StoreError> {
        self.member
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .address = address;
        let options = PutOptions::new().with_lease(self.lease());
        let mut kv = self.store.client().kv_client();
        kv.put(self.entry_key(), self.entry()?, Some(options))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn grant(&self) -> Result<i64, StoreError> {
        let seconds = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let granted = self
            .store
            .client()
            .lease_client()
            .grant(seconds, None)
            .await
            .map_err(unavailable)?;
        Ok(granted.id())
    }

    /// Puts the membership entry under `lease` unless one exists; true if it did.
    async fn register(&self, lease: i64) -> Result<bool, StoreError> {
        let key = self.entry_key();
        let value = self.entry()?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut kv = self.store.client().kv_client();
        Ok(kv.txn(txn).await.map_err(unavailable)?.succeeded())
    }

    /// Renews the lease a third of its TTL apart. If it was lost anyway (this process was
    /// paused or cut off for longer than the TTL), takes a new one and joins again: the duties
    /// held under the old lease are gone, and their holders' fences stop their commits.
    async fn keep_alive(self: Arc<Self>) {
        let every = self.ttl / 3;
        loop {
            let lease = self.lease.load(Ordering::SeqCst);
            match self.renew(lease).await {
                Ok(true) => tokio::time::sleep(every).await,
                Ok(false) => {
                    tracing::warn!(node = %self.id, "the node's etcd lease expired; joining again");
                    self.rejoin().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the node's etcd lease; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// One renewal; false when etcd says the lease no longer exists.
    async fn renew(&self, lease: i64) -> Result<bool, StoreError> {
        let mut client = self.store.client().lease_client();
        let (mut keeper, mut answers) = client.keep_alive(lease).await.map_err(unavailable)?;
        keeper.keep_alive().await.map_err(unavailable)?;
        let answer = tokio::time::timeout(self.ttl / 3, answers.message())
            .await
            .map_err(|_| StoreError::Unavailable("etcd: no answer to a lease renewal".into()))?
            .map_err(unavailable)?;
        Ok(answer.is_some_and(|a| a.ttl() > 0))
    }

    async fn rejoin(&self) {
        loop {
            let joined = async {
                let lease = self.grant().await?;
                if !self.register(lease).await? {
                    tracing::error!(node = %self.id, "another node took this node's id while its lease was lost");
                }
                self.lease.store(lease, Ordering::SeqCst);
                Ok::<_, StoreError>(())
            };
            match joined.await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot rejoin the cluster; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// The duty `name` as this node contends for it.
    pub fn duty(self: &Arc<Self>, name: &str) -> Duty {
        Duty {
            node: Arc::clone(self),
            name: name.to_owned(),
            key: [DUTIES, name.as_bytes()].concat(),
        }
    }

    /// Leaves the site at shutdown: revoking the lease removes the membership entry and hands
    /// every duty over at once instead of after the TTL.
    pub async fn leave(&self) {
        let lease = self.lease.load(Ordering::SeqCst);
        if let Err(e) = self.store.client().lease_client().revoke(lease).await {
            tracing::warn!(error = %e, "cannot revoke the node's lease; its duties move after the TTL");
        }
    }
}

/// One background duty, run by one node of the site at a time.
pub struct Duty {
    node: Arc<Node>,
    name: String,
    key: Vec<u8>,
}

impl Duty {
    /// How often a node that does not hold the duty looks whether it is free, and the holder
    /// checks it still holds it.
    pub fn poll(&self) -> Duration {
        (self.node.ttl / 10).max(Duration::from_millis(200))
    }

    /// Waits until this node holds the duty; returns the fence its commits carry.
    pub async fn acquire(&self) -> Arc<Fence> {
        let mut waiting_logged = false;
        loop {
            match self.try_acquire().await {
                Ok(Some(fence)) => {
                    tracing::info!(duty = %self.name, node = %self.node.id, "took the duty");
                    return Arc::new(fence);
                }
                Ok(None) if !waiting_logged => {
                    tracing::debug!(duty = %self.name, "another node holds the duty");
                    waiting_logged = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(duty = %self.name, error = %e, "cannot contend for the duty")
                }
            }
            tokio::time::sleep(self.poll()).await;
        }
    }

    async fn try_acquire(&self) -> Result<Option<Fence>, StoreError> {
        let full = self.node.store.full_key(&self.key);
        let lease = self.node.lease.load(Ordering::SeqCst);
        let txn = Txn::new()
            .when([Compare::version(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                full.clone(),
                self.node.id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(full, None)]);
        let mut kv = self.node.store.client().kv_client();
        let response = kv.txn(txn).await.map_err(unavailable)?;
        let revision = if response.succeeded() {
            response.header().map_or(0, |h| h.revision())
        } else {
            // Held already: by another node, or by this one under its current lease (its
            // work ended and it contends again), which keeps it.
            let mine = response
                .op_responses()
                .into_iter()
                .find_map(|read| match read {
                    etcd_client::TxnOpResponse::Get(got) => got
                        .kvs()
                        .first()
                        .filter(|kv| kv.value() == self.node.id.as_bytes() && kv.lease() == lease)
                        .map(|kv| kv.mod_revision()),
                    _ => None,
                });
            match mine {
                Some(revision) => revision,
                None => return Ok(None),
            }
        };
        Ok(Some(Fence {
            duty: self.name.clone(),
            key: self.key.clone(),
            revision,
        }))
    }

    /// Whether the entry still is the one `fence` was taken with. A store that cannot be
    /// reached counts as held: the fence, not this check, is what keeps a stale holder out.
    pub async fn held(&self, fence: &Fence) -> bool {
        let full = self.node.store.full_key(&self.key);
        let mut kv = self.node.store.client().kv_client();
        match kv.get(full, None).await {
            Ok(found) => found
                .kvs()
                .first()
                .is_some_and(|kv| kv.mod_revision() == fence.revision),
            Err(_) => true,
        }
    }

    /// Returns once this node no longer holds the duty taken with `fence`.
    pub async fn lost(&self, fence: &Fence) {
        while self.held(fence).await {
            tokio::time::sleep(self.poll()).await;
        }
        tracing::warn!(duty = %self.name, node = %self.node.id, "lost the duty");
    }

    /// Runs `work` (a duty's loop) whenever this node holds the duty, fenced, and stops it
    /// when the duty is lost; then contends again. Never returns.
    pub async fn run<F, Fut>(self, mut work: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let fence = self.acquire().await;
            let running = crate::store::fence::scope(Some(Arc::clone(&fence)), work());
            tokio::select! {
                () = running => {}
                () = self.lost(&fence) => {}
            }
        }
    }
}

/// Who holds each duty and which nodes are alive, as `keyward cluster status` shows it.
pub async fn snapshot(
    store: &EtcdStore,
) -> Result<(Vec<Member>, Vec<(String, String)>), StoreError> {
    let mut kv = store.client().kv_client();
    let mut members = Vec::new();
    let found = kv
        .get(store.full_key(NODES), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(unavailable)?;
    for entry in found.kvs() {
        if let Ok(member) = serde_json::from_slice::<Member>(entry.value()) {
            members.push(member);
        }
    }
    let found = kv
        .get(
            store.full_key(DUTIES),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .map_err(unavailable)?;
    let prefix = store.full_key(DUTIES);
    let duties = found
        .kvs()
        .iter()
        .map(|entry| {
            let name = entry.key().strip_prefix(&prefix[..]).unwrap_or(entry.key());
            (
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(entry.value()).into_owned(),
            )
        })
        .collect();
    Ok((members, duties))
}

/// What this node last saw of the cluster, for metrics and `server`'s alarms.
#[derive(Debug, Default)]
pub struct Health {
    /// Whether the last look at etcd got an answer.
    pub etcd_reachable: std::sync::atomic::AtomicBool,
    /// Duties that had no holder at the last look.
    pub duties_without_holder: std::sync::atomic::AtomicU64,
    /// Duties this node held at the last look.
    pub duties_held_here: std::sync::atomic::AtomicU64,
}
