//! The checkpoint key: an HMAC-SHA256 key made inside the root of trust at the first start
//! (CKM_SHA256_HMAC on a PKCS#11 token, a keyed-hash object under the TPM's SRK) and never out
//! of it. Someone who can rewrite the log file but cannot use the root of trust cannot forge a
//! checkpoint, so a rewritten log fails verification. Backups are sealed the same way, under a
//! key of their own ([`RootMac::open_named`]).

use super::{CheckpointMac, MacFuture};
use crate::backend::{BackendError, Hardware, KeyKind, KeyProtection, KeyRef};
use crate::crypto::{ct_eq, hex, sha256};
use crate::escrow::EscrowKey;
use crate::store::{Expect, Op, Store, StoreError, keyspace};

const LABEL: &str = "keyward-audit-checkpoints";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    RootOfTrust(#[from] BackendError),
}

pub struct RootMac {
    hw: Hardware,
    key: KeyRef,
    id: String,
}

/// Where the escrowed blob of the MAC key named at `entry` is kept.
pub fn escrowed_mac_entry(entry: &[u8]) -> Vec<u8> {
    [keyspace::ESCROWED_MAC_KEYS, entry].concat()
}

impl RootMac {
    /// The data directory's checkpoint key, made on first use (escrowed, with `escrow`).
    pub async fn open(
        store: &Store,
        hw: Hardware,
        escrow: Option<&EscrowKey>,
    ) -> Result<Self, KeyError> {
        Self::open_named(store, hw, keyspace::AUDIT_MAC_KEY, LABEL, escrow).await
    }

    /// The MAC key whose reference the store keeps at `entry`, made (labelled `label`) on
    /// first use; with `escrow`, made escrowed, its blob kept under
    /// [`keyspace::ESCROWED_MAC_KEYS`] in the same commit.
    pub async fn open_named(
        store: &Store,
        hw: Hardware,
        entry: &[u8],
        label: &'static str,
        escrow: Option<&EscrowKey>,
    ) -> Result<Self, KeyError> {
        let key = match store.get(entry).await? {
            Some(found) => KeyRef(String::from_utf8_lossy(&found.value).into_owned()),
            None => {
                let (key, escrowed) = match escrow {
                    Some(escrow) => {
                        let (key, escrowed) = crate::escrow::create(
                            &hw,
                            escrow,
                            KeyKind::Mac,
                            label.to_owned(),
                            KeyProtection::default(),
                        )
                        .await?;
                        (key, Some(escrowed))
                    }
                    None => (hw.run(move |root| root.create_mac_key(label)).await?, None),
                };
                let mut ops = vec![Op::Put {
                    key: entry.to_vec(),
                    value: key.0.clone().into_bytes(),
                    expect: Expect::Absent,
                }];
                if let Some(escrowed) = escrowed {
                    ops.push(Op::Put {
                        key: escrowed_mac_entry(entry),
                        value: serde_json::to_vec(&escrowed).map_err(|e| {
                            BackendError::Internal(format!("encoding an escrowed key: {e}"))
                        })?,
                        expect: Expect::Any,
                    });
                }
                let recorded = store.commit(ops).await;
                match recorded {
                    Ok(()) => {
                        tracing::info!(label, "created a MAC key in the root of trust");
                        key
                    }
                    // Another node of a cluster starting at the same moment recorded its key
                    // first: every node must use that one. The object made here stays unused.
                    Err(StoreError::Conflict(_)) => match store.get(entry).await? {
                        Some(found) => KeyRef(String::from_utf8_lossy(&found.value).into_owned()),
                        None => {
                            let entry = String::from_utf8_lossy(entry).into_owned();
                            return Err(StoreError::Conflict(entry).into());
                        }
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(Self::with_key(hw, key))
    }

    /// A MAC key already known by its reference (read from a backup, say).
    pub fn with_key(hw: Hardware, key: KeyRef) -> Self {
        // Names the key in checkpoints without revealing anything: a hash of its reference.
        let id = format!("rot:{}", &hex::encode(&sha256(key.0.as_bytes()))[..16]);
        Self { hw, key, id }
    }

    /// The MAC of `message`.
    pub async fn compute(&self, message: Vec<u8>) -> Result<[u8; 32], BackendError> {
        let key = self.key.clone();
        self.hw.run(move |root| root.mac(&key, &message)).await
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Recomputes the MAC of `message` and compares it with `mac` in constant time.
    pub async fn verify(&self, message: Vec<u8>, mac: &[u8]) -> Result<bool, BackendError> {
        let key = self.key.clone();
        let expected = self.hw.run(move |root| root.mac(&key, &message)).await?;
        Ok(ct_eq(&expected, mac))
    }
}

impl CheckpointMac for RootMac {
    fn key_id(&self) -> String {
        self.id.clone()
    }

    fn mac(&self, message: Vec<u8>) -> MacFuture {
        let (hw, key) = (self.hw.clone(), self.key.clone());
        Box::pin(async move {
            hw.run(move |root| root.mac(&key, &message))
                .await
                .map(|tag| tag.to_vec())
                .map_err(|e| e.to_string())
        })
    }
}
