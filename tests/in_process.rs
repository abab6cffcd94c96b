//! Tests that run the service in-process, to look into the token or to move the clock: master
//! keys locked in (sensitive, non-extractable); key material destroyed once a deletion window
//! ends; secrets purged once their recovery window ends — each also across a restart; import
//! wrapping keys and expired imported material destroyed.
//! SoftHSM reads SOFTHSM2_CONF once per process, so every test in this binary shares one token
//! directory (set up once) and has its own store.

mod common;

use keyward::backend::BackendError;
use keyward::backend::KeyRef;
use keyward::backend::pkcs11::{KeyAttributes, Pkcs11Options, Pkcs11Root, TokenSelector};
use keyward::config::{Config, DEV_TOKEN_LABEL, read_secret};
use keyward::server::Keyward;
use keyward::service::KmsError;
use keyward::service::clock::{ManualClock, SECONDS_PER_DAY};
use keyward::service::kms::NewKey;
use keyward::time::Timestamp;
use std::sync::{Arc, OnceLock};

struct SharedToken {
    _dir: tempfile::TempDir,
    base: Config,
}

fn shared_token() -> &'static SharedToken {
    static TOKEN: OnceLock<SharedToken> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (base, conf) = Config::development(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
        // SAFETY: set once, before this process loads the PKCS#11 module; other tests of this
        // binary wait on the OnceLock and do not read the environment meanwhile.
        unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
        SharedToken { _dir: dir, base }
    })
}

/// A config on the shared token with a store of its own.
fn config(store_dir: &std::path::Path) -> Config {
    let mut config = shared_token().base.clone();
    config.data_dir = store_dir.to_owned();
    config
}

fn inspector(config: &Config) -> Pkcs11Root {
    let keyward::config::RootOfTrustConfig::Pkcs11(p) = &config.root_of_trust else {
        panic!("the shared token is PKCS#11")
    };
    Pkcs11Root::connect(Pkcs11Options {
        module: p.module.clone(),
        token: TokenSelector::Label(DEV_TOKEN_LABEL.into()),
        pin: read_secret(None, p.pin_file.as_deref()).unwrap(),
    })
    .unwrap()
}

/// The service again on the same store and token, as after a restart.
async fn reopen(config: &Config, clock: &Arc<ManualClock>) -> Keyward {
    common::wait_for_lock(|| Keyward::open_with_clock(config.clone(), clock.clone())).await
}

fn new_key(description: &str) -> NewKey {
    NewKey {
        description: description.into(),
        key_usage: String::new(),
        key_spec: String::new(),
        tags: Vec::new(),
        protection: Default::default(),
        origin: String::new(),
    }
}

async fn materials(kms: &keyward::service::KmsService, key_id: &str) -> Vec<KeyRef> {
    kms.describe_key(key_id)
        .await
        .unwrap()
        .versions
        .into_iter()
        .map(|v| v.material)
        .collect()
}

#[tokio::test]
async fn master_keys_are_sensitive_non_extractable_token_objects() {
    let store = tempfile::tempdir().unwrap();
    let config = config(store.path());
    let keyward = Keyward::open(config.clone()).await.unwrap();
    let key = keyward.kms.create_key(new_key("locked in")).await.unwrap();
    keyward.kms.rotate_key_on_demand(&key.key_id).await.unwrap();

    let token = inspector(&config);
    let versions = materials(&keyward.kms, &key.key_id).await;
    assert_eq!(versions.len(), 2);
    for material in versions {
        let attributes = token.key_attributes(&material).unwrap();
        assert_eq!(
            attributes,
            KeyAttributes {
                sensitive: Some(true),
                extractable: Some(false),
                token: Some(true),
                value_readable: false,
            }
        );
    }
}

