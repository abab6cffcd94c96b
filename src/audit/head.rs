//! The audit log's head as last recorded in the store: at every start and at a clean close.
//! Kept outside the log, so a log cut short while the server was stopped is noticed at the
//! next start.
//!
//! Stored as a store record (`store::encode`). Data directories from before kept the text
//! `<seq> <hash>`; that is still read, and the save every start makes replaces it.

use super::Head;
use crate::store::{self, Expect, Op, Store, keyspace};
use serde::{Deserialize, Serialize};

/// What the store holds; separate from [`Head`] so the stored form changes only on purpose.
#[derive(Debug, Serialize, Deserialize)]
struct HeadRecord {
    seq: u64,
    /// Lower-case hex SHA-256 of the line.
    hash: String,
}

/// Records `head`; a failure is logged, not fatal (the next start records it again).
/// `node`: a cluster node's id (each node keeps its own log and head); none on one server.
pub async fn save_audit_head(store: &Store, node: Option<&str>, head: &Head) {
    let value = store::encode(&HeadRecord {
        seq: head.seq,
        hash: head.hash.clone(),
    });
    let saved = store
        .commit(vec![Op::Put {
            key: keyspace::audit_head(node),
            value,
            expect: Expect::Any,
        }])
        .await;
    if let Err(e) = saved {
        tracing::warn!(error = %e, "cannot record where the audit log was closed");
    }
}

/// The head recorded last, if any.
pub async fn closed_audit_head(store: &Store, node: Option<&str>) -> Result<Option<Head>, String> {
    let key = keyspace::audit_head(node);
    let Some(found) = store.get(&key).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    // A store record opens with its format version, a small number; the old text opens with
    // the sequence number's first digit. Neither can be taken for the other.
    let record = match found.value.first() {
        Some(b'0'..=b'9') => legacy(&found.value)?,
        _ => store::decode::<HeadRecord>(&key, &found.value).map_err(|e| e.to_string())?,
    };
    Ok(Some(Head {
        seq: record.seq,
        hash: record.hash,
    }))
}

/// `<seq> <hash>`, as written before the head was a store record.
fn legacy(value: &[u8]) -> Result<HeadRecord, String> {
    let text = String::from_utf8_lossy(value);
    text.split_once(' ')
        .and_then(|(seq, hash)| {
            Some(HeadRecord {
                seq: seq.parse().ok()?,
                hash: hash.to_owned(),
            })
        })
        .ok_or_else(|| format!("malformed {text:?} in the store"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_support::{FakeMac, fake_mac};
    use crate::audit::{AuditEvent, AuditLog, AuditSettings, AuditTask, SyncMode, verify};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    async fn get_raw(store: &Store) -> Vec<u8> {
        store
            .get(keyspace::AUDIT_HEAD)
            .await
            .unwrap()
            .expect("a head is stored")
            .value
    }

    async fn put_raw(store: &Store, value: &[u8]) {
        store
            .commit(vec![Op::Put {
                key: keyspace::AUDIT_HEAD.to_vec(),
                value: value.to_vec(),
                expect: Expect::Any,
            }])
            .await
            .unwrap();
    }

    async fn open(path: &Path, last_closed: Option<Head>) -> Result<(AuditLog, AuditTask), String> {
        let settings = AuditSettings {
            path: path.to_owned(),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(3600),
            sync: SyncMode::EveryBatch,
            last_closed,
            node: None,
        };
        AuditLog::open(settings, Arc::new(FakeMac::default()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Writes `n` records, closes the log, and returns its final head.
    async fn write_and_close(path: &Path, last_closed: Option<Head>, n: u64) -> Head {
        let (log, task) = open(path, last_closed).await.unwrap();
        let task = tokio::spawn(task.run());
        for i in 0..n {
            log.append(AuditEvent {
                action: "CreateKey".into(),
                resource: format!("key-{i}"),
                ..AuditEvent::default()
            })
            .await
            .unwrap();
        }
        let probe = log.clone();
        log.close().await.unwrap();
        task.await.unwrap();
        probe.head()
    }

    #[tokio::test]
    async fn the_head_round_trips_as_a_store_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        assert_eq!(closed_audit_head(&store, None).await.unwrap(), None);
        let head = Head {
            seq: 42,
            hash: "ab".repeat(32),
        };
        save_audit_head(&store, None, &head).await;
        let raw = get_raw(&store).await;
        assert!(!raw[0].is_ascii_digit(), "{raw:?}");
        let record: HeadRecord = store::decode(keyspace::AUDIT_HEAD, &raw).unwrap();
        assert_eq!((record.seq, record.hash.as_str()), (42, head.hash.as_str()));
        assert_eq!(closed_audit_head(&store, None).await.unwrap(), Some(head));
    }

    #[tokio::test]
    async fn malformed_heads_are_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        for bad in [&b"42"[..], b"4x2 abcd", b"", b"\x07{}", b"\x01{\"seq\":1}"] {
            put_raw(&store, bad).await;
            assert!(closed_audit_head(&store, None).await.is_err(), "{bad:?}");
        }
    }

    /// A data directory from before the serde record: its text head is still what a cut log
    /// is checked against, the chain continues from it and verifies whole, and the next save
    /// leaves a store record in its place.
    #[tokio::test]
    async fn a_text_head_from_an_older_version_still_guards_and_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let path = dir.path().join("audit.log");
        let closed = write_and_close(&path, None, 3).await;
        put_raw(&store, format!("{} {}", closed.seq, closed.hash).as_bytes()).await;

        let read = closed_audit_head(&store, None).await.unwrap();
        assert_eq!(read.as_ref(), Some(&closed));

        // Still the guard: a log cut short while stopped is refused against the text head.
        let whole = std::fs::read(&path).unwrap();
        let last_line = whole[..whole.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap();
        std::fs::write(&path, &whole[..=last_line]).unwrap();
        let refused = open(&path, read.clone()).await.err().unwrap();
        assert!(refused.contains("cut short or replaced"), "{refused}");
        std::fs::write(&path, &whole).unwrap();

        // And the chain continues from it.
        let reopened = write_and_close(&path, read, 2).await;
        assert!(reopened.seq > closed.seq);
        save_audit_head(&store, None, &reopened).await;
        let raw = get_raw(&store).await;
        assert!(store::decode::<HeadRecord>(keyspace::AUDIT_HEAD, &raw).is_ok());
        assert_eq!(
            closed_audit_head(&store, None).await.unwrap(),
            Some(reopened.clone())
        );

        // The whole file, both runs, against the head now recorded.
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let mut scan = verify::scan(file).unwrap();
        scan.check_head(&closed_audit_head(&store, None).await.unwrap().unwrap());
        for i in 0..scan.checkpoints.len() {
            let claim = &scan.checkpoints[i];
            if fake_mac(&claim.key_id, &claim.message) != claim.mac {
                scan.mark_bad_mac(i);
            }
        }
        assert!(scan.ok() && scan.sealed(), "{:?}", scan.findings);
        assert_eq!(scan.last, Some(reopened));
    }
}
