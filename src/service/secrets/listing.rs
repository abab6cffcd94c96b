//! ListSecrets: filters, sort order and pagination, walking the creation index.
//!
//! Filters follow AWS: keys `name`, `description`, `tag-key`, `tag-value`, `all`; each value is
//! a case-sensitive prefix, a leading `!` negates it; values of one filter are alternatives
//! (OR), filters combine with AND. `all` matches any of the four fields.

use super::{SecretsError, SecretsService, limits};
use crate::store::SecretRecord;
use crate::store::keyspace::{self, SECRETS_BY_CREATION};
use crate::time::Timestamp;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

#[derive(Debug, Clone)]
pub struct Filter {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub include_planned_deletion: bool,
    pub max_results: Option<i32>,
    pub next_token: String,
    pub filters: Vec<Filter>,
    pub sort_order: String,
}

/// In the order AWS lists them in its validation message.
const FILTER_KEYS: &[&str] = &["all", "name", "tag-key", "description", "tag-value"];

fn validate(filters: &[Filter]) -> Result<(), SecretsError> {
    if filters.len() > 10 {
        return Err(SecretsError::invalid("filters", "at most 10 filters"));
    }
    for (at, filter) in filters.iter().enumerate() {
        // AWS: no key is a bad parameter; a key outside the set fails its input validation.
        if filter.key.is_empty() {
            return Err(SecretsError::invalid("filters.key", "Invalid filter key"));
        }
        if !FILTER_KEYS.contains(&filter.key.as_str()) {
            return Err(SecretsError::Validation(format!(
                "1 validation error detected: Value '{}' at 'filters.{}.member.key' failed to \
                 satisfy constraint: Member must satisfy enum value set: [{}]",
                filter.key,
                at + 1,
                FILTER_KEYS.join(", ")
            )));
        }
        if filter.values.is_empty() || filter.values.len() > 10 {
            return Err(SecretsError::invalid("filters.values", "1 to 10 values"));
        }
        if filter.values.iter().any(|v| v.is_empty() || v.len() > 512) {
            return Err(SecretsError::invalid(
                "filters.values",
                "each 1 to 512 characters",
            ));
        }
    }
    Ok(())
}

fn fields<'a>(record: &'a SecretRecord, key: &str) -> Vec<&'a str> {
    match key {
        "name" => vec![record.name.as_str()],
        "description" => vec![record.description.as_str()],
        "tag-key" => record.tags.iter().map(|t| t.key.as_str()).collect(),
        "tag-value" => record.tags.iter().map(|t| t.value.as_str()).collect(),
        _ => {
            let mut all = vec![record.name.as_str(), record.description.as_str()];
            all.extend(
                record
                    .tags
                    .iter()
                    .flat_map(|t| [t.key.as_str(), t.value.as_str()]),
            );
            all
        }
    }
}

fn matches(record: &SecretRecord, filter: &Filter) -> bool {
    let fields = fields(record, &filter.key);
    filter
        .values
        .iter()
        .any(|value| match value.strip_prefix('!') {
            Some(negated) => !fields.iter().any(|f| f.starts_with(negated)),
            None => fields.iter().any(|f| f.starts_with(value.as_str())),
        })
}

/// Index entries read per step while filling a page.
const STEP: usize = 256;

/// Position in the listing: the creation-index key of the last secret returned.
fn encode_token(record: &SecretRecord) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", record.created_at.secs(), record.name))
}

fn decode_token(token: &str) -> Result<Option<Vec<u8>>, SecretsError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || SecretsError::invalid("next_token", "not a token this listing returned");
    let text =
        String::from_utf8(URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let (created, name) = text.split_once(':').ok_or_else(bad)?;
    let created = Timestamp::from_secs(created.parse().map_err(|_| bad())?);
    Ok(Some(keyspace::time_key(SECRETS_BY_CREATION, created, name)))
}

impl SecretsService {
    /// One page of matching secrets, in creation order (ties by name), and the token for the
    /// next page. Walks the creation index from the token and reads records only until the
    /// page is full: a page costs what it returns (plus what the filters reject), never a
    /// read of every secret.
    pub async fn list_records(
        &self,
        options: ListOptions,
    ) -> Result<(Vec<SecretRecord>, Option<String>), SecretsError> {
        validate(&options.filters)?;
        let limit = limits::page_size(options.max_results, 100)?;
        let descending = match options.sort_order.as_str() {
            "" | "asc" => false,
            "desc" => true,
            _ => return Err(SecretsError::invalid("sort_order", "must be asc or desc")),
        };
        let mut cursor = decode_token(&options.next_token)?;
        let mut records = Vec::new();
        while records.len() <= limit {
            let step = if descending {
                self.store
                    .scan_rev(SECRETS_BY_CREATION, cursor.as_deref(), STEP)
                    .await?
            } else {
                self.store
                    .scan(SECRETS_BY_CREATION, cursor.as_deref(), STEP)
                    .await?
            };
            let Some((last, _)) = step.last() else {
                break;
            };
            cursor = Some(last.clone());
            for (key, _) in step {
                let Some((created, name)) = keyspace::parse_time_key(SECRETS_BY_CREATION, &key)
                else {
                    continue;
                };
                // One damaged record must not hide every other secret.
                let record = match self.load_by_name(name).await {
                    Ok(Some((record, _))) if record.created_at == created => record,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "skipping a damaged secret record");
                        continue;
                    }
                };
                if (options.include_planned_deletion || record.deletion_date.is_none())
                    && options.filters.iter().all(|f| matches(&record, f))
                {
                    records.push(record);
                    if records.len() > limit {
                        break;
                    }
                }
            }
        }
        let next = (records.len() > limit).then(|| encode_token(&records[limit - 1]));
        records.truncate(limit);
        Ok((records, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tag;

    fn record(name: &str, description: &str, tags: &[(&str, &str)]) -> SecretRecord {
        SecretRecord {
            id: String::new(),
            name: name.into(),
            arn: String::new(),
            description: description.into(),
            kms_key_id: String::new(),
            created_at: Timestamp::EPOCH,
            last_changed_at: Timestamp::EPOCH,
            last_accessed_day: None,
            deletion_date: None,
            tags: tags
                .iter()
                .map(|(k, v)| Tag {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            versions: Vec::new(),
            rotation: None,
            resource_policy: None,
            primary_region: None,
            replicas: Vec::new(),
            former_primary: None,
        }
    }

    fn filter(key: &str, values: &[&str]) -> Filter {
        Filter {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn prefixes_negation_and_all() {
        let r = record("prod/db", "orders database", &[("team", "payments")]);
        assert!(matches(&r, &filter("name", &["prod/"])));
        assert!(!matches(&r, &filter("name", &["db"])));
        assert!(matches(&r, &filter("name", &["dev/", "prod/"])));
        assert!(!matches(&r, &filter("name", &["!prod/"])));
        assert!(matches(&r, &filter("name", &["!dev/"])));
        assert!(matches(&r, &filter("description", &["orders"])));
        assert!(!matches(&r, &filter("description", &["Orders"])));
        assert!(matches(&r, &filter("tag-key", &["te"])));
        assert!(matches(&r, &filter("tag-value", &["pay"])));
        assert!(matches(&r, &filter("all", &["pay"])));
        assert!(!matches(&r, &filter("all", &["xyz"])));
    }

    #[test]
    fn unknown_filter_keys_are_refused() {
        assert!(validate(&[filter("owner", &["x"])]).is_err());
        assert!(validate(&[filter("name", &[])]).is_err());
        assert!(validate(&[filter("name", &["x"])]).is_ok());
    }
}