#[tokio::test]
async fn expired_keys_are_destroyed_in_the_token_even_after_a_restart() {
    let store = tempfile::tempdir().unwrap();
    let config = config(store.path());
    let start = 1_800_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let keyward = Keyward::open_with_clock(config.clone(), clock.clone())
        .await
        .unwrap();
    let kms = Arc::clone(&keyward.kms);
    let doomed = kms.create_key(new_key("doomed")).await.unwrap();
    kms.rotate_key_on_demand(&doomed.key_id).await.unwrap();
    kms.create_alias("alias/doomed", &doomed.key_id)
        .await
        .unwrap();
    let survivor = kms.create_key(new_key("survivor")).await.unwrap();
    let doomed_material = materials(&kms, &doomed.key_id).await;

    kms.schedule_key_deletion(&doomed.key_id, Some(7))
        .await
        .unwrap();
    clock.advance(7 * SECONDS_PER_DAY - 1);
    assert_eq!(kms.purge_expired_keys().await.unwrap(), 0, "not yet due");

    // Restart: a new service on the same store, with time moved past the deletion date.
    drop(kms);
    drop(keyward);
    clock.advance(1);
    let keyward = reopen(&config, &clock).await;
    let kms = Arc::clone(&keyward.kms);
    assert!(matches!(
        kms.cancel_key_deletion(&doomed.key_id).await,
        Err(KmsError::InvalidState(_))
    ));
    assert_eq!(kms.purge_expired_keys().await.unwrap(), 1);

    assert!(matches!(
        kms.describe_key(&doomed.key_id).await,
        Err(KmsError::NotFound(_))
    ));
    assert!(matches!(
        kms.describe_key("alias/doomed").await,
        Err(KmsError::NotFound(_))
    ));
    let token = inspector(&config);
    for material in doomed_material {
        assert!(
            matches!(
                token.key_attributes(&material),
                Err(BackendError::KeyMissing(_))
            ),
            "{material:?} must be gone from the token"
        );
    }
    for material in materials(&kms, &survivor.key_id).await {
        assert!(token.key_attributes(&material).is_ok());
    }
    assert_eq!(kms.purge_expired_keys().await.unwrap(), 0);
}

