//! TPM response codes, classified once (issue: one translation table).
//!
//! tss-esapi 7 decodes a code's TPM bits with `kind()` but ignores the TSS layer (bits 16-23),
//! so a TCTI or ESYS error would read as a TPM one: the layer is checked first. The raw value
//! has no getter in 7.x and is recovered from the code's Display ("... 0x....").

use tss_esapi::Error;
use tss_esapi::constants::response_code::{Tss2ResponseCode, Tss2ResponseCodeKind as K};

const LAYER_TPM: u32 = 0;
const LAYER_ESYS: u32 = 7;
const LAYER_SYS: u32 = 8;
const LAYER_TCTI: u32 = 10;
const LAYER_RESMGR_TPM: u32 = 12;
const RC_BAD_SEQUENCE: u32 = 7;
const RC_TRY_AGAIN: u32 = 9;
const RC_IO_ERROR: u32 = 10;
const RC_NO_CONNECTION: u32 = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A policy (the PCR binding) is not satisfied: the platform state changed.
    PolicyFail,
    /// A blob does not belong to this TPM or parent, or was altered.
    Integrity,
    /// Retry the same command: RETRY, YIELDED, TESTING, NV_RATE, TCTI TRY_AGAIN.
    Retry,
    /// Out of object or session slots (no resource manager in front of the TPM).
    OutOfSlots,
    /// Wrong owner authorization, or dictionary-attack lockout.
    Refused,
    /// The connection is gone; the context is unusable and must be re-created.
    Transport,
    Other,
}

fn raw(code: &Tss2ResponseCode) -> u32 {
    let text = match code {
        Tss2ResponseCode::Success => return 0,
        Tss2ResponseCode::FormatZero(z) => z.to_string(),
        Tss2ResponseCode::FormatOne(o) => o.to_string(),
    };
    text.rsplit("0x")
        .next()
        .and_then(|hex| u32::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(u32::MAX)
}

pub fn classify(error: &Error) -> Failure {
    let Error::Tss2Error(code) = error else {
        return Failure::Other;
    };
    let rc = raw(code);
    match (rc >> 16) & 0xff {
        LAYER_TPM | LAYER_RESMGR_TPM => {}
        LAYER_TCTI => {
            return match rc & 0xffff {
                RC_TRY_AGAIN => Failure::Retry,
                _ => Failure::Transport,
            };
        }
        LAYER_ESYS | LAYER_SYS => {
            return match rc & 0xffff {
                RC_IO_ERROR | RC_NO_CONNECTION | RC_BAD_SEQUENCE => Failure::Transport,
                RC_TRY_AGAIN => Failure::Retry,
                _ => Failure::Other,
            };
        }
        _ => return Failure::Other,
    }
    match code.kind() {
        Some(K::PolicyFail | K::Policy | K::Pcr | K::PcrChanged) => Failure::PolicyFail,
        Some(K::Integrity | K::Binding | K::Size | K::Value) => Failure::Integrity,
        Some(K::Retry | K::Yielded | K::Testing | K::NvRate) => Failure::Retry,
        Some(
            K::ObjectMemory | K::SessionMemory | K::Memory | K::SessionHandles | K::ObjectHandles,
        ) => Failure::OutOfSlots,
        Some(K::AuthFail | K::BadAuth | K::Lockout) => Failure::Refused,
        _ => Failure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tss_esapi::tss2_esys::TSS2_RC;

    fn of(rc: TSS2_RC) -> Failure {
        classify(&Error::Tss2Error(Tss2ResponseCode::from(rc)))
    }

    #[test]
    fn codes_seen_on_swtpm_are_classified() {
        assert_eq!(of(0x99d), Failure::PolicyFail);
        assert_eq!(of(0x1df), Failure::Integrity);
        assert_eq!(of(0x922), Failure::Retry);
        assert_eq!(of(0x908), Failure::Retry);
        assert_eq!(of(0x90a), Failure::Retry);
        assert_eq!(of(0x902), Failure::OutOfSlots);
        assert_eq!(of(0x9a2), Failure::Refused);
        assert_eq!(of(0xa000a), Failure::Transport);
        assert_eq!(of(0x70007), Failure::Transport);
        // An ESYS general failure is not a TPM "failure mode" code.
        assert_eq!(of(0x70001), Failure::Other);
    }
}
