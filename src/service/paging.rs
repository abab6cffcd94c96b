//! Opaque pagination markers: the last store key of a page, base64url-encoded.

use super::KmsError;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

pub struct Page<T> {
    pub items: Vec<T>,
    /// Set when more items follow; pass it back as `marker`.
    pub next_marker: Option<String>,
}

pub fn encode_marker(last_key: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(last_key)
}

/// Decodes a marker and checks it belongs to the listing (`prefix`) it is used with.
pub fn decode_marker(marker: &str, prefix: &[u8]) -> Result<Option<Vec<u8>>, KmsError> {
    if marker.is_empty() {
        return Ok(None);
    }
    match URL_SAFE_NO_PAD.decode(marker) {
        Ok(key) if key.starts_with(prefix) => Ok(Some(key)),
        _ => Err(KmsError::InvalidMarker),
    }
}

/// Validates a page size: 1..=max, `default` when absent.
pub fn limit(value: Option<i32>, default: usize, max: usize) -> Result<usize, KmsError> {
    match value {
        None => Ok(default),
        Some(n) if n >= 1 && (n as usize) <= max => Ok(n as usize),
        Some(_) => Err(KmsError::validation(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}
