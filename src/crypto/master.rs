//! Names of master keys in a root of trust, shared by the roots of trust that make them and the
//! key records that keep them: neither needs the other to speak of a key.

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
