//! The backup file, format 1. Everything big-endian:
//!
//! ```text
//! "KWBACKUP"  u16 format (1)
//! u32 header length, header (JSON: when, from which store, how many entries, which MAC key)
//! per entry, in strictly ascending key order: u32 key length, key, u32 value length, value
//! "END\n"  SHA-256 of every byte before "END\n"  HMAC-SHA256 (root of trust) of that digest
//! ```
//!
//! The digest lets anyone check offline that the file is whole and unchanged; the MAC, made by a
//! key that never leaves the root of trust, that it was made by this deployment and not
//! rewritten together with its digest. The file holds what the store holds (wrapped keys and
//! metadata), never plaintext.

use crate::crypto::sha256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"KWBACKUP";
pub const FORMAT: u16 = 1;
const END: &[u8; 4] = b"END\n";
const DIGEST_LEN: usize = 32;
pub const MAC_LEN: usize = 32;
const SEAL_LEN: usize = END.len() + DIGEST_LEN + MAC_LEN;
/// Bounds a reader checks before it allocates: no store key comes near these.
const MAX_HEADER: usize = 64 * 1024;
const MAX_KEY: usize = 64 * 1024;
const MAX_VALUE: usize = 256 * 1024 * 1024;

/// What a backup says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// RFC 3339, when the snapshot was taken.
    pub created_at: String,
    /// `sled` or `etcd`: the store it was taken from.
    pub source: String,
    /// The root of trust the store was created with (`<kind>:<hex>`), when it has one.
    pub root_identity: Option<String>,
    /// The MAC key's id (a hash of its reference, as in audit checkpoints).
    pub mac_key: String,
    pub entries: u64,
}

/// A backup read back and found whole (digest checked; the MAC is the root of trust's to check).
pub struct Backup {
    pub header: Header,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub digest: [u8; DIGEST_LEN],
    pub mac: [u8; MAC_LEN],
}

impl Backup {
    pub fn value(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()
            .map(|at| self.entries[at].1.as_slice())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a Keyward backup (the file does not start with KWBACKUP)")]
    NotABackup,
    #[error("backup format {0} is not one this keyward reads (it reads format {FORMAT})")]
    Format(u16),
    #[error("the backup is cut short: {0}")]
    Truncated(String),
    #[error(
        "the backup was changed after it was written: its SHA-256 does not match the digest it carries"
    )]
    Changed,
    #[error("the backup is malformed: {0}")]
    Malformed(String),
}

/// What the root of trust MACs: the digest, under a name that no other MAC of the same key
/// could share.
pub fn mac_message(digest: &[u8; DIGEST_LEN]) -> Vec<u8> {
    [&b"keyward-backup-v1\0"[..], digest].concat()
}

/// Feeds the file up to its seal to `out`, piece by piece, and returns the digest the seal
/// carries: a backup can be hashed without being built, and built a piece at a time.
pub fn write_body(
    header: &Header,
    entries: &[(Vec<u8>, Vec<u8>)],
    out: &mut impl FnMut(&[u8]),
) -> [u8; DIGEST_LEN] {
    let mut hash = Sha256::new();
    let mut emit = |bytes: &[u8]| {
        hash.update(bytes);
        out(bytes);
    };
    write_head(header, &mut emit);
    for (key, value) in entries {
        write_entry(key, value, &mut emit);
    }
    hash.finalize().into()
}

/// The file's start: magic, format and header.
pub fn write_head(header: &Header, out: &mut impl FnMut(&[u8])) {
    out(MAGIC);
    out(&FORMAT.to_be_bytes());
    put(out, &header_bytes(header));
}

/// One entry, as it follows the head (entries in ascending key order).
pub fn write_entry(key: &[u8], value: &[u8], out: &mut impl FnMut(&[u8])) {
    put(out, key);
    put(out, value);
}

/// The file up to its seal, whole, and the digest the seal carries.
pub fn encode(header: &Header, entries: &[(Vec<u8>, Vec<u8>)]) -> (Vec<u8>, [u8; DIGEST_LEN]) {
    let size: usize = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut body = Vec::with_capacity(MAGIC.len() + 6 + size + SEAL_LEN + 1024);
    let digest = write_body(header, entries, &mut |bytes| body.extend_from_slice(bytes));
    (body, digest)
}

/// The bytes that end a backup.
pub fn seal_bytes(digest: &[u8; DIGEST_LEN], mac: &[u8; MAC_LEN]) -> Vec<u8> {
    [&END[..], digest, mac].concat()
}

/// Appends the seal to what [`encode`] returned.
pub fn seal(mut body: Vec<u8>, digest: &[u8; DIGEST_LEN], mac: &[u8; MAC_LEN]) -> Vec<u8> {
    body.extend_from_slice(&seal_bytes(digest, mac));
    body
}

fn header_bytes(header: &Header) -> Vec<u8> {
    // Strings and integers only: serialising cannot fail.
    serde_json::to_vec(header).unwrap_or_default()
}

