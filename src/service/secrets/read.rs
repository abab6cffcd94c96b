//! Reads: GetSecretValue, BatchGetSecretValue, DescribeSecret, ListSecretVersionIds.

use super::labels::{self, CURRENT};
use super::values::Value;
use super::{SecretsError, SecretsService, limits, secret_key};
use crate::store::{self, Expect, Op, SecretRecord};

pub struct SecretValue {
    pub arn: String,
    pub name: String,
    pub version_id: String,
    pub value: Value,
    pub version_stages: Vec<String>,
    pub created_date: crate::time::Timestamp,
}

/// One entry of a batch: the value, or the error for that secret alone.
pub enum BatchItem {
    Value(SecretValue),
    Error {
        secret_id: String,
        error: SecretsError,
    },
}

/// Whether the caller may read one secret of a batch. Async: the answer may read the store.
/// Takes the id by value so that the future borrows only what the check itself holds.
pub type ReadCheck<'c> =
    dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'c>> + Send + Sync + 'c;

/// GetSecretValue: a secret and which of its versions, by id, by label or both (rule Labels 8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetValue {
    pub secret_id: String,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
}

impl GetValue {
    /// The version labelled AWSCURRENT.
    pub fn current(secret_id: impl Into<String>) -> Self {
        Self {
            secret_id: secret_id.into(),
            ..Self::default()
        }
    }

    pub fn by_id(secret_id: impl Into<String>, version_id: impl Into<String>) -> Self {
        Self {
            version_id: Some(version_id.into()),
            ..Self::current(secret_id)
        }
    }

    pub fn by_stage(secret_id: impl Into<String>, version_stage: impl Into<String>) -> Self {
        Self {
            version_stage: Some(version_stage.into()),
            ..Self::current(secret_id)
        }
    }
}

impl SecretsService {
    /// Rule Labels 8: AWSCURRENT by default; version id and stage must agree when both given.
    pub async fn get_secret_value(&self, request: GetValue) -> Result<SecretValue, SecretsError> {
        let version_id = request.version_id.as_deref();
        let version_stage = request.version_stage.as_deref();
        if let Some(id) = version_id {
            limits::version_id("version_id", id)?;
        }
        if let Some(stage) = version_stage {
            limits::label("version_stage", stage)?;
        }
        let (record, _) = self.resolve_live(&request.secret_id).await?;
        let at = pick_version(&record, version_id, version_stage)?;
        let meta = &record.versions[at];
        if !meta.has_value {
            return Err(SecretsError::NotFound(format!(
                "Secrets Manager can't find the specified secret value for VersionId: {}",
                meta.version_id
            )));
        }
        let stored = self.load_value_record(&record, &meta.version_id).await?;
        let value = self
            .open(&record.arn, &record.name, &meta.version_id, &stored)
            .await?;
        self.note_access(&record, at).await;
        Ok(SecretValue {
            arn: record.arn.clone(),
            name: record.name.clone(),
            version_id: meta.version_id.clone(),
            value,
            version_stages: meta.stages.clone(),
            created_date: meta.created_at,
        })
    }

    pub(super) async fn load_value_record(
        &self,
        record: &SecretRecord,
        version_id: &str,
    ) -> Result<crate::store::SecretValueRecord, SecretsError> {
        let key = super::value_key(record, version_id);
        let damaged = || {
            SecretsError::DecryptionFailure(format!(
                "{}: the stored value of version {version_id} is damaged or missing",
                record.name
            ))
        };
        let found = self.store.get(&key).await?.ok_or_else(damaged)?;
        store::decode(&key, &found.value).map_err(|_| damaged())
    }

    /// Records the access date (day resolution): at most one write per secret per day, and
    /// never a reason to fail the read.
    async fn note_access(&self, record: &SecretRecord, at: usize) {
        let today = self.today();
        if record.last_accessed_day == Some(today)
            && record.versions[at].last_accessed_day == Some(today)
        {
            return;
        }
        let _writer = self.lock(&record.name).lock().await;
        let Ok((mut fresh, version)) = self.resolve(&record.arn).await else {
            return;
        };
        fresh.last_accessed_day = Some(today);
        if let Some(v) = fresh
            .versions
            .iter_mut()
            .find(|v| v.version_id == record.versions[at].version_id)
        {
            v.last_accessed_day = Some(today);
        }
        let op = Op::Put {
            key: secret_key(&fresh.name),
            value: store::encode(&fresh),
            expect: Expect::Version(version),
        };
        if let Err(e) = self.store.commit(vec![op]).await {
            tracing::debug!(error = %e, "could not record the access date");
        }
    }

