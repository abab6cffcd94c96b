//! Fencing: the commits a cluster duty makes are valid only while its node holds the duty.
//!
//! A duty (rotation, purge, replication sending) runs on the one node holding its election
//! key in etcd, a key bound to that node's lease. A node can lose the key without knowing it:
//! paused past its lease (a stopped process, a long GC-like stall, a partition), it wakes up
//! believing it still holds the duty while another node already runs it. So every commit made
//! inside [`scope`] also requires the election key to be at the revision the holder was
//! elected at; once the key expired or went to another node, the commit fails with
//! [`super::StoreError::Fenced`] and writes nothing.
//!
//! The fence travels with the task (a task-local), so the duty's code calls the services as
//! any request does. Work the duty hands to other tasks is not fenced: duties run their steps
//! in their own task. On the embedded store there is one node and no fence.

use std::future::Future;
use std::sync::Arc;

/// The election key a duty's commits require, at the revision its holder was elected at.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The duty's name, for errors and logs.
    pub duty: String,
    /// The store key (without the site prefix) of the duty's election.
    pub key: Vec<u8>,
    /// The election key's `mod_revision` when this node took it.
    pub revision: i64,
}

tokio::task_local! {
    static FENCE: Arc<Fence>;
}

/// Runs `work` with every commit in it fenced by `fence` (none: unfenced).
pub async fn scope<F: Future>(fence: Option<Arc<Fence>>, work: F) -> F::Output {
    match fence {
        Some(fence) => FENCE.scope(fence, work).await,
        None => work.await,
    }
}

/// The fence of the running task, if it runs inside [`scope`].
pub fn current() -> Option<Arc<Fence>> {
    FENCE.try_with(Arc::clone).ok()
}
