//! A software root of trust for unit tests only: keys live in process memory. Never compiled
//! into the server.

use super::{BackendError, KeyProtection, KeyRef, MAC_LEN, Result, RootOfTrust};
use crate::crypto::{SecretBytes, aead, envelope::NONCE_LEN};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryRoot {
    keys: Mutex<HashMap<KeyRef, SecretBytes>>,
}

impl MemoryRoot {
    fn material(&self, key: &KeyRef) -> Result<SecretBytes> {
        let keys = self
            .keys
            .lock()
            .map_err(|_| BackendError::Internal("poisoned".into()))?;
        keys.get(key)
            .map(|bytes| SecretBytes::new(bytes.expose().to_vec()))
            .ok_or_else(|| BackendError::KeyMissing(key.clone()))
    }
}

impl RootOfTrust for MemoryRoot {
    fn kind(&self) -> &'static str {
        "MEMORY"
    }

    fn create_key(&self, _label: &str, _: &KeyProtection) -> Result<KeyRef> {
        let key = KeyRef(uuid::Uuid::new_v4().simple().to_string());
        let material =
            SecretBytes::random(32).map_err(|e| BackendError::Internal(e.to_string()))?;
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| BackendError::Internal("poisoned".into()))?;
        keys.insert(key.clone(), material);
        Ok(key)
    }

    fn destroy_key(&self, key: &KeyRef) -> Result<()> {
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| BackendError::Internal("poisoned".into()))?;
        keys.remove(key);
        Ok(())
    }

    fn seal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        pt: &[u8],
    ) -> Result<Vec<u8>> {
        aead::seal_with_nonce(self.material(key)?.expose(), nonce, aad, pt)
            .map_err(|_| BackendError::Internal("seal failed".into()))
    }

    fn unseal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<SecretBytes> {
        aead::open_with_nonce(self.material(key)?.expose(), nonce, aad, ct)
            .map_err(|_| BackendError::InvalidCiphertext)
    }

    fn create_mac_key(&self, label: &str) -> Result<KeyRef> {
        self.create_key(label, &KeyProtection::default())
    }

    fn mac(&self, key: &KeyRef, message: &[u8]) -> Result<[u8; MAC_LEN]> {
        Ok(crate::crypto::hmac_sha256(
            self.material(key)?.expose(),
            message,
        ))
    }

    fn random(&self, len: usize) -> Result<SecretBytes> {
        SecretBytes::random(len).map_err(|e| BackendError::Internal(e.to_string()))
    }

    fn check(&self) -> Result<()> {
        Ok(())
    }
}
