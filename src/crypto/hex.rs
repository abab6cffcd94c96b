//! Hex, the crate's only implementation. Keyward writes lower case everywhere; it reads lower
//! case only where it wrote the text itself (records, token hashes, key references), and either
//! case only where a standard allows both (SigV4 signatures and percent escapes).

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        push(&mut out, LOWER, b);
    }
    out
}

/// Appends `byte` as two upper-case digits: the form RFC 3986 recommends for percent escapes,
/// and the one SigV4's canonical request requires.
pub fn push_upper(out: &mut String, byte: u8) {
    push(out, UPPER, byte);
}

fn push(out: &mut String, digits: &[u8; 16], byte: u8) {
    out.push(char::from(digits[usize::from(byte >> 4)]));
    out.push(char::from(digits[usize::from(byte & 0xf)]));
}

/// None unless `text` is an even number of lower-case hex digits. Lower-case only: nothing
/// here writes anything else, and accepting both would give one value two spellings (two
/// audit hashes, two token hashes) that compare unequal as text.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    decode_with(text, lower_digit)
}

/// Exactly `N` bytes as `2 * N` hex digits of either case; anything else is None.
pub fn decode_any_case<const N: usize>(text: &str) -> Option<[u8; N]> {
    decode_with(text, digit)?.try_into().ok()
}

/// The value of one hex digit of either case.
pub fn digit(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => lower_digit(c),
    }
}

fn lower_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode_with(text: &str, digit: fn(u8) -> Option<u8>) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some((digit(*high)? << 4) | digit(*low)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        assert_eq!(encode(&[0, 0xab, 0x7f]), "00ab7f");
        assert_eq!(encode(&[0x00, 0x9f, 0xff]), "009fff");
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("00ab7f"), Some(vec![0, 0xab, 0x7f]));
        assert_eq!(decode("009fff"), Some(vec![0x00, 0x9f, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("0"), None);
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("AB"), None);
        assert_eq!(decode("009FFF"), None);
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&every)), Some(every));
    }

    #[test]
    fn either_case_decodes_exactly_n_bytes() {
        let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
        let s = encode(&bytes);
        assert_eq!(
            decode_any_case::<32>(&s).unwrap().as_slice(),
            bytes.as_slice()
        );
        assert_eq!(
            decode_any_case::<32>(&s.to_uppercase()).unwrap().as_slice(),
            bytes.as_slice()
        );
        assert!(decode_any_case::<32>(&s[..62]).is_none());
        assert!(decode_any_case::<32>(&format!("{s}00")).is_none());
        assert!(
            decode_any_case::<32>(&s.replacen(|c: char| c.is_ascii_hexdigit(), "x", 1)).is_none()
        );
        assert!(decode_any_case::<32>(&format!("{}é", &s[..62])).is_none());
    }

    #[test]
    fn digits_and_upper_case_escapes() {
        for (c, v) in [
            (b'0', 0),
            (b'9', 9),
            (b'a', 10),
            (b'f', 15),
            (b'A', 10),
            (b'F', 15),
        ] {
            assert_eq!(digit(c), Some(v));
        }
        for c in [b'g', b'G', b'/', b':', b'@', b'`', b' '] {
            assert_eq!(digit(c), None);
        }
        let mut out = String::new();
        for b in [0x00, 0x2f, 0xab, 0xff] {
            push_upper(&mut out, b);
        }
        assert_eq!(out, "002FABFF");
    }
}
