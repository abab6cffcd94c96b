//! DER SubjectPublicKeyInfo of an RSA public key (RFC 5280 §4.1, RFC 8017 appendix A.1.1):
//! what GetParametersForImport returns as `PublicKey`, from the modulus and exponent a root of
//! trust reports. The few lines of DER are written here rather than pulled from a crate.

/// rsaEncryption, 1.2.840.113549.1.1.1, with its NULL parameters.
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;

/// `modulus` and `exponent` are big-endian unsigned integers (leading zeros allowed).
pub fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut key = integer(modulus);
    key.extend(integer(exponent));
    let key = tlv(SEQUENCE, &key);
    let mut bits = vec![0u8]; // no unused bits
    bits.extend(key);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(tlv(BIT_STRING, &bits));
    tlv(SEQUENCE, &body)
}

/// A non-negative INTEGER: minimal, with a zero byte when the top bit would read as a sign.
fn integer(unsigned: &[u8]) -> Vec<u8> {
    let start = unsigned
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(unsigned.len());
    let digits = &unsigned[start..];
    let mut value = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(digits);
    tlv(INTEGER, &value)
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
    use rsa::traits::PublicKeyParts;

    #[test]
    fn matches_the_rsa_crates_encoding() {
        let key = rsa::PrivateKey::from_pkcs8_der(include_bytes!("testdata/oaep-test-key.der"))
            .unwrap()
            .to_public_key();
        let ours = rsa_public_key(&key.n_bytes(), &key.e_bytes());
        let theirs = key.to_public_key_der().unwrap();
        assert_eq!(ours, theirs.as_bytes());
        assert_eq!(rsa::PublicKey::from_public_key_der(&ours).unwrap(), key);
        // Leading zeros are dropped; a set top bit gets its zero byte.
        let mut padded = vec![0, 0];
        padded.extend_from_slice(&key.n_bytes());
        assert_eq!(rsa_public_key(&padded, &[0, 1, 0, 1]), ours);
    }

    #[test]
    fn integers_and_lengths() {
        assert_eq!(integer(&[0x01]), [0x02, 0x01, 0x01]);
        assert_eq!(integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
