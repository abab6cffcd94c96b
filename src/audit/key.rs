//! The checkpoint key: an HMAC-SHA256 key made inside the root of trust at the first start
//! (CKM_SHA256_HMAC on a PKCS#11 token, a keyed-hash object under the TPM's SRK) and never out
//! of it. Someone who can rewrite the log file but cannot use the root of trust cannot forge a
//! checkpoint, so a rewritten log fails verification.

use super::{CheckpointMac, MacFuture};
use crate::backend::{BackendError, Hardware, KeyRef};
use crate::crypto::{ct_eq, hex, sha256};
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

impl RootMac {
    /// The data directory's checkpoint key, made on first use.
    pub async fn open(store: &Store, hw: Hardware) -> Result<Self, KeyError> {
        let key = match store.get(keyspace::AUDIT_MAC_KEY).await? {
            Some(found) => KeyRef(String::from_utf8_lossy(&found.value).into_owned()),
            None => {
                let key = hw.run(|root| root.create_mac_key(LABEL)).await?;
                let recorded = store
                    .commit(vec![Op::Put {
                        key: keyspace::AUDIT_MAC_KEY.to_vec(),
                        value: key.0.clone().into_bytes(),
                        expect: Expect::Absent,
                    }])
                    .await;
                match recorded {
                    Ok(()) => {
                        tracing::info!("created the audit checkpoint key in the root of trust");
                        key
                    }
                    // Another node of a cluster starting at the same moment recorded its key
                    // first: every node must use that one. The object made here stays unused.
                    Err(StoreError::Conflict(_)) => match store.get(keyspace::AUDIT_MAC_KEY).await?
                    {
                        Some(found) => KeyRef(String::from_utf8_lossy(&found.value).into_owned()),
                        None => return Err(StoreError::Conflict("audit/mac-key".into()).into()),
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        };
        // Names the key in checkpoints without revealing anything: a hash of its reference.
        let id = format!("rot:{}", &hex::encode(&sha256(key.0.as_bytes()))[..16]);
        Ok(Self { hw, key, id })
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
