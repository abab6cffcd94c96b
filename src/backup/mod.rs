//! Backups of the store: a point-in-time copy of every entry (wrapped keys and metadata, never
//! plaintext), sealed with a digest anyone can check and a MAC only the deployment's root of
//! trust can make ([`format`]); and their restore into an empty store.
//!
//! Left out: the cluster's membership and duty elections, which are bound to live etcd leases
//! and mean nothing in another process, and the mark of an earlier restore. Kept: the audit
//! heads, so that a server restored without its audit log records in the new log that the old
//! one is gone. A restore leaves a mark the next server start writes into the audit log: the
//! restore itself runs offline, where no log is written.
//!
//! The MAC key is a key of its own in the root of trust (its reference is in the store, so in
//! the backup too); a backup made by another deployment names a key this root does not hold,
//! or a root identity that is not this one, and is refused.

pub mod format;
pub mod recover;

use crate::audit::{KeyError, RootMac};
use crate::backend::{BackendError, Hardware, KeyRef, check_identity};
use crate::crypto::ct_eq;
use crate::store::{Expect, Op, Store, StoreError, keyspace};
use crate::time::Timestamp;
use format::{Backup, FormatError, Header};
use std::time::{Duration, Instant};

const MAC_LABEL: &str = "keyward-backups";

/// A restore writes at most this many entries, and about this many bytes, per commit: within
/// etcd's default limits (128 operations, 1.5 MiB per request).
const BATCH_OPS: usize = 128;
const BATCH_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("root of trust: {0}")]
    RootOfTrust(#[from] BackendError),
    #[error(
        "the backup's MAC does not match: it was not made by this deployment's root of trust, \
         or it was rewritten together with its digest"
    )]
    Forged,
    #[error("the backup is from another deployment: {0}")]
    OtherDeployment(String),
    #[error("the target store is not empty ({0} entries): restore refuses to mix two stores")]
    NotEmpty(usize),
    #[error(
        "{0}; the restore stopped part way and the target store is incomplete: run the same \
         restore again with --force to finish it"
    )]
    Incomplete(Box<BackupError>),
}

impl From<KeyError> for BackupError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(e) => Self::Store(e),
            KeyError::RootOfTrust(e) => Self::RootOfTrust(e),
        }
    }
}

/// A snapshot of the store, sealed: what a backup file holds, not yet laid out as one (a
/// large store's file need never exist whole in the server's memory). `writes_paused`: how
/// long writes were held back (the snapshot; on sled every commit waits for it).
pub struct Sealed {
    pub header: Header,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub digest: [u8; 32],
    mac: [u8; format::MAC_LEN],
    pub writes_paused: Duration,
}

impl Sealed {
    /// The whole file.
    pub fn file(&self) -> Vec<u8> {
        let (body, _) = format::encode(&self.header, &self.entries);
        format::seal(body, &self.digest, &self.mac)
    }

    /// The file in pieces of at least `size` bytes (the last may be shorter), each laid out
    /// when it is asked for; entries are freed as they are written out.
    pub fn into_chunks(self, size: usize) -> Chunks {
        Chunks {
            head: Some(self.header),
            entries: self.entries.into_iter(),
            seal: Some(format::seal_bytes(&self.digest, &self.mac)),
            size,
        }
    }
}

pub struct Chunks {
    head: Option<Header>,
    entries: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    seal: Option<Vec<u8>>,
    size: usize,
}

impl Iterator for Chunks {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut chunk = Vec::with_capacity(self.size);
        if let Some(header) = self.head.take() {
            format::write_head(&header, &mut |bytes| chunk.extend_from_slice(bytes));
        }
        while chunk.len() < self.size {
            match self.entries.next() {
                Some((key, value)) => {
                    format::write_entry(&key, &value, &mut |bytes| chunk.extend_from_slice(bytes))
                }
                None => {
                    chunk.extend(self.seal.take()?);
                    break;
                }
            }
        }
        Some(chunk)
    }
}

fn kept(key: &[u8]) -> bool {
    !key.starts_with(keyspace::CLUSTER_NODES)
        && !key.starts_with(keyspace::CLUSTER_DUTIES)
        && key != keyspace::BACKUP_RESTORED
        && key != keyspace::ESCROW_ADDED
}

fn source(store: &Store) -> &'static str {
    match store {
        Store::Sled(_) => "sled",
        Store::Etcd(_) => "etcd",
    }
}

