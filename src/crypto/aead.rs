//! AES-256-GCM in software, for secret values under a data key. Sealed form: 12-byte nonce,
//! ciphertext, 16-byte tag.

use super::SecretBytes;
use super::envelope::{NONCE_LEN, TAG_LEN};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

/// Sealing or opening failed; deliberately without detail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authenticated decryption failed")]
pub struct AeadError;

pub fn seal(key: &SecretBytes, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| AeadError)?;
    let sealed = seal_with_nonce(key.expose(), &nonce, aad, plaintext)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

pub fn open(key: &SecretBytes, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, AeadError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(AeadError);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| AeadError)?;
    open_with_nonce(key.expose(), &nonce, aad, body)
}

/// AES-256-GCM with a caller-chosen nonce: ciphertext then tag (the envelope's sealed form).
pub fn seal_with_nonce(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, AeadError> {
    Aes256Gcm::new_from_slice(key)
        .map_err(|_| AeadError)?
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| AeadError)
}

pub fn open_with_nonce(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<SecretBytes, AeadError> {
    Aes256Gcm::new_from_slice(key)
        .map_err(|_| AeadError)?
        .decrypt(&Nonce::from(*nonce), Payload { msg: sealed, aad })
        .map(SecretBytes::new)
        .map_err(|_| AeadError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flip_fails() {
        let key = SecretBytes::random(32).unwrap();
        let sealed = seal(&key, b"aad", b"value").unwrap();
        assert_eq!(open(&key, b"aad", &sealed).unwrap().expose(), b"value");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(open(&key, b"aad", &bad).unwrap_err(), AeadError);
        }
        assert!(open(&key, b"other", &sealed).is_err());
        assert!(open(&key, b"aad", &sealed[..20]).is_err());
    }
}
