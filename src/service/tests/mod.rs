//! Service-level tests: `KmsService` and `SecretsService` over the in-memory root of trust, a
//! sled store in a temporary directory and a clock that moves only when a test moves it. They
//! prove the orchestration rules (labels, idempotency, deletion windows, rotation steps,
//! replica apply, key states) in milliseconds; the end-to-end suites in `tests/` stay the
//! proof on real hardware. No test sleeps: time passes through [`Fixture::clock`].

mod deletion;
mod idempotency;
mod kms;
mod labels;
mod policy;
mod replica;
mod rotation;

use crate::backend::{Hardware, memory::MemoryRoot};
use crate::crypto::SecretBytes;
use crate::service::clock::{ManualClock, SECONDS_PER_DAY};
use crate::service::kms::{Arns, KmsService};
use crate::service::secrets::{
    Deletion, GetValue, NewSecret, PutValue, SecretsError, SecretsService, StageMove, Value,
};
use crate::store::Store;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) const CUR: &str = "AWSCURRENT";
pub(super) const PREV: &str = "AWSPREVIOUS";
pub(super) const PEND: &str = "AWSPENDING";

/// 2027-01-15T00:00:00Z: a fixed start, so dates in assertions are exact.
pub(super) const START: i64 = 1_800_000_000 - 1_800_000_000 % SECONDS_PER_DAY;
pub(super) const DAY: i64 = SECONDS_PER_DAY;

/// The timestamp `secs` seconds after the epoch: tests count in seconds from [`START`].
pub(super) const fn at(secs: i64) -> crate::time::Timestamp {
    crate::time::Timestamp::from_secs(secs)
}
pub(super) const REGION: &str = "site-b";
pub(super) const ACCOUNT: &str = "000000000000";
/// An exec rotator the secrets service may attach to any secret, which the scheduler's
/// (empty) rotator set cannot build: its steps fail.
pub(super) const UNCONFIGURED_EXEC: &str = "unconfigured";

/// What a write answered: the version it made (if any) and that version's labels.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Put {
    pub version_id: Option<String>,
    pub stages: Vec<String>,
}

pub(super) struct Fixture {
    pub kms: Arc<KmsService>,
    pub secrets: Arc<SecretsService>,
    pub clock: Arc<ManualClock>,
    // Dropped last: sled keeps files open in it until the services go.
    _dir: tempfile::TempDir,
}

/// A fresh pair of services with the default secrets key already made, as a server has after
/// its first start.
pub(super) async fn services() -> Fixture {
    // tmpfs where there is one: every commit flushes, and a flush on tmpfs costs nothing.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("keyward-svc")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let arns = Arns {
        partition: "keyward".into(),
        region: REGION.into(),
        account_id: ACCOUNT.into(),
    };
    let hw = Hardware::new(Arc::new(MemoryRoot::default()), 2);
    let kms = Arc::new(KmsService::new(hw, store.clone(), clock.clone(), arns));
    let secrets = SecretsService::new(Arc::clone(&kms), store, clock.clone())
        .with_exec_rotators([(UNCONFIGURED_EXEC.to_owned(), vec!["*".to_owned()])]);
    secrets.ensure_default_key().await.unwrap();
    Fixture {
        kms,
        secrets: Arc::new(secrets),
        clock,
        _dir: dir,
    }
}

pub(super) fn text(s: &str) -> Value {
    Value::String(SecretBytes::new(s.as_bytes().to_vec()))
}

pub(super) fn binary(b: &[u8]) -> Value {
    Value::Binary(SecretBytes::new(b.to_vec()))
}

/// The text of a value; a binary value is a test failure.
pub(super) fn string_of(value: &Value) -> String {
    match value {
        Value::String(bytes) => String::from_utf8(bytes.expose().to_vec()).unwrap(),
        Value::Binary(_) => panic!("expected a string value"),
    }
}

pub(super) fn new_secret(name: &str, token: &str, value: Option<&str>) -> NewSecret {
    NewSecret {
        name: name.into(),
        client_request_token: token.into(),
        description: String::new(),
        kms_key_id: String::new(),
        value: value.map(text),
        tags: Vec::new(),
        replica_regions: Vec::new(),
        force_overwrite_replica_secret: false,
    }
}

/// A client request token that meets the 32-character minimum, recognisable by its tag.
pub(super) fn token(tag: &str) -> String {
    format!("{tag:-<32}")
}

impl Fixture {
    /// A new symmetric key with default settings.
    pub(super) async fn new_key(&self) -> crate::store::KeyRecord {
        self.kms
            .create_key(crate::service::kms::NewKey {
                description: "test".into(),
                key_usage: String::new(),
                key_spec: String::new(),
                tags: Vec::new(),
                protection: Default::default(),
                origin: String::new(),
            })
            .await
            .unwrap()
    }

    pub async fn create(&self, name: &str, token: &str, value: &str) {
        self.secrets
            .create_secret(new_secret(name, token, Some(value)))
            .await
            .unwrap();
    }

    pub async fn put(
        &self,
        name: &str,
        token: &str,
        value: &str,
        labels: &[&str],
    ) -> Result<Put, SecretsError> {
        let labels = (!labels.is_empty()).then(|| labels.iter().map(|l| l.to_string()).collect());
        let written = self
            .secrets
            .put_secret_value(PutValue {
                secret_id: name.into(),
                client_request_token: token.into(),
                value: Some(text(value)),
                version_stages: labels,
            })
            .await?;
        Ok(Put {
            version_id: written.version_id,
            stages: written.version_stages,
        })
    }

    /// Every version (deprecated ones too) with its labels sorted.
    pub async fn stages(&self, name: &str) -> BTreeMap<String, Vec<String>> {
        let record = self.secrets.describe_secret(name).await.unwrap();
        record
            .versions
            .into_iter()
            .map(|v| {
                let mut stages = v.stages;
                stages.sort();
                (v.version_id, stages)
            })
            .collect()
    }

    /// The value GetSecretValue returns for a label (empty: AWSCURRENT).
    pub async fn value(&self, name: &str, label: &str) -> String {
        let got = self
            .secrets
            .get_secret_value(GetValue {
                version_stage: (!label.is_empty()).then(|| label.to_owned()),
                ..GetValue::current(name)
            })
            .await
            .unwrap();
        string_of(&got.value)
    }
}

/// The expected `stages` map, written as (version, labels) pairs.
pub(super) fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(id, labels)| {
            let mut labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
            labels.sort();
            (id.to_string(), labels)
        })
        .collect()
}