fn put(out: &mut impl FnMut(&[u8]), bytes: &[u8]) {
    // Lengths were bounded by the store; a reader refuses anything longer than its bounds.
    out(&(bytes.len() as u32).to_be_bytes());
    out(bytes);
}

/// Reads a backup, checking that it is whole and unchanged. Nothing here needs the root of trust.
pub fn decode(file: &[u8]) -> Result<Backup, FormatError> {
    if file.len() < MAGIC.len() + 2 || &file[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotABackup);
    }
    let format = u16::from_be_bytes([file[8], file[9]]);
    if format != FORMAT {
        return Err(FormatError::Format(format));
    }
    if file.len() < MAGIC.len() + 2 + 4 + SEAL_LEN {
        return Err(FormatError::Truncated(format!(
            "{} bytes, less than any backup",
            file.len()
        )));
    }
    let (body, seal) = file.split_at(file.len() - SEAL_LEN);
    if &seal[..END.len()] != END {
        return Err(FormatError::Truncated(
            "it does not end with a backup's seal (was the copy interrupted?)".into(),
        ));
    }
    let mut digest = [0u8; DIGEST_LEN];
    digest.copy_from_slice(&seal[END.len()..END.len() + DIGEST_LEN]);
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&seal[END.len() + DIGEST_LEN..]);
    if sha256(body) != digest {
        return Err(FormatError::Changed);
    }
    let mut reader = Reader {
        rest: &body[MAGIC.len() + 2..],
    };
    let header = reader.take("the header", MAX_HEADER)?;
    let header: Header = serde_json::from_slice(header)
        .map_err(|e| FormatError::Malformed(format!("its header: {e}")))?;
    // Each entry takes at least 8 bytes: a count beyond that cannot be honest.
    let most = reader.rest.len() / 8;
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> =
        Vec::with_capacity(usize::try_from(header.entries).unwrap_or(most).min(most));
    while !reader.rest.is_empty() {
        let n = entries.len() + 1;
        let key = reader.take(&format!("entry {n}'s key"), MAX_KEY)?;
        let value = reader.take(&format!("entry {n}'s value"), MAX_VALUE)?;
        if let Some((last, _)) = entries.last()
            && key <= last.as_slice()
        {
            return Err(FormatError::Malformed(format!(
                "entry {n} is out of key order"
            )));
        }
        entries.push((key.to_vec(), value.to_vec()));
    }
    if entries.len() as u64 != header.entries {
        return Err(FormatError::Malformed(format!(
            "the header counts {} entries, the file holds {}",
            header.entries,
            entries.len()
        )));
    }
    Ok(Backup {
        header,
        entries,
        digest,
        mac,
    })
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, what: &str, most: usize) -> Result<&'a [u8], FormatError> {
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(FormatError::Malformed(format!("{what} has no length")));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > most {
            return Err(FormatError::Malformed(format!(
                "{what} claims {len} bytes (at most {most})"
            )));
        }
        if rest.len() < len {
            return Err(FormatError::Malformed(format!(
                "{what} runs past the end of the entries"
            )));
        }
        let (taken, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let entries = vec![
            (b"kms/key/a".to_vec(), b"wrapped".to_vec()),
            (b"sm/secret/b".to_vec(), Vec::new()),
        ];
        let header = Header {
            created_at: "2026-12-08T00:00:00Z".into(),
            source: "sled".into(),
            root_identity: None,
            mac_key: "rot:0011".into(),
            entries: 2,
        };
        let (body, digest) = encode(&header, &entries);
        seal(body, &digest, &[7; MAC_LEN])
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let backup = decode(&sample()).unwrap();
        assert_eq!(backup.header.entries, 2);
        assert_eq!(backup.value(b"kms/key/a"), Some(&b"wrapped"[..]));
        assert_eq!(backup.value(b"sm/secret/b"), Some(&b""[..]));
        assert_eq!(backup.value(b"nothing"), None);
        assert_eq!(backup.mac, [7; MAC_LEN]);
    }

    #[test]
    fn every_single_byte_edit_and_every_cut_is_refused() {
        let file = sample();
        for at in 0..file.len() {
            let mut edited = file.clone();
            edited[at] ^= 0x01;
            // The MAC bytes are the root of trust's to check; everything else is refused here.
            if at >= file.len() - MAC_LEN {
                assert!(decode(&edited).is_ok());
                continue;
            }
            assert!(decode(&edited).is_err(), "edit at byte {at} accepted");
        }
        for len in 0..file.len() {
            assert!(decode(&file[..len]).is_err(), "cut at {len} accepted");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let file = sample();
        let mut changed = file.clone();
        changed[30] ^= 0x80;
        assert!(matches!(decode(&changed), Err(FormatError::Changed)));
        assert!(matches!(
            decode(&file[..file.len() - 1]),
            Err(FormatError::Truncated(_))
        ));
        assert!(matches!(
            decode(b"PK\x03\x04 a zip"),
            Err(FormatError::NotABackup)
        ));
        let mut later = file.clone();
        later[9] = 2;
        assert!(matches!(decode(&later), Err(FormatError::Format(2))));
    }
}
