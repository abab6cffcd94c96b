//! The ciphertext blob: self-describing, versioned, parsed strictly.
//!
//! ```text
//! offset  size  field
//!      0     1  format (0x01)
//!      1    16  KMS key id (UUID bytes)
//!     17     4  key version (big-endian, >= 1)
//!     21    12  GCM nonce
//!     33   n+16 AES-256-GCM ciphertext of the n plaintext bytes, then the 16-byte tag
//! ```
//!
//! (A TPM's `resident` keys put the sealed object holding the GCM key before the ciphertext;
//! the root of trust reads its own part, this module only bounds the total.)
//!
//! The AAD given to the root of trust is the 33-byte header followed by the canonical
//! encryption context, so changing any header byte, or presenting another context, fails
//! authentication inside the hardware.

use super::EncryptionContext;
use uuid::Uuid;

pub const FORMAT_V1: u8 = 0x01;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const HEADER_LEN: usize = 1 + 16 + 4 + NONCE_LEN;
/// The largest plaintext a blob may carry (Encrypt's limit; data keys are at most 1024 bytes).
pub const MAX_PLAINTEXT_LEN: usize = 4096;
/// Room for what a root of trust adds beside the ciphertext (a TPM's sealed-object blobs).
pub const MAX_WRAPPING_LEN: usize = 1024;
pub const MIN_BLOB_LEN: usize = HEADER_LEN + TAG_LEN + 1;
pub const MAX_BLOB_LEN: usize = HEADER_LEN + TAG_LEN + MAX_PLAINTEXT_LEN + MAX_WRAPPING_LEN;

/// A blob that is not a Keyward ciphertext. Deliberately carries no detail: the caller
/// reports every decryption failure the same way.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid ciphertext")]
pub struct Malformed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key_id: Uuid,
    pub key_version: u32,
    pub nonce: [u8; NONCE_LEN],
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = FORMAT_V1;
        out[1..17].copy_from_slice(self.key_id.as_bytes());
        out[17..21].copy_from_slice(&self.key_version.to_be_bytes());
        out[21..].copy_from_slice(&self.nonce);
        out
    }

    /// Header bytes followed by the canonical context: what the GCM tag authenticates.
    pub fn aad(&self, context: &EncryptionContext) -> Vec<u8> {
        let mut aad = self.encode().to_vec();
        context.encode_into(&mut aad);
        aad
    }
}

/// A parsed blob borrowing its sealed bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Ciphertext<'a> {
    pub header: Header,
    pub sealed: &'a [u8],
}

impl<'a> Ciphertext<'a> {
    pub fn parse(blob: &'a [u8]) -> Result<Self, Malformed> {
        if !(MIN_BLOB_LEN..=MAX_BLOB_LEN).contains(&blob.len()) || blob[0] != FORMAT_V1 {
            return Err(Malformed);
        }
        let key_id = Uuid::from_slice(&blob[1..17]).map_err(|_| Malformed)?;
        let key_version = u32::from_be_bytes(blob[17..21].try_into().map_err(|_| Malformed)?);
        if key_version == 0 {
            return Err(Malformed);
        }
        let nonce = blob[21..HEADER_LEN].try_into().map_err(|_| Malformed)?;
        Ok(Self {
            header: Header {
                key_id,
                key_version,
                nonce,
            },
            sealed: &blob[HEADER_LEN..],
        })
    }

    pub fn assemble(header: &Header, sealed: &[u8]) -> Vec<u8> {
        let mut blob = Vec::with_capacity(HEADER_LEN + sealed.len());
        blob.extend_from_slice(&header.encode());
        blob.extend_from_slice(sealed);
        blob
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Header, Vec<u8>) {
        let header = Header {
            key_id: Uuid::new_v4(),
            key_version: 3,
            nonce: [7; NONCE_LEN],
        };
        (header, Ciphertext::assemble(&header, &[9u8; 48]))
    }

    #[test]
    fn round_trips() {
        let (header, blob) = sample();
        let parsed = Ciphertext::parse(&blob).unwrap();
        assert_eq!(parsed.header, header);
        assert_eq!(parsed.sealed, &[9u8; 48][..]);
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let (_, blob) = sample();
        for len in 0..MIN_BLOB_LEN {
            assert_eq!(Ciphertext::parse(&blob[..len]), Err(Malformed), "len {len}");
        }
    }

    #[test]
    fn unknown_format_zero_version_and_oversize_are_refused() {
        let (_, blob) = sample();
        let mut other_format = blob.clone();
        other_format[0] = 0x02;
        assert_eq!(Ciphertext::parse(&other_format), Err(Malformed));
        let mut zero_version = blob.clone();
        zero_version[17..21].copy_from_slice(&[0; 4]);
        assert_eq!(Ciphertext::parse(&zero_version), Err(Malformed));
        let oversize = vec![FORMAT_V1; MAX_BLOB_LEN + 1];
        assert_eq!(Ciphertext::parse(&oversize), Err(Malformed));
    }

    #[test]
    fn aad_covers_header_and_context() {
        let (header, _) = sample();
        let ctx = EncryptionContext::new([("a".into(), "b".into())].into()).unwrap();
        let aad = header.aad(&ctx);
        assert_eq!(&aad[..HEADER_LEN], &header.encode());
        assert!(aad.len() > HEADER_LEN);
        assert_ne!(aad, header.aad(&EncryptionContext::default()));
    }
}
