//! The size and character rules of secrets: names, ids, tokens, labels, values, tags and
//! windows (AWS's limits). Every failure names the field.

use super::SecretsError;
use crate::store::Tag;

pub const MAX_NAME: usize = 512;
pub const MAX_SECRET_ID: usize = 2048;
pub const MAX_DESCRIPTION: usize = 2048;
pub const MAX_VALUE: usize = 65_536;
pub const TOKEN_LEN: std::ops::RangeInclusive<usize> = 32..=64;
pub const MAX_LABEL: usize = 256;
pub const MAX_LABELS_PER_VERSION: usize = 20;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;
pub const MAX_TAGS: usize = 50;
pub const RECOVERY_DAYS: std::ops::RangeInclusive<i64> = 7..=30;
pub const DEFAULT_RECOVERY_DAYS: i64 = 30;
pub const PAGE: std::ops::RangeInclusive<i32> = 1..=100;
pub const BATCH_IDS: std::ops::RangeInclusive<usize> = 1..=20;

fn invalid(field: &'static str, reason: impl Into<String>) -> SecretsError {
    SecretsError::invalid(field, reason)
}

/// 1-512 ASCII letters, digits and `/_+=.@-`. A name that ends in a hyphen and six characters
/// is allowed, as AWS allows it: ids resolve as an exact name first (see `resolve`).
pub fn name(name: &str) -> Result<(), SecretsError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(invalid(
            "name",
            "may contain only ASCII letters, digits and /_+=.@-",
        ));
    }
    Ok(())
}

pub fn secret_id(id: &str) -> Result<(), SecretsError> {
    if id.is_empty() || id.len() > MAX_SECRET_ID {
        return Err(invalid(
            "secret_id",
            format!("must be 1 to {MAX_SECRET_ID} characters"),
        ));
    }
    Ok(())
}

pub fn description(text: &str) -> Result<(), SecretsError> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

/// A client request token, when given (empty means "generate one").
pub fn token(token: &str) -> Result<(), SecretsError> {
    if !token.is_empty() && !TOKEN_LEN.contains(&token.len()) {
        return Err(invalid(
            "client_request_token",
            "must be 32 to 64 characters",
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("client_request_token", "must be printable ASCII"));
    }
    Ok(())
}

pub fn version_id(field: &'static str, id: &str) -> Result<(), SecretsError> {
    if !TOKEN_LEN.contains(&id.len()) {
        return Err(invalid(field, "must be 32 to 64 characters"));
    }
    Ok(())
}

pub fn label(field: &'static str, label: &str) -> Result<(), SecretsError> {
    if label.is_empty() || label.len() > MAX_LABEL {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_LABEL} characters"),
        ));
    }
    Ok(())
}

pub fn labels(labels: &[String]) -> Result<(), SecretsError> {
    if labels.len() > MAX_LABELS_PER_VERSION {
        return Err(invalid(
            "version_stages",
            format!("at most {MAX_LABELS_PER_VERSION} labels"),
        ));
    }
    labels.iter().try_for_each(|l| label("version_stages", l))
}

pub fn tags(tags: &[Tag]) -> Result<(), SecretsError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    for tag in tags {
        if tag.key.is_empty() || tag.key.chars().count() > MAX_TAG_KEY {
            return Err(invalid(
                "tags.key",
                format!("must be 1 to {MAX_TAG_KEY} characters"),
            ));
        }
        if tag.value.chars().count() > MAX_TAG_VALUE {
            return Err(invalid(
                "tags.value",
                format!("at most {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

pub fn page_size(max_results: Option<i32>, default: i32) -> Result<usize, SecretsError> {
    let n = max_results.unwrap_or(default);
    if !PAGE.contains(&n) {
        return Err(invalid("max_results", "must be between 1 and 100"));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_and_past_their_limits() {
        assert!(name(&"a".repeat(MAX_NAME)).is_ok());
        assert!(name(&"a".repeat(MAX_NAME + 1)).is_err());
        assert!(name("").is_err());
        assert!(name("prod/db+user=x.y@z_w-1").is_ok());
        assert!(name("with space").is_err());
        assert!(name("naïve").is_err());
        // A hyphen and six characters looks like an ARN suffix; AWS allows it all the same.
        assert!(name("app-abcdef").is_ok());
        assert!(name("app-abcdefg").is_ok());
        assert!(name("app-abcde").is_ok());
    }

    #[test]
    fn tokens_labels_and_tags_at_their_limits() {
        assert!(token("").is_ok());
        assert!(token(&"t".repeat(32)).is_ok());
        assert!(token(&"t".repeat(31)).is_err());
        assert!(token(&"t".repeat(64)).is_ok());
        assert!(token(&"t".repeat(65)).is_err());
        assert!(label("version_stage", &"l".repeat(256)).is_ok());
        assert!(label("version_stage", &"l".repeat(257)).is_err());
        assert!(labels(&vec!["x".to_string(); 20]).is_ok());
        assert!(labels(&vec!["x".to_string(); 21]).is_err());
        let tag = |k: usize, v: usize| Tag {
            key: "k".repeat(k),
            value: "v".repeat(v),
        };
        assert!(tags(&[tag(128, 256)]).is_ok());
        assert!(tags(&[tag(129, 0)]).is_err());
        assert!(tags(&[tag(1, 257)]).is_err());
        assert!(tags(&[tag(0, 1)]).is_err());
        assert!(tags(&vec![tag(1, 1); 50]).is_ok());
        assert!(tags(&vec![tag(1, 1); 51]).is_err());
    }
}
