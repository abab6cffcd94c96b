//! SHA-256, HMAC-SHA256 in software, and constant-time comparison: for bearer-token hashes,
//! the audit chain and tests. Keys that must stay in hardware never come here.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

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
/// comparing MACs and token hashes an attacker can probe.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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
    }
}
