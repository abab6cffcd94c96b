//! String to sign, signing-key derivation and the final HMAC.

use super::{ALGORITHM, TERMINATOR};
use crate::crypto::hex;

/// `YYYYMMDD/region/service/aws4_request`.
pub(crate) fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/{TERMINATOR}")
}

/// `AWS4-HMAC-SHA256\n<X-Amz-Date>\n<scope>\n<hex sha256(canonical request)>`.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(&sha256(canonical_request))
    )
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
///
/// The result depends only on (secret, date, region, service), which is what
/// makes it cacheable per day; nothing is cached here.
pub(crate) fn signing_key(
    secret: &[u8],
    date: &str,
    region: &str,
    service: &str,
) -> Option<[u8; 32]> {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret);
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    // The prefixed copy of the secret is not left behind in freed heap memory
    // longer than needed (best effort: no zeroize crate is allowed here).
    k_secret.iter_mut().for_each(|b| *b = 0);
    let k_region = hmac_sha256(&k_date?, region.as_bytes())?;
    let k_service = hmac_sha256(&k_region, service.as_bytes())?;
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

pub(crate) fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> Option<[u8; 32]> {
    hmac_sha256(signing_key, string_to_sign.as_bytes())
}

/// Kept fallible for its callers' sake; the shared HMAC cannot fail.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    Some(crate::crypto::hmac_sha256(key, data))
}

pub(crate) use crate::crypto::sha256;

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// AWS General Reference, "Examples of how to derive a signing key for
    /// Signature Version 4": every intermediate key is published.
    #[test]
    fn key_derivation_matches_the_published_2012_iam_chain() {
        let k_secret = [b"AWS4".as_slice(), SECRET].concat();
        assert_eq!(
            hex::encode(&k_secret),
            "41575334774a616c725855746e46454d492f4b374d44454e472b62507852666943594558414d504c454b4559"
        );
        let k_date = hmac_sha256(&k_secret, b"20120215").unwrap();
        assert_eq!(
            hex::encode(&k_date),
            "969fbb94feb542b71ede6f87fe4d5fa29c789342b0f407474670f0c2489e0a0d"
        );
        let k_region = hmac_sha256(&k_date, b"us-east-1").unwrap();
        assert_eq!(
            hex::encode(&k_region),
            "69daa0209cd9c5ff5c8ced464a696fd4252e981430b10e3d3fd8e2f197d7a70c"
        );
        let k_service = hmac_sha256(&k_region, b"iam").unwrap();
        assert_eq!(
            hex::encode(&k_service),
            "f72cfd46f26bc4643f06a11eabb6c0ba18780c19a8da0c31ace671265e3c87fa"
        );
        assert_eq!(
            hex::encode(&signing_key(SECRET, "20120215", "us-east-1", "iam").unwrap()),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    /// AWS General Reference, "Task 3: Calculate the signature": the signing
    /// key for 20150830/us-east-1/iam, and the signature over the documented
    /// string to sign of the IAM ListUsers GET example.
    #[test]
    fn signing_key_and_signature_match_the_published_2015_iam_example() {
        let key = signing_key(SECRET, "20150830", "us-east-1", "iam").unwrap();
        assert_eq!(
            hex::encode(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
        assert_eq!(
            hex::encode(&signature(&key, sts).unwrap()),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn a_secret_longer_than_the_hmac_block_still_derives() {
        // "AWS4" + 61 bytes exceeds SHA-256's 64-byte block, taking HMAC's
        // hash-the-key branch; it must not fail and must differ from a prefix.
        let long = [b'k'; 61];
        let a = signing_key(&long, "20150830", "us-east-1", "kms").unwrap();
        let b = signing_key(&long[..60], "20150830", "us-east-1", "kms").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn string_to_sign_layout() {
        let sts = string_to_sign(
            "20150830T123600Z",
            &credential_scope("20150830", "us-east-1", "service"),
            b"",
        );
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
