//! Key escrow (opt-in, `[escrow] public_key_file`): every new master key version, and the two
//! keys that protect recovery itself (the backup MAC key and the audit checkpoint key), also
//! exist wrapped to an RSA-3072 escrow public key whose private half exists only as k-of-n
//! shares held by people ([`shares`], [`keypair`]).
//!
//! Rules:
//! - Escrow fails closed: with `[escrow]` configured, a key that cannot be escrowed is not made
//!   (a token without the trusted escrow key, a TPM `resident` key).
//! - How the wrapping happens is the root of trust's business: inside a PKCS#11 token (C_WrapKey
//!   under the SO-installed trusted key), in software for a TPM's `sealed-kek` keys (whose key
//!   is in memory anyway). The blob ([`Escrowed`]) records the escrow key's id, the OAEP hash
//!   used (SHA-1 on SoftHSM 2.6, which offers nothing stronger; SHA-256 elsewhere), and a check
//!   value made with the key when it was made: recovery proves each rebuilt key against it (a
//!   GCM tag over nothing for a master key, an HMAC for a MAC key) before it is trusted.
//! - The escrow public key is written into the store (`escrow/key/<id>`), so every backup
//!   carries the modulus recovery needs.

pub mod keypair;
pub mod shares;

use crate::backend::{EscrowTarget, Hardware, KeyKind, KeyProtection, KeyRef, RsaPublicKey};
use crate::crypto::envelope::NONCE_LEN;
pub use crate::crypto::master::Escrowed;
use crate::crypto::{SecretBytes, ct_eq, hex, sha256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The smallest escrow modulus accepted.
pub const MIN_BITS: usize = 3072;

/// What check values are computed over (the AAD of the GCM check, the HMAC message).
const CHECK_MESSAGE: &[u8] = b"keyward escrow check v1";

#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    #[error("escrow public key: {0}")]
    PublicKey(String),
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    WrongShares(String),
    #[error(transparent)]
    Shares(#[from] shares::ShareError),
    #[error("root of trust: {0}")]
    RootOfTrust(#[from] crate::backend::BackendError),
}

/// The escrow public key as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowKey {
    target: EscrowTarget,
    der: Vec<u8>,
}

impl EscrowKey {
    /// From DER SubjectPublicKeyInfo: RSA, at least [`MIN_BITS`], exponent 65537.
    pub fn from_der(der: &[u8]) -> Result<Self, EscrowError> {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::PublicKey::from_public_key_der(der)
            .map_err(|e| EscrowError::PublicKey(format!("not an RSA public key ({e})")))?;
        if key.n().bit_width() < MIN_BITS as u32 {
            return Err(EscrowError::PublicKey(format!(
                "{} bits; escrow needs at least {MIN_BITS}",
                key.n().bit_width()
            )));
        }
        let exponent = key.e().to_be_bytes_trimmed_vartime().into_vec();
        if exponent != [0x01, 0x00, 0x01] {
            return Err(EscrowError::PublicKey("its exponent is not 65537".into()));
        }
        let digest = sha256(der);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Ok(Self {
            target: EscrowTarget {
                id,
                public: RsaPublicKey {
                    modulus: key.n().to_be_bytes_trimmed_vartime().into_vec(),
                    exponent,
                },
            },
            der: der.to_vec(),
        })
    }

    /// From a PEM `PUBLIC KEY` block (what `keyward escrow init` writes).
    pub fn from_pem(text: &str) -> Result<Self, EscrowError> {
        let body: String = text
            .lines()
            .map(str::trim)
            .skip_while(|line| *line != "-----BEGIN PUBLIC KEY-----")
            .skip(1)
            .take_while(|line| *line != "-----END PUBLIC KEY-----")
            .collect();
        if body.is_empty() {
            return Err(EscrowError::PublicKey(
                "no -----BEGIN PUBLIC KEY----- block".into(),
            ));
        }
        let der = BASE64
            .decode(body)
            .map_err(|e| EscrowError::PublicKey(format!("bad base64 ({e})")))?;
        Self::from_der(&der)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, EscrowError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EscrowError::PublicKey(format!("{}: {e}", path.display())))?;
        Self::from_pem(&text)
            .map_err(|e| EscrowError::PublicKey(format!("{}: {e}", path.display())))
    }

    /// The id (hex) every blob wrapped to this key names.
    pub fn id(&self) -> String {
        hex::encode(&self.target.id)
    }

    pub fn target(&self) -> &EscrowTarget {
        &self.target
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn pem(&self) -> String {
        let encoded = BASE64.encode(&self.der);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }
}

/// Makes a key of `kind` in the root of trust, escrowed: its reference and its blob. Nothing
/// is left behind when any step fails.
pub async fn create(
    hw: &Hardware,
    escrow: &EscrowKey,
    kind: KeyKind,
    label: String,
    protection: KeyProtection,
) -> Result<(KeyRef, Escrowed), crate::backend::BackendError> {
    let target = escrow.target().clone();
    let (key, wrapped) = hw
        .run(move |root| root.create_escrowed(kind, &label, &protection, &target))
        .await?;
    match check_value(hw, kind, &key).await {
        Ok(check) => Ok((
            key,
            Escrowed {
                escrow_key: escrow.id(),
                oaep_hash: wrapped.hash,
                wrapped: wrapped.bytes,
                check,
            },
        )),
        Err(e) => {
            let made = key.clone();
            let _ = hw.run(move |root| root.destroy_key(&made)).await;
            Err(e)
        }
    }
}

/// Escrows a key made earlier, where its root of trust lets it leave wrapped.
pub async fn escrow_existing(
    hw: &Hardware,
    escrow: &EscrowKey,
    kind: KeyKind,
    key: &KeyRef,
) -> Result<Escrowed, crate::backend::BackendError> {
    let (target, wrapping) = (escrow.target().clone(), key.clone());
    let wrapped = hw
        .run(move |root| root.escrow_existing(kind, &wrapping, &target))
        .await?;
    Ok(Escrowed {
        escrow_key: escrow.id(),
        oaep_hash: wrapped.hash,
        wrapped: wrapped.bytes,
        check: check_value(hw, kind, key).await?,
    })
}

/// A value only this key makes: a master key's GCM tag over nothing (nonce first), a MAC key's
/// HMAC, both of [`CHECK_MESSAGE`].
async fn check_value(
    hw: &Hardware,
    kind: KeyKind,
    key: &KeyRef,
) -> Result<Vec<u8>, crate::backend::BackendError> {
    let key = key.clone();
    match kind {
        KeyKind::Master => {
            let nonce = SecretBytes::random(NONCE_LEN)
                .map_err(|e| crate::backend::BackendError::Internal(e.to_string()))?;
            let mut iv = [0u8; NONCE_LEN];
            iv.copy_from_slice(nonce.expose());
            let tag = hw
                .run(move |root| root.seal(&key, &iv, CHECK_MESSAGE, &[]))
                .await?;
            let mut check = iv.to_vec();
            check.extend(tag);
            Ok(check)
        }
        KeyKind::Mac => hw
            .run(move |root| root.mac(&key, CHECK_MESSAGE))
            .await
            .map(|tag| tag.to_vec()),
    }
}

/// Whether `key` (rebuilt in a new root of trust) is the key `check` was made with.
pub async fn verify(
    hw: &Hardware,
    kind: KeyKind,
    key: &KeyRef,
    check: &[u8],
) -> Result<bool, crate::backend::BackendError> {
    let key = key.clone();
    match kind {
        KeyKind::Master => {
            let Some((nonce, tag)) = check.split_first_chunk::<NONCE_LEN>() else {
                return Ok(false);
            };
            let (nonce, tag) = (*nonce, tag.to_vec());
            match hw
                .run(move |root| root.unseal(&key, &nonce, CHECK_MESSAGE, &tag))
                .await
            {
                Ok(opened) => Ok(opened.is_empty()),
                Err(crate::backend::BackendError::InvalidCiphertext) => Ok(false),
                Err(e) => Err(e),
            }
        }
        KeyKind::Mac => {
            let tag = hw.run(move |root| root.mac(&key, CHECK_MESSAGE)).await?;
            Ok(ct_eq(&tag, check))
        }
    }
}