    /// Up to 20 secrets by id (errors per secret), or a page of the secrets matching filters.
    /// `allowed` says whether the caller may read a secret (by id or ARN).
    pub async fn batch_get_secret_value(
        &self,
        secret_ids: Vec<String>,
        filters: Vec<super::Filter>,
        max_results: Option<i32>,
        next_token: &str,
        allowed: &ReadCheck<'_>,
    ) -> Result<(Vec<BatchItem>, Option<String>), SecretsError> {
        match (secret_ids.is_empty(), filters.is_empty()) {
            (false, false) => Err(SecretsError::invalid(
                "secret_id_list",
                "give secret_id_list or filters, not both",
            )),
            (true, true) => Err(SecretsError::invalid(
                "secret_id_list",
                "give secret_id_list or filters",
            )),
            (false, true) => {
                if !limits::BATCH_IDS.contains(&secret_ids.len()) {
                    return Err(SecretsError::invalid(
                        "secret_id_list",
                        "1 to 20 secret ids",
                    ));
                }
                if max_results.is_some() || !next_token.is_empty() {
                    return Err(SecretsError::invalid(
                        "max_results",
                        "max_results and next_token go with filters only",
                    ));
                }
                let mut items = Vec::with_capacity(secret_ids.len());
                for id in secret_ids {
                    // Before the lookup: a refused name answers alike whether it exists or not.
                    if !allowed(id.clone()).await {
                        items.push(denied(id));
                        continue;
                    }
                    items.push(
                        match self.get_secret_value(GetValue::current(id.as_str())).await {
                            Ok(value) => BatchItem::Value(value),
                            Err(error) => BatchItem::Error {
                                secret_id: id,
                                error,
                            },
                        },
                    );
                }
                Ok((items, None))
            }
            (true, false) => {
                let limit = match max_results {
                    Some(n) if !(1..=20).contains(&n) => {
                        return Err(SecretsError::invalid(
                            "max_results",
                            "must be between 1 and 20",
                        ));
                    }
                    n => n.unwrap_or(20),
                };
                let options = super::ListOptions {
                    include_planned_deletion: false,
                    max_results: Some(limit),
                    next_token: next_token.to_owned(),
                    filters,
                    sort_order: String::new(),
                };
                let (records, next) = self.list_records(options).await?;
                let mut items = Vec::with_capacity(records.len());
                for record in records {
                    if !allowed(record.arn.clone()).await {
                        items.push(denied(record.name.clone()));
                        continue;
                    }
                    items.push(
                        match self
                            .get_secret_value(GetValue::current(record.arn.as_str()))
                            .await
                        {
                            Ok(value) => BatchItem::Value(value),
                            Err(error) => BatchItem::Error {
                                secret_id: record.arn,
                                error,
                            },
                        },
                    );
                }
                Ok((items, next))
            }
        }
    }

    /// The secret's record (deleted or not, as AWS's DescribeSecret). Reads the store only.
    pub async fn describe_secret(&self, secret_id: &str) -> Result<SecretRecord, SecretsError> {
        Ok(self.resolve(secret_id).await?.0)
    }

    /// Versions newest first; deprecated (unlabelled) ones only when asked (rule Labels 7).
    pub async fn list_secret_version_ids(
        &self,
        secret_id: &str,
        max_results: Option<i32>,
        next_token: &str,
        include_deprecated: bool,
    ) -> Result<
        (
            SecretRecord,
            Vec<crate::store::SecretVersionMeta>,
            Option<String>,
        ),
        SecretsError,
    > {
        let limit = limits::page_size(max_results, 100)?;
        let (record, _) = self.resolve_live(secret_id).await?;
        let mut versions: Vec<_> = record
            .versions
            .iter()
            .rev()
            .filter(|v| include_deprecated || !v.stages.is_empty())
            .cloned()
            .collect();
        let start = match next_token {
            "" => 0,
            token => {
                let after = versions
                    .iter()
                    .position(|v| v.version_id == token)
                    .ok_or_else(|| {
                        SecretsError::invalid("next_token", "not a token this listing returned")
                    })?;
                after + 1
            }
        };
        let mut page: Vec<_> = versions.drain(start..).take(limit + 1).collect();
        let next = (page.len() > limit).then(|| page[limit - 1].version_id.clone());
        page.truncate(limit);
        Ok((record, page, next))
    }
}

fn pick_version(
    record: &SecretRecord,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Result<usize, SecretsError> {
    let by_id = match version_id {
        None => None,
        Some(version_id) => Some(labels::index(&record.versions, version_id).ok_or_else(|| {
            SecretsError::NotFound(format!(
                "Secrets Manager can't find the specified secret value for VersionId: {version_id}"
            ))
        })?),
    };
    let label = match (stage, by_id) {
        (None, None) => Some(CURRENT),
        (stage, _) => stage,
    };
    let by_label = match label {
        None => None,
        Some(label) => Some(labels::holder(&record.versions, label).ok_or_else(|| {
            SecretsError::NotFound(format!(
                "Secrets Manager can't find the specified secret value for staging label: {label}"
            ))
        })?),
    };
    let (version_id, label) = (version_id.unwrap_or_default(), label.unwrap_or_default());
    match (by_id, by_label) {
        (Some(a), Some(b)) if a != b => Err(SecretsError::NotFound(format!(
            "Secrets Manager can't find the specified secret value for VersionId: {version_id} \
             and staging label: {label}"
        ))),
        (Some(at), _) | (None, Some(at)) => Ok(at),
        (None, None) => Err(SecretsError::Internal("no version selected".into())),
    }
}

/// A batch item the caller's policies do not allow reading. It names the secret only as the
/// caller did (or by name, for filters): an ARN would reveal its random suffix.
fn denied(secret_id: String) -> BatchItem {
    BatchItem::Error {
        error: SecretsError::AccessDenied(format!(
            "not authorized to perform secretsmanager:GetSecretValue on secret {secret_id}"
        )),
        secret_id,
    }
}
