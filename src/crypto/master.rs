//! Names of master keys in a root of trust, shared by the roots of trust that make them and the
//! key records that keep them: neither needs the other to speak of a key. Also what a record
//! keeps of an escrowed key (`crate::escrow`).

use serde::{Deserialize, Serialize};

/// Opaque, non-secret name of a master key version inside the root of trust (for PKCS#11 the
/// object's CKA_ID in hex). Stored in the key record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRef(pub String);

/// How a key is protected where the root of trust offers a choice (a TPM's key modes and PCR
/// binding). Kept in the key record, so every version of a key is made the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProtection {
    /// "resident" or "sealed-kek" on a TPM; empty elsewhere.
    #[serde(default)]
    pub mode: String,
    /// PCR indices whose values at creation the key is bound to; empty: not bound.
    #[serde(default)]
    pub pcrs: Vec<u8>,
}

/// The hash of RSAES-OAEP (and of its MGF1) that key material was wrapped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OaepHash {
    Sha1,
    Sha256,
}

/// A key's material wrapped to the escrow key, kept in the store beside the key's reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escrowed {
    /// The escrow key's id (hex).
    pub escrow_key: String,
    pub oaep_hash: OaepHash,
    #[serde(with = "base64_bytes")]
    pub wrapped: Vec<u8>,
    /// Made with the key when it was made; recovery checks the rebuilt key against it.
    #[serde(with = "base64_bytes")]
    pub check: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}
