//! RSAES-OAEP decoding (RFC 8017 §7.1.2, step 3) of a block a root of trust has already
//! decrypted with raw RSA: for key import with SHA-256, which SoftHSM 2.6's CKM_RSA_PKCS_OAEP
//! does not offer (it does SHA-1 only).
//!
//! Rules:
//! - Constant time in everything an attacker sends: no early return and no branch on the first
//!   byte, the label hash or the padding (Manger's attack needs only one distinguishable
//!   failure). The single branch is on the final verdict.
//! - One error for every failure, [`OaepError`], with nothing in it.
//! - Decoding happens in place, in the caller's buffer (a locked, zeroizing one); the masks
//!   computed on the way are zeroized when dropped.
//! - The label is empty, as AWS KMS uses it.

use sha2::Digest;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// The block is not an OAEP encoding under this hash and the empty label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid OAEP block")]
pub struct OaepError;

/// Decodes `em`, the k-byte output of raw RSA decryption (left-padded with zeros to the
/// modulus length), in place; returns where the message lies in it.
pub fn decode<D: Digest>(em: &mut [u8]) -> Result<std::ops::Range<usize>, OaepError> {
    let h_len = <D as Digest>::output_size();
    let k = em.len();
    // The length is public (the modulus size), so this may return early.
    if k < 2 * h_len + 2 {
        return Err(OaepError);
    }
    let label_hash = Zeroizing::new(D::digest([]).to_vec());
    let (first, rest) = em.split_at_mut(1);
    let (masked_seed, masked_db) = rest.split_at_mut(h_len);
    // seed = maskedSeed ^ MGF1(maskedDB); DB = maskedDB ^ MGF1(seed).
    mgf1_xor::<D>(masked_db, masked_seed);
    mgf1_xor::<D>(masked_seed, masked_db);
    let (seed, db) = (masked_seed, masked_db);
    seed.fill(0);

    let mut good = first[0].ct_eq(&0);
    good &= db[..h_len].ct_eq(&label_hash[..]);
    // After the label hash: zeros, then 0x01, then the message.
    let mut looking = Choice::from(1);
    let mut separator = 0u32;
    let mut bad_padding = Choice::from(0);
    for (i, &byte) in db.iter().enumerate().skip(h_len) {
        let is_one = byte.ct_eq(&1);
        let is_zero = byte.ct_eq(&0);
        let at = u32::try_from(i).unwrap_or(u32::MAX);
        separator.conditional_assign(&at, looking & is_one);
        bad_padding |= looking & !is_one & !is_zero;
        looking &= !is_one;
    }
    good &= !bad_padding & !looking;
    if bool::from(good) {
        let start = 1 + h_len + separator as usize + 1;
        Ok(start..k)
    } else {
        em.fill(0);
        Err(OaepError)
    }
}

/// `target ^= MGF1(seed, target.len())`.
fn mgf1_xor<D: Digest>(seed: &[u8], target: &mut [u8]) {
    let mut counter = 0u32;
    for chunk in target.chunks_mut(<D as Digest>::output_size()) {
        let mut hash = D::new();
        hash.update(seed);
        hash.update(counter.to_be_bytes());
        let mask = Zeroizing::new(hash.finalize().to_vec());
        for (t, m) in chunk.iter_mut().zip(mask.iter()) {
            *t ^= m;
        }
        counter = counter.wrapping_add(1);
    }
}

/// RSAES-OAEP encryption with SHA-256 (MGF1-SHA-256, empty label) to the RSA public key
/// (`modulus`, `exponent`, big-endian): escrow wrapping of material already in this process's
/// memory (a TPM `sealed-kek` key). Only public-key arithmetic: nothing here is secret but the
/// message.
pub fn encrypt_sha256(modulus: &[u8], exponent: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
    use rsa::pkcs8::DecodePublicKey;
    let der = super::spki::rsa_public_key(modulus, exponent);
    let key = rsa::PublicKey::from_public_key_der(&der).map_err(|e| e.to_string())?;
    key.encrypt(
        &mut super::rng::OsRng,
        rsa::Oaep::<sha2::Sha256>::new(),
        message,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::rng::OsRng;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    use rsa::{BoxedUint, Oaep, PrivateKey};

    /// A 2048-bit key made once with openssl for these tests (generating one per run is slow in
    /// a debug build); it protects nothing.
    const TEST_KEY: &[u8] = include_bytes!("testdata/oaep-test-key.der");

    fn key() -> PrivateKey {
        PrivateKey::from_pkcs8_der(TEST_KEY).unwrap()
    }

    /// Raw RSA decryption of `ciphertext`, as CKM_RSA_X_509 returns it: k bytes.
    fn raw_decrypt(key: &PrivateKey, ciphertext: &[u8]) -> Vec<u8> {
        let k = key.size();
        let c = BoxedUint::from_be_slice(ciphertext, key.n().bits_precision()).unwrap();
        let m = rsa::hazmat::rsa_decrypt_and_check(key, Some(&mut OsRng), &c).unwrap();
        let bytes = m.to_be_bytes();
        let mut em = vec![0u8; k];
        let tail = &bytes[bytes.len().saturating_sub(k)..];
        em[k - tail.len()..].copy_from_slice(tail);
        em
    }

    fn wrap<P: rsa::traits::PaddingScheme>(
        key: &PrivateKey,
        padding: P,
        message: &[u8],
    ) -> Vec<u8> {
        key.to_public_key()
            .encrypt(&mut OsRng, padding, message)
            .unwrap()
    }

    #[test]
    fn decodes_what_the_rsa_crate_encodes() {
        let private = key();
        for message in [&[0x42u8; 32][..], b"", &[0u8; 32], &[1u8; 190]] {
            let wrapped = wrap(&private, Oaep::<sha2::Sha256>::new(), message);
            let mut em = raw_decrypt(&private, &wrapped);
            let range = decode::<sha2::Sha256>(&mut em).unwrap();
            assert_eq!(&em[range], message);
        }
    }

    #[test]
    fn a_label_a_hash_or_a_flipped_bit_is_refused() {
        let private = key();
        let message = [7u8; 32];
        let labelled = wrap(
            &private,
            Oaep::<sha2::Sha256>::new_with_label(b"other".to_vec()),
            &message,
        );
        assert_eq!(
            decode::<sha2::Sha256>(&mut raw_decrypt(&private, &labelled)),
            Err(OaepError)
        );
        let sha1 = wrap(&private, Oaep::<sha1::Sha1>::new(), &message);
        assert_eq!(
            decode::<sha2::Sha256>(&mut raw_decrypt(&private, &sha1)),
            Err(OaepError)
        );
        // The decoder is generic: the same block decodes under the hash it was made with.
        let mut em = raw_decrypt(&private, &sha1);
        let range = decode::<sha1::Sha1>(&mut em).unwrap();
        assert_eq!(&em[range], &message);

        let good = wrap(&private, Oaep::<sha2::Sha256>::new(), &message);
        let em = raw_decrypt(&private, &good);
        for at in [0, 1, 40, 100, em.len() - 1] {
            let mut bad = em.clone();
            bad[at] ^= 0x01;
            let decoded = decode::<sha2::Sha256>(&mut bad);
            assert_eq!(decoded, Err(OaepError), "bit flipped at {at}");
            assert!(bad.iter().all(|&b| b == 0), "a refused block is wiped");
        }
        assert_eq!(decode::<sha2::Sha256>(&mut [0u8; 65]), Err(OaepError));
        assert_eq!(decode::<sha2::Sha256>(&mut [0u8; 256]), Err(OaepError));
    }
}
