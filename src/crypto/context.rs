//! The encryption context: a string map bound to a ciphertext as additional authenticated data.
//!
//! The canonical form must not depend on the order a client sent the pairs in, and must be
//! unambiguous (no two different maps encode the same), so each key and value is
//! length-prefixed and pairs are sorted by key bytes.

use std::collections::{BTreeMap, HashMap};

/// Upper bound on the encoded context, so a client cannot make us authenticate megabytes.
pub const MAX_CONTEXT_BYTES: usize = 8192;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("keys must not be empty")]
    EmptyKey,
    #[error("the encoded context exceeds {MAX_CONTEXT_BYTES} bytes")]
    TooLarge,
}

/// A validated encryption context in canonical (sorted) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    pub fn new(pairs: HashMap<String, String>) -> Result<Self, ContextError> {
        if pairs.keys().any(String::is_empty) {
            return Err(ContextError::EmptyKey);
        }
        let ctx = Self(pairs.into_iter().collect());
        if ctx.encoded_len() > MAX_CONTEXT_BYTES {
            return Err(ContextError::TooLarge);
        }
        Ok(ctx)
    }

    fn encoded_len(&self) -> usize {
        4 + self
            .0
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
    }

    /// Appends the canonical encoding: pair count, then each key and value as
    /// big-endian u32 length followed by its UTF-8 bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        push_len(out, self.0.len());
        for (key, value) in &self.0 {
            push_len(out, key.len());
            out.extend_from_slice(key.as_bytes());
            push_len(out, value.len());
            out.extend_from_slice(value.as_bytes());
        }
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Lengths are bounded by MAX_CONTEXT_BYTES, far below u32::MAX.
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        EncryptionContext::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn encode(c: &EncryptionContext) -> Vec<u8> {
        let mut out = Vec::new();
        c.encode_into(&mut out);
        out
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        let a = ctx(&[("b", "2"), ("a", "1"), ("c", "3")]);
        let b = ctx(&[("c", "3"), ("a", "1"), ("b", "2")]);
        assert_eq!(encode(&a), encode(&b));
    }

    #[test]
    fn moving_bytes_between_key_and_value_changes_the_encoding() {
        assert_ne!(encode(&ctx(&[("ab", "c")])), encode(&ctx(&[("a", "bc")])));
        assert_ne!(encode(&ctx(&[])), encode(&ctx(&[("a", "")])));
    }

    #[test]
    fn empty_key_and_oversize_context_are_refused() {
        let empty: HashMap<_, _> = [(String::new(), "v".to_string())].into();
        assert_eq!(EncryptionContext::new(empty), Err(ContextError::EmptyKey));
        let big: HashMap<_, _> = [("k".to_string(), "v".repeat(MAX_CONTEXT_BYTES))].into();
        assert_eq!(EncryptionContext::new(big), Err(ContextError::TooLarge));
    }
}