/// Snapshots `store` and seals it with the backup key in `hw` (made on first use, escrowed
/// with `escrow`). The file
/// is hashed here without being built, so a failure shows before any of it is sent.
pub async fn create(
    store: &Store,
    hw: Hardware,
    escrow: Option<&crate::escrow::EscrowKey>,
    now: Timestamp,
) -> Result<Sealed, BackupError> {
    let mac = RootMac::open_named(store, hw, keyspace::BACKUP_MAC_KEY, MAC_LABEL, escrow).await?;
    let started = Instant::now();
    let snapshot = store.snapshot().await?;
    let writes_paused = started.elapsed();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = snapshot
        .into_iter()
        .filter(|(key, _)| kept(key))
        .map(|(key, found)| (key, found.value))
        .collect();
    let root_identity = entries
        .iter()
        .find(|(key, _)| key == keyspace::ROOT_IDENTITY)
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
    let header = Header {
        created_at: now.rfc3339().unwrap_or_default(),
        source: source(store).to_owned(),
        root_identity,
        mac_key: mac.id().to_owned(),
        entries: entries.len() as u64,
    };
    let digest = format::write_body(&header, &entries, &mut |_| {});
    let tag = mac.compute(format::mac_message(&digest)).await?;
    Ok(Sealed {
        header,
        entries,
        digest,
        mac: tag,
        writes_paused,
    })
}

/// Checks a backup's MAC with the root of trust in `hw`: it must be this deployment's.
pub async fn check_seal(backup: &Backup, hw: Hardware) -> Result<(), BackupError> {
    let recorded = backup.value(keyspace::ROOT_IDENTITY).map(<[u8]>::to_vec);
    hw.run(move |root| {
        check_identity(root, recorded.as_deref())
            .map(|_| ())
            .map_err(|e| BackendError::Unsupported(e.to_string()))
    })
    .await
    .map_err(|e| match e {
        BackendError::Unsupported(changed) => BackupError::OtherDeployment(changed),
        other => other.into(),
    })?;
    let Some(key) = backup.value(keyspace::BACKUP_MAC_KEY) else {
        return Err(FormatError::Malformed("it names no MAC key".into()).into());
    };
    let mac = RootMac::with_key(hw, KeyRef(String::from_utf8_lossy(key).into_owned()));
    if mac.id() != backup.header.mac_key {
        return Err(FormatError::Malformed(
            "its header and its entries name different MAC keys".into(),
        )
        .into());
    }
    match mac.compute(format::mac_message(&backup.digest)).await {
        Ok(tag) if ct_eq(&tag, &backup.mac) => Ok(()),
        Ok(_) => Err(BackupError::Forged),
        Err(e @ (BackendError::Unavailable(_) | BackendError::Busy(_))) => Err(e.into()),
        Err(e) => Err(BackupError::OtherDeployment(format!(
            "this root of trust cannot use the key that sealed it ({e})"
        ))),
    }
}

/// Writes every entry of `backup` into `target`, which must be empty unless `replace`: then
/// what it holds is deleted first. Returns the entries written. The seal is the caller's to
/// check first ([`check_seal`]).
pub async fn restore(
    backup: &Backup,
    target: &Store,
    replace: bool,
    now: Timestamp,
) -> Result<usize, BackupError> {
    let existing = target.snapshot().await?;
    if !existing.is_empty() && !replace {
        return Err(BackupError::NotEmpty(existing.len()));
    }
    // From the first write on, a failure leaves the target half replaced.
    fill(backup, target, existing, now)
        .await
        .map_err(|e| BackupError::Incomplete(Box::new(e)))?;
    Ok(backup.entries.len())
}

async fn fill(
    backup: &Backup,
    target: &Store,
    existing: Vec<(Vec<u8>, crate::store::Versioned)>,
    now: Timestamp,
) -> Result<(), BackupError> {
    let deletes = existing.into_iter().map(|(key, found)| Op::Delete {
        key,
        expect: Expect::Version(found.version),
    });
    commit_in_batches(target, deletes).await?;
    let puts = backup.entries.iter().map(|(key, value)| Op::Put {
        key: key.clone(),
        value: value.clone(),
        expect: Expect::Absent,
    });
    commit_in_batches(target, puts).await?;
    let mark = serde_json::json!({
        "backup_sha256": crate::crypto::hex::encode(&backup.digest),
        "backup_created_at": backup.header.created_at,
        "restored_at": now.rfc3339(),
        "entries": backup.entries.len(),
    });
    target
        .commit(vec![Op::Put {
            key: keyspace::BACKUP_RESTORED.to_vec(),
            value: mark.to_string().into_bytes(),
            expect: Expect::Any,
        }])
        .await?;
    target.flush()?;
    Ok(())
}

