//! The audit log's head as last recorded in the store: at every start and at a clean close.
//! Kept outside the log, so a log cut short while the server was stopped is noticed at the
//! next start.

use super::Head;
use crate::store::{Expect, Op, Store};

/// The store key of the recorded head.
const AUDIT_HEAD: &[u8] = b"audit/closed-head";

/// Records `head`; a failure is logged, not fatal (the next start records it again).
pub async fn save_audit_head(store: &Store, head: &Head) {
    let value = format!("{} {}", head.seq, head.hash).into_bytes();
    let saved = store
        .commit(vec![Op::Put {
            key: AUDIT_HEAD.to_vec(),
            value,
            expect: Expect::Any,
        }])
        .await;
    if let Err(e) = saved {
        tracing::warn!(error = %e, "cannot record where the audit log was closed");
    }
}

/// The head recorded last, if any.
pub fn closed_audit_head(store: &Store) -> Result<Option<Head>, String> {
    let Some(found) = store.get(AUDIT_HEAD).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&found.value);
    let parsed = text
        .split_once(' ')
        .and_then(|(seq, hash)| Some((seq.parse().ok()?, hash.to_owned())));
    match parsed {
        Some((seq, hash)) => Ok(Some(Head { seq, hash })),
        None => Err(format!("malformed {text:?} in the store")),
    }
}
