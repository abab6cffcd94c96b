//! The escrow private key split into k-of-n Shamir shares (GF(256), the `blahaj` crate), each
//! share one line of text an operator can store on paper:
//!
//! `keyward-share:1:<escrow id, 32 hex>:<threshold>:<index>:<share, hex>:<checksum, 8 hex>`
//!
//! - The checksum is the first 4 bytes of the SHA-256 of everything before it: a mistyped or
//!   damaged share is refused by itself, before any arithmetic.
//! - The escrow id ties a share to its escrow key: shares of two escrows are never combined.
//! - The index is the share's x coordinate (the first byte of blahaj's encoding) and must
//!   agree with it; two shares with one index are one share given twice.
//! - Fewer than `threshold` distinct shares are refused before combining: with fewer, any
//!   secret is equally likely, and combining would only produce noise.

use crate::crypto::{hex, sha256};
use zeroize::Zeroizing;

const PREFIX: &str = "keyward-share";
const FORMAT: &str = "1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("share {0}: not a keyward share (it must start with `{PREFIX}:{FORMAT}:`)")]
    NotAShare(usize),
    #[error("share {0}: its checksum does not match: it was mistyped or damaged")]
    Checksum(usize),
    #[error("share {0}: malformed ({1})")]
    Malformed(usize, &'static str),
    #[error("share {0} belongs to escrow key {1}, share 1 to {2}: shares of two escrows")]
    OtherEscrow(usize, String, String),
    #[error("share {0} repeats index {1}")]
    Repeated(usize, u8),
    #[error("{have} distinct shares given; this escrow key needs {need}")]
    TooFew { have: usize, need: usize },
    #[error("the shares could not be combined: {0}")]
    Combine(String),
    #[error(
        "cannot split into {shares} shares with threshold {threshold}: need 2 <= threshold <= shares <= 255"
    )]
    Parameters { shares: usize, threshold: usize },
}

/// One parsed share. The share bytes are secret: zeroized on drop, never printed.
struct Share {
    escrow_id: String,
    threshold: u8,
    index: u8,
    bytes: Zeroizing<Vec<u8>>,
}

fn checksum(body: &str) -> String {
    hex::encode(&sha256(body.as_bytes())[..4])
}

/// Splits `secret` into `shares` lines, any `threshold` of which rebuild it.
pub fn split(
    secret: &[u8],
    escrow_id: &str,
    threshold: usize,
    shares: usize,
) -> Result<Vec<Zeroizing<String>>, ShareError> {
    let valid = (2..=255).contains(&threshold) && threshold <= shares && shares <= 255;
    let (Ok(k), true) = (u8::try_from(threshold), valid) else {
        return Err(ShareError::Parameters { shares, threshold });
    };
    let dealer = blahaj::Sharks(k).dealer(secret);
    Ok(dealer
        .take(shares)
        .map(|share| {
            let bytes = Zeroizing::new(Vec::from(&share));
            let index = bytes.first().copied().unwrap_or_default();
            let body = Zeroizing::new(format!(
                "{PREFIX}:{FORMAT}:{escrow_id}:{k}:{index}:{}",
                hex::encode(&bytes[1..])
            ));
            Zeroizing::new(format!("{}:{}", body.as_str(), checksum(&body)))
        })
        .collect())
}

fn parse(number: usize, text: &str) -> Result<Share, ShareError> {
    let text = text.trim();
    let Some((body, sum)) = text.rsplit_once(':') else {
        return Err(ShareError::NotAShare(number));
    };
    if !body.starts_with(&format!("{PREFIX}:{FORMAT}:")) {
        return Err(ShareError::NotAShare(number));
    }
    if !crate::crypto::ct_eq(
        checksum(body).as_bytes(),
        sum.to_ascii_lowercase().as_bytes(),
    ) {
        return Err(ShareError::Checksum(number));
    }
    let fields: Vec<&str> = body.split(':').collect();
    let [_, _, escrow_id, threshold, index, payload] = fields[..] else {
        return Err(ShareError::Malformed(number, "wrong number of fields"));
    };
    let threshold: u8 = threshold
        .parse()
        .map_err(|_| ShareError::Malformed(number, "threshold"))?;
    let index: u8 = index
        .parse()
        .map_err(|_| ShareError::Malformed(number, "index"))?;
    let payload =
        Zeroizing::new(hex::decode(payload).ok_or(ShareError::Malformed(number, "share bytes"))?);
    if index == 0 || threshold < 2 || payload.is_empty() {
        return Err(ShareError::Malformed(number, "index, threshold or length"));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(payload.len() + 1));
    bytes.push(index);
    bytes.extend_from_slice(&payload);
    Ok(Share {
        escrow_id: escrow_id.to_owned(),
        threshold,
        index,
        bytes,
    })
}

