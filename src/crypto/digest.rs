//! SHA-256, HMAC-SHA256 in software, and constant-time comparison: for bearer-token hashes,
//! the audit chain and tests. Keys that must stay in hardware never come here.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const SHA256_LEN: usize = 32;

pub fn sha256(bytes: &[u8]) -> [u8; SHA256_LEN] {
    Sha256::digest(bytes).into()
}

/// HMAC-SHA256 with a key held in memory (the unit tests' software root of trust).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; SHA256_LEN] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return [0; SHA256_LEN];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Equality whose time depends only on the lengths, not on where the inputs differ: for
/// comparing MACs, token hashes and secret values an attacker can probe. The crate's only
/// constant-time comparison; `subtle` keeps the compiler from turning it back into an early exit.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(&[7; 32], &[7; 32]));
        assert!(!ct_eq(&[7; 32], &[7; 31]));
        assert!(!ct_eq(&[7; 31], &[7; 32]));
        let mut last = [7u8; 32];
        last[31] = 8;
        assert!(!ct_eq(&[7; 32], &last));
        let mut first = [7u8; 32];
        first[0] = 0x87;
        assert!(!ct_eq(&[7; 32], &first));
    }
}