async fn commit_in_batches(
    target: &Store,
    ops: impl Iterator<Item = Op>,
) -> Result<(), BackupError> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    for op in ops {
        bytes += match &op {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        };
        batch.push(op);
        if batch.len() >= BATCH_OPS || bytes >= BATCH_BYTES {
            target.commit(std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        target.commit(batch).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_of(entries: &[(&str, &str)]) -> Backup {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let header = Header {
            created_at: "2026-12-08T00:00:00Z".into(),
            source: "sled".into(),
            root_identity: None,
            mac_key: "rot:00".into(),
            entries: entries.len() as u64,
        };
        let (body, digest) = format::encode(&header, &entries);
        format::decode(&format::seal(body, &digest, &[0; format::MAC_LEN])).unwrap()
    }

    async fn contents(store: &Store) -> Vec<(String, String)> {
        store
            .snapshot()
            .await
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k).unwrap(),
                    String::from_utf8(v.value).unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_restore_fills_an_empty_store_and_replaces_a_full_one_only_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = backup_of(&[("kms/key/a", "1"), ("sm/secret/b", "2")]);
        let now = Timestamp::from_secs(1_796_000_000);
        assert_eq!(restore(&first, &store, false, now).await.unwrap(), 2);
        let restored = contents(&store).await;
        // First in key order: the mark the next server start audits, naming the backup.
        let (key, mark) = &restored[0];
        assert_eq!(key.as_bytes(), keyspace::BACKUP_RESTORED);
        assert!(
            mark.contains(&crate::crypto::hex::encode(&first.digest)),
            "{mark}"
        );
        assert_eq!(
            restored[1..],
            [
                ("kms/key/a".to_owned(), "1".to_owned()),
                ("sm/secret/b".to_owned(), "2".to_owned())
            ]
        );

        let second = backup_of(&[("kms/key/c", "3")]);
        match restore(&second, &store, false, now).await {
            Err(BackupError::NotEmpty(3)) => {}
            other => panic!(
                "expected NotEmpty(3), got {:?}",
                other.map_err(|e| e.to_string())
            ),
        }
        assert_eq!(contents(&store).await, restored, "nothing changed");
        restore(&second, &store, true, now).await.unwrap();
        let replaced = contents(&store).await;
        assert_eq!(replaced.len(), 2, "{replaced:?}");
        assert_eq!(replaced[1], ("kms/key/c".to_owned(), "3".to_owned()));
    }

    #[test]
    fn the_chunks_laid_out_one_by_one_are_the_file() {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
            .map(|i| {
                (
                    format!("sm/value/{i:03}").into_bytes(),
                    vec![i as u8; i * 3],
                )
            })
            .collect();
        let header = Header {
            created_at: "2026-12-08T00:00:00Z".into(),
            source: "sled".into(),
            root_identity: None,
            mac_key: "rot:00".into(),
            entries: entries.len() as u64,
        };
        let digest = format::write_body(&header, &entries, &mut |_| {});
        let sealed = Sealed {
            header,
            entries,
            digest,
            mac: [9; format::MAC_LEN],
            writes_paused: Duration::ZERO,
        };
        let file = sealed.file();
        assert_eq!(format::decode(&file).unwrap().digest, digest);
        for size in [1, 7, 64, 1 << 20] {
            let chunks: Vec<Vec<u8>> = Sealed {
                header: sealed.header.clone(),
                entries: sealed.entries.clone(),
                ..sealed
            }
            .into_chunks(size)
            .collect();
            assert!(chunks.iter().all(|c| !c.is_empty()), "size {size}");
            assert_eq!(chunks.concat(), file, "size {size}");
        }
    }

    #[test]
    fn live_cluster_state_and_old_marks_stay_out_of_backups() {
        assert!(kept(b"kms/key/a"));
        assert!(kept(keyspace::AUDIT_HEAD));
        assert!(!kept(b"cluster/node/node-1"));
        assert!(!kept(b"cluster/duty/rotation"));
        assert!(!kept(keyspace::BACKUP_RESTORED));
        assert!(!kept(keyspace::ESCROW_ADDED));
    }
}
