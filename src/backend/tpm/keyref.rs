//! What a TPM key version's `KeyRef` holds: its mode, its PCR binding (the PCRs, their values
//! at creation and the policy digest made from them) and the TPM object's public and private
//! blobs. Nothing in it is secret: the private part is encrypted by the TPM's parent key.
//!
//! Text form: `tpm1|<mode>|<pcrs, comma-separated>|<pcr values hex>|<policy hex>|<blob hex>`.

use crate::backend::{BackendError, KeyRef};
use crate::crypto::hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A storage key that never leaves the TPM; each data key sealed under it by the TPM.
    Resident,
    /// A 256-bit key sealed to the TPM, unsealed into memory once, used in software.
    SealedKek,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "resident" => Some(Self::Resident),
            "sealed-kek" => Some(Self::SealedKek),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resident => "resident",
            Self::SealedKek => "sealed-kek",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmKey {
    pub mode: Mode,
    pub pcrs: Vec<u8>,
    /// The selected PCRs' SHA-256 values when the key was made, in selection order.
    pub pcr_values: Vec<u8>,
    pub policy: Vec<u8>,
    pub blob: Vec<u8>,
}

impl TpmKey {
    pub fn to_ref(&self) -> KeyRef {
        let pcrs: Vec<String> = self.pcrs.iter().map(u8::to_string).collect();
        KeyRef(format!(
            "tpm1|{}|{}|{}|{}|{}",
            self.mode.as_str(),
            pcrs.join(","),
            hex::encode(&self.pcr_values),
            hex::encode(&self.policy),
            hex::encode(&self.blob)
        ))
    }

    pub fn parse(key: &KeyRef) -> Result<Self, BackendError> {
        let malformed = || BackendError::Internal(format!("malformed TPM key reference {key:?}"));
        let parts: Vec<&str> = key.0.split('|').collect();
        let [version, mode, pcrs, values, policy, blob] = parts[..] else {
            return Err(malformed());
        };
        if version != "tpm1" {
            return Err(malformed());
        }
        let pcrs = if pcrs.is_empty() {
            Vec::new()
        } else {
            pcrs.split(',')
                .map(|p| p.parse::<u8>().ok())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(malformed)?
        };
        Ok(Self {
            mode: Mode::parse(mode).ok_or_else(malformed)?,
            pcrs,
            pcr_values: hex::decode(values).ok_or_else(malformed)?,
            policy: hex::decode(policy).ok_or_else(malformed)?,
            blob: hex::decode(blob).ok_or_else(malformed)?,
        })
    }

    pub fn bound(&self) -> bool {
        !self.pcrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_refs_round_trip_and_junk_is_refused() {
        let key = TpmKey {
            mode: Mode::SealedKek,
            pcrs: vec![16, 23],
            pcr_values: vec![1; 64],
            policy: vec![2; 32],
            blob: vec![3, 4, 5],
        };
        assert_eq!(TpmKey::parse(&key.to_ref()).unwrap(), key);
        let unbound = TpmKey {
            mode: Mode::Resident,
            pcrs: Vec::new(),
            pcr_values: Vec::new(),
            policy: Vec::new(),
            blob: vec![9],
        };
        assert_eq!(TpmKey::parse(&unbound.to_ref()).unwrap(), unbound);
        for junk in [
            "",
            "tpm1|resident",
            "tpm2|resident||||00",
            "tpm1|other||||00",
            "tpm1|resident|x|||00",
        ] {
            assert!(TpmKey::parse(&KeyRef(junk.into())).is_err(), "{junk}");
        }
    }
}
