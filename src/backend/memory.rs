//! A software root of trust for unit tests only: keys live in process memory. Never compiled
//! into the server.

use super::{BackendError, KeyRef, Result, RootOfTrust};
use crate::crypto::{SecretBytes, envelope::NONCE_LEN};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, aead::Aead, aead::Payload};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryRoot {
    keys: Mutex<HashMap<KeyRef, SecretBytes>>,
}

impl MemoryRoot {
    fn cipher(&self, key: &KeyRef) -> Result<Aes256Gcm> {
        let keys = self
            .keys
            .lock()
            .map_err(|_| BackendError::Internal("poisoned".into()))?;
        let bytes = keys
            .get(key)
            .ok_or_else(|| BackendError::KeyMissing(key.clone()))?;
        Aes256Gcm::new_from_slice(bytes.expose()).map_err(|e| BackendError::Internal(e.to_string()))
    }
}

impl RootOfTrust for MemoryRoot {
    fn kind(&self) -> &'static str {
        "MEMORY"
    }

    fn create_key(&self, _label: &str) -> Result<KeyRef> {
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
        self.cipher(key)?
            .encrypt(&Nonce::from(*nonce), Payload { msg: pt, aad })
            .map_err(|_| BackendError::Internal("seal failed".into()))
    }

    fn unseal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<SecretBytes> {
        self.cipher(key)?
            .decrypt(&Nonce::from(*nonce), Payload { msg: ct, aad })
            .map(SecretBytes::new)
            .map_err(|_| BackendError::InvalidCiphertext)
    }

    fn random(&self, len: usize) -> Result<SecretBytes> {
        SecretBytes::random(len).map_err(|e| BackendError::Internal(e.to_string()))
    }

    fn check(&self) -> Result<()> {
        Ok(())
    }
}