/// Rebuilds the secret from share lines: the escrow id they belong to, and the secret.
pub fn combine(texts: &[&str]) -> Result<(String, Zeroizing<Vec<u8>>), ShareError> {
    let shares = texts
        .iter()
        .enumerate()
        .map(|(at, text)| parse(at + 1, text))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = shares.first() else {
        return Err(ShareError::TooFew { have: 0, need: 2 });
    };
    let mut seen = Vec::new();
    for (at, share) in shares.iter().enumerate() {
        if share.escrow_id != first.escrow_id || share.threshold != first.threshold {
            return Err(ShareError::OtherEscrow(
                at + 1,
                share.escrow_id.clone(),
                first.escrow_id.clone(),
            ));
        }
        if seen.contains(&share.index) {
            return Err(ShareError::Repeated(at + 1, share.index));
        }
        seen.push(share.index);
    }
    let need = usize::from(first.threshold);
    if shares.len() < need {
        return Err(ShareError::TooFew {
            have: shares.len(),
            need,
        });
    }
    let decoded = shares
        .iter()
        .map(|share| blahaj::Share::try_from(share.bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ShareError::Combine(e.to_string()))?;
    let secret = blahaj::Sharks(first.threshold)
        .recover(decoded.iter())
        .map_err(|e| ShareError::Combine(e.to_string()))?;
    Ok((first.escrow_id.clone(), Zeroizing::new(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabbccddeeff";

    fn lines(secret: &[u8], k: usize, n: usize) -> Vec<String> {
        split(secret, ID, k, n)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn any_threshold_of_the_shares_rebuild_the_secret_and_fewer_are_refused() {
        let secret: Vec<u8> = (0..192u8).collect();
        let all = lines(&secret, 3, 5);
        assert_eq!(all.len(), 5);
        for (a, b, c) in [(0, 1, 2), (4, 2, 0), (1, 3, 4)] {
            let (id, got) = combine(&[&all[a], &all[b], &all[c]]).unwrap();
            assert_eq!(id, ID);
            assert_eq!(got.as_slice(), secret.as_slice());
        }
        assert_eq!(
            combine(&[&all[0], &all[1]]).unwrap_err(),
            ShareError::TooFew { have: 2, need: 3 }
        );
        assert_eq!(
            combine(&[&all[0], &all[1], &all[1]]).unwrap_err(),
            ShareError::Repeated(3, all[1].split(':').nth(4).unwrap().parse().unwrap())
        );
    }

    #[test]
    fn a_changed_character_anywhere_is_caught_by_the_checksum_or_the_format() {
        let all = lines(b"0123456789abcdef", 2, 3);
        let share = &all[0];
        for at in 0..share.len() {
            let mut bytes = share.clone().into_bytes();
            bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
            let changed = String::from_utf8(bytes).unwrap();
            let outcome = combine(&[&changed, &all[1]]);
            assert!(outcome.is_err(), "changed at {at}: {changed}");
        }
    }

    #[test]
    fn shares_of_two_escrows_are_not_combined() {
        let ours = lines(b"secret one", 2, 3);
        let theirs = split(b"secret two", "ffeeddccbbaa99887766554433221100", 2, 3).unwrap();
        assert!(matches!(
            combine(&[&ours[0], &theirs[1]]).unwrap_err(),
            ShareError::OtherEscrow(2, _, _)
        ));
    }

    #[test]
    fn impossible_parameters_are_refused() {
        for (k, n) in [(1, 5), (6, 5), (2, 256), (0, 0)] {
            assert!(split(b"x", ID, k, n).is_err(), "{k} of {n}");
        }
    }
}