#[tokio::test]
async fn deletion_4_secrets_are_purged_after_the_window_even_after_a_restart() {
    use keyward::crypto::SecretBytes;
    use keyward::service::secrets::{Deletion, NewSecret, SecretsError, Value};
    let store_dir = tempfile::tempdir().unwrap();
    let config = config(store_dir.path());
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let keyward = Keyward::open_with_clock(config.clone(), clock.clone())
        .await
        .unwrap();
    let value = || Some(Value::String(SecretBytes::new(b"v".to_vec())));
    for name in ["doomed", "kept"] {
        keyward
            .secrets
            .create_secret(NewSecret {
                name: name.into(),
                client_request_token: String::new(),
                description: String::new(),
                kms_key_id: String::new(),
                value: value(),
                tags: Vec::new(),
                replica_regions: Vec::new(),
                force_overwrite_replica_secret: false,
            })
            .await
            .unwrap();
    }
    let doomed = keyward.secrets.describe_secret("doomed").await.unwrap();
    keyward
        .secrets
        .delete_secret(Deletion::scheduled("doomed", Some(7)))
        .await
        .unwrap();
    clock.advance(7 * SECONDS_PER_DAY - 1);
    assert_eq!(
        keyward.secrets.purge_deleted().await.unwrap(),
        0,
        "not yet due"
    );
    drop(keyward);

    clock.advance(1);
    let keyward = reopen(&config, &clock).await;
    assert_eq!(keyward.secrets.purge_deleted().await.unwrap(), 1);
    assert!(matches!(
        keyward.secrets.describe_secret("doomed").await,
        Err(SecretsError::NotFound(_))
    ));
    assert!(keyward.secrets.describe_secret("kept").await.is_ok());
    // Its values and wrapped keys are gone from the store too.
    drop(keyward);
    let store_path = store_dir.path().join("store");
    let store = common::wait_for_lock(|| async { keyward::store::Store::open(&store_path) }).await;
    let prefix = format!("sm/value/{}/", doomed.id);
    assert!(
        store
            .scan(prefix.as_bytes(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// 2026-03-01T10:00:00Z.
const MARCH_1_10AM: i64 = 1_772_359_200;

/// Rule Rotation 6: a daily 02:00 UTC window rotates once when it opens, once more after a
/// downtime that missed several windows (not once per missed window), and the persisted
/// schedule survives a restart. KMS keys rotate on the same scheduler.
#[tokio::test]
async fn scheduled_rotation_runs_once_per_window_and_once_after_downtime() {
    use keyward::crypto::SecretBytes;
    use keyward::service::secrets::{NewSecret, RotateRequest, RotationRules, Value};
    use keyward::store::{PasswordPolicy, RotatorSpec};
    let store_dir = tempfile::tempdir().unwrap();
    let config = config(store_dir.path());
    let clock = Arc::new(ManualClock::new(MARCH_1_10AM));
    let keyward = Keyward::open_with_clock(config.clone(), clock.clone())
        .await
        .unwrap();
    keyward
        .secrets
        .create_secret(NewSecret {
            name: "nightly".into(),
            client_request_token: String::new(),
            description: String::new(),
            kms_key_id: String::new(),
            value: Some(Value::String(SecretBytes::new(b"v0".to_vec()))),
            tags: Vec::new(),
            replica_regions: Vec::new(),
            force_overwrite_replica_secret: false,
        })
        .await
        .unwrap();
    let started = keyward
        .secrets
        .rotate_secret(RotateRequest {
            secret_id: "nightly".into(),
            client_request_token: String::new(),
            rules: Some(RotationRules {
                automatically_after_days: None,
                schedule_expression: Some("cron(0 2 * * ? *)".into()),
                duration: Some("3h".into()),
            }),
            rotator: Some(RotatorSpec::Generated {
                password: PasswordPolicy::default(),
                template: None,
            }),
            rotate_immediately: false,
        })
        .await
        .unwrap()
        .version_id;
    assert_eq!(started, None);
    let key = keyward.kms.create_key(new_key("yearly")).await.unwrap();
    keyward
        .kms
        .enable_key_rotation(&key.key_id, Some(90))
        .await
        .unwrap();

    let hour = 3600;
    let march_2_2am = MARCH_1_10AM + 16 * hour;
    async fn rotations(k: &Keyward) -> (usize, Option<i64>, Option<i64>) {
        let record = k.secrets.describe_secret("nightly").await.unwrap();
        let rotation = record.rotation.clone().unwrap();
        (
            record.versions.len() - 1,
            rotation.last_rotated_at.map(Timestamp::secs),
            rotation.next_rotation_at.map(Timestamp::secs),
        )
    }
    assert_eq!(rotations(&keyward).await, (0, None, Some(march_2_2am)));

    let scheduler = keyward.scheduler(String::new());
    clock.advance(march_2_2am - 1 - clock_now(&clock));
    scheduler.pass().await;
    assert_eq!(rotations(&keyward).await.0, 0, "the window has not opened");
    clock.advance(1);
    scheduler.pass().await;
    scheduler.pass().await;
    let next = march_2_2am + 24 * hour;
    assert_eq!(
        rotations(&keyward).await,
        (1, Some(march_2_2am), Some(next))
    );
    let record = keyward.secrets.describe_secret("nightly").await.unwrap();
    let stages: Vec<Vec<String>> = record.versions.iter().map(|v| v.stages.clone()).collect();
    assert_eq!(stages, [vec!["AWSPREVIOUS"], vec!["AWSCURRENT"]]);
    drop(scheduler);
    drop(keyward);

    // Down for three days and five hours: three windows missed, one rotation on return.
    clock.advance(3 * 24 * hour + 5 * hour);
    let keyward = reopen(&config, &clock).await;
    let scheduler = keyward.scheduler(String::new());
    scheduler.pass().await;
    scheduler.pass().await;
    let now = clock_now(&clock);
    assert_eq!(
        rotations(&keyward).await,
        (2, Some(now), Some(march_2_2am + 4 * 24 * hour))
    );

    // The key was due 90 days after its creation: one automatic rotation, then not again.
    assert_eq!(
        keyward
            .kms
            .describe_key(&key.key_id)
            .await
            .unwrap()
            .versions
            .len(),
        1
    );
    clock.advance(90 * SECONDS_PER_DAY);
    scheduler.pass().await;
    scheduler.pass().await;
    let record = keyward.kms.describe_key(&key.key_id).await.unwrap();
    assert_eq!(record.versions.len(), 2);
    assert!(!record.versions[1].on_demand);
    let status = keyward.kms.key_rotation_status(&key.key_id).await.unwrap();
    assert_eq!(
        status.next_rotation_at.map(Timestamp::secs),
        Some(clock_now(&clock) + 90 * SECONDS_PER_DAY)
    );
    // The secret, 90 days behind its schedule, rotated once more in the same passes.
    assert_eq!(rotations(&keyward).await.0, 3);
}

fn clock_now(clock: &ManualClock) -> i64 {
    use keyward::service::Clock;
    clock.now().secs()
}

/// A store written before the secret indexes existed gets them once, at the next start; the
/// start after that reads no record, and listing and the purge see every secret.
#[tokio::test]
async fn a_store_from_before_the_indexes_is_indexed_once() {
    use keyward::crypto::SecretBytes;
    use keyward::service::secrets::{ListOptions, NewSecret, Value};
    use keyward::store::{Expect, Op, Store};
    let store_dir = tempfile::tempdir().unwrap();
    let config = config(store_dir.path());
    let clock = Arc::new(ManualClock::new(MARCH_1_10AM));
    let keyward = Keyward::open_with_clock(config.clone(), clock.clone())
        .await
        .unwrap();
    for name in ["a", "b", "c"] {
        clock.advance(1);
        keyward
            .secrets
            .create_secret(NewSecret {
                name: name.into(),
                client_request_token: String::new(),
                description: String::new(),
                kms_key_id: String::new(),
                value: Some(Value::String(SecretBytes::new(b"v".to_vec()))),
                tags: Vec::new(),
                replica_regions: Vec::new(),
                force_overwrite_replica_secret: false,
            })
            .await
            .unwrap();
    }
    keyward
        .secrets
        .delete_secret(keyward::service::secrets::Deletion::scheduled("b", Some(7)))
        .await
        .unwrap();
    drop(keyward);

    // Make it an old store: no index entries, no marker.
    let store_path = store_dir.path().join("store");
    let store = common::wait_for_lock(|| async { Store::open(&store_path) }).await;
    let mut ops = Vec::new();
    for prefix in ["sm/created/", "sm/deleting/", "sm/indexes-v1"] {
        for (key, _) in store.scan_all(prefix.as_bytes()).await.unwrap() {
            ops.push(Op::Delete {
                key,
                expect: Expect::Any,
            });
        }
    }
    assert_eq!(ops.len(), 5);
    store.commit(ops).await.unwrap();
    drop(store);

    let keyward = reopen(&config, &clock).await;
    assert_eq!(
        keyward.secrets.ensure_indexes().await.unwrap(),
        0,
        "built at start"
    );
    async fn listed(k: &Keyward) -> Vec<String> {
        let options = ListOptions {
            include_planned_deletion: true,
            ..Default::default()
        };
        let (records, _) = k.secrets.list_records(options).await.unwrap();
        records.into_iter().map(|r| r.name).collect()
    }
    assert_eq!(listed(&keyward).await, ["a", "b", "c"]);
    clock.advance(7 * SECONDS_PER_DAY);
    assert_eq!(keyward.secrets.purge_deleted().await.unwrap(), 1);
    assert_eq!(listed(&keyward).await, ["a", "c"]);
}

fn external_key() -> NewKey {
    NewKey {
        origin: "EXTERNAL".into(),
        ..new_key("imported")
    }
}

/// Key import with the clock moved: wrapping keys are locked in and destroyed when replaced,
/// used or expired; expired tokens are told apart; expiring material stops working at its
/// date and the purge destroys it.
#[tokio::test]
async fn import_wrapping_keys_and_expiring_material_leave_nothing_behind() {
    use keyward::crypto::{EncryptionContext, SecretBytes};
    use keyward::service::kms::{Encrypt, ImportMaterial};
    use rsa::pkcs8::DecodePublicKey;
    let store = tempfile::tempdir().unwrap();
    let config = config(store.path());
    let start = 1_800_000_000;
    let clock = Arc::new(ManualClock::new(start));
    let keyward = Keyward::open_with_clock(config.clone(), clock.clone())
        .await
        .unwrap();
    let kms = Arc::clone(&keyward.kms);
    let token = inspector(&config);
    let key = kms.create_key(external_key()).await.unwrap().key_id;
    let wrapping_key = |kms: Arc<keyward::service::KmsService>, key: String| async move {
        kms.describe_key(&key)
            .await
            .unwrap()
            .import
            .and_then(|i| i.parameters)
            .map(|p| p.wrapping_key)
            .unwrap()
    };
    let locked_in = KeyAttributes {
        sensitive: Some(true),
        extractable: Some(false),
        token: Some(true),
        value_readable: false,
    };
    let gone = |result: Result<KeyAttributes, BackendError>| {
        matches!(result, Err(BackendError::KeyMissing(_)))
    };
    let material = [0x5Au8; 32];
    let wrap = |public_key: &[u8]| {
        rsa::PublicKey::from_public_key_der(public_key)
            .unwrap()
            .encrypt(
                &mut keyward::crypto::rng::OsRng,
                rsa::Oaep::<sha1::Sha1>::new(),
                &material,
            )
            .unwrap()
    };
    let import = |token: Vec<u8>, wrapped: Vec<u8>, valid_to: Option<i64>| ImportMaterial {
        key_id: key.clone(),
        import_token: token,
        encrypted_key_material: wrapped,
        expiration_model: if valid_to.is_some() {
            "KEY_MATERIAL_EXPIRES".into()
        } else {
            String::new()
        },
        valid_to: valid_to.map(Timestamp::from_secs),
    };

    // A newer GetParametersForImport replaces the older: its wrapping key goes.
    let first = kms
        .get_parameters_for_import(&key, "RSAES_OAEP_SHA_1", "RSA_2048")
        .await
        .unwrap();
    let first_key = wrapping_key(kms.clone(), key.clone()).await;
    assert_eq!(
        token.wrapping_key_attributes(&first_key).unwrap(),
        locked_in
    );
    let second = kms
        .get_parameters_for_import(&key, "RSAES_OAEP_SHA_1", "RSA_2048")
        .await
        .unwrap();
    let second_key = wrapping_key(kms.clone(), key.clone()).await;
    assert!(gone(token.wrapping_key_attributes(&first_key)));
    assert_eq!(
        token.wrapping_key_attributes(&second_key).unwrap(),
        locked_in
    );
    assert!(matches!(
        kms.import_key_material(import(first.import_token, wrap(&first.public_key), None))
            .await,
        Err(KmsError::InvalidImportToken)
    ));

    // Past 24 hours the token is expired, and the purge destroys its wrapping key.
    clock.advance(SECONDS_PER_DAY + 1);
    kms.purge_expired_keys().await.unwrap();
    assert!(gone(token.wrapping_key_attributes(&second_key)));
    assert!(matches!(
        kms.import_key_material(import(second.import_token, wrap(&second.public_key), None))
            .await,
        Err(KmsError::ExpiredImportToken)
    ));

    // A used token's wrapping key goes too; the material expires in a day.
    let third = kms
        .get_parameters_for_import(&key, "RSAES_OAEP_SHA_1", "RSA_2048")
        .await
        .unwrap();
    let third_key = wrapping_key(kms.clone(), key.clone()).await;
    let now = keyward::time::Clock::now(clock.as_ref()).secs();
    kms.import_key_material(import(
        third.import_token,
        wrap(&third.public_key),
        Some(now + SECONDS_PER_DAY),
    ))
    .await
    .unwrap();
    assert!(gone(token.wrapping_key_attributes(&third_key)));
    let imported = materials(&kms, &key).await;
    assert_eq!(imported.len(), 1);
    assert_eq!(token.key_attributes(&imported[0]).unwrap(), locked_in);
    let encrypt = || Encrypt {
        key_id: key.clone(),
        plaintext: SecretBytes::new(b"until tomorrow".to_vec()),
        context: EncryptionContext::default(),
    };
    kms.encrypt(encrypt()).await.unwrap();

    clock.advance(SECONDS_PER_DAY);
    assert!(matches!(
        kms.encrypt(encrypt()).await,
        Err(KmsError::InvalidState(_))
    ));
    assert_eq!(
        kms.describe_key(&key).await.unwrap().state,
        keyward::store::KeyState::PendingImport
    );
    kms.purge_expired_keys().await.unwrap();
    assert!(materials(&kms, &key).await.is_empty());
    // Last: a miss makes the inspector re-initialise the module this process shares.
    assert!(gone(token.key_attributes(&imported[0])));
}
