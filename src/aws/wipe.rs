//! The AWS path's own buffers that hold secret values — the JSON documents parsed from a
//! request and built for an answer, and the answer's bytes — zeroized when dropped. Copies
//! made by hyper (its read and write buffers), serde (temporaries while parsing) and prost (the
//! request and response messages) are beyond reach; README's threat model says so.

use serde_json::Value;
use std::ops::Deref;
use zeroize::{Zeroize, Zeroizing};

/// A JSON document whose strings (and member names) are zeroized when it is dropped.
#[derive(Debug, Default)]
pub struct Document(Value);

impl Document {
    pub fn new(value: Value) -> Self {
        Self(value)
    }

    /// The document, for transformations that move its strings; the caller wraps the result.
    pub fn take(mut self) -> Value {
        std::mem::take(&mut self.0)
    }
}

impl Deref for Document {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

impl Drop for Document {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroizes every string in `value`, leaving empty strings, arrays and objects.
fn wipe(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => {
            for item in items.iter_mut() {
                wipe(item);
            }
            items.clear();
        }
        Value::Object(members) => {
            for (mut name, mut member) in std::mem::take(members) {
                name.zeroize();
                wipe(&mut member);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// An HTTP body zeroized when dropped. hyper writes a body it can queue (vectored writes, as
/// on TCP) from this buffer itself, so the plaintext in an answer dies with it.
#[derive(Debug, Default)]
pub struct SecretBuf {
    bytes: Zeroizing<Vec<u8>>,
    at: usize,
}

impl SecretBuf {
    /// `document` serialized into a buffer of exactly its size: a growing buffer would leave
    /// unzeroized copies behind each time it moved.
    pub fn json(document: &Value) -> Self {
        let mut counter = Counter(0);
        // Writing a Value into a counter cannot fail.
        let _ = serde_json::to_writer(&mut counter, document);
        let mut bytes = Zeroizing::new(Vec::with_capacity(counter.0));
        let _ = serde_json::to_writer(&mut *bytes, document);
        Self { bytes, at: 0 }
    }
}

impl From<String> for SecretBuf {
    fn from(text: String) -> Self {
        Self {
            bytes: Zeroizing::new(text.into_bytes()),
            at: 0,
        }
    }
}

impl bytes::Buf for SecretBuf {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes[self.at..]
    }

    fn advance(&mut self, count: usize) {
        self.at = (self.at + count).min(self.bytes.len());
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use serde_json::json;

    #[test]
    fn wiping_clears_every_string_and_name() {
        let mut value = json!({
            "SecretString": "s3cret",
            "Nested": [{"Plaintext": "cGxhaW4="}, 3, true, null],
        });
        wipe(&mut value);
        assert_eq!(value, json!({}));
        let mut text = Value::String("s3cret".into());
        wipe(&mut text);
        assert_eq!(text, Value::String(String::new()));
    }

    #[test]
    fn a_json_body_is_sized_exactly_and_reads_back() {
        let document = json!({"SecretString": "s3cret", "Name": "n"});
        let mut body = SecretBuf::json(&document);
        assert_eq!(body.bytes.capacity(), body.bytes.len(), "no reallocation");
        let expected = document.to_string();
        assert_eq!(body.chunk(), expected.as_bytes());
        body.advance(3);
        assert_eq!(body.remaining(), expected.len() - 3);
        body.advance(usize::MAX / 2);
        assert_eq!(body.remaining(), 0);
    }

    #[test]
    fn a_document_keeps_its_value_until_dropped() {
        let document = Document::new(json!({"a": "b"}));
        assert_eq!(document["a"], "b");
        assert_eq!(document.take(), json!({"a": "b"}));
    }
}
