//! The disaster drill on whichever root of trust the suite runs (SoftHSM; swtpm `sealed-kek`):
//! keys, data keys whose ciphertexts only the test keeps, secrets with versions, labels and
//! policies; an online backup; the data directory and the token (or the TPM's state) deleted;
//! a new token (new swtpm); `keyward recover` with 3 of 5 shares; everything back. Refusals (too
//! few shares, a damaged share, a wrong share, another escrow's shares, an edited backup) leave
//! the new store untouched. On swtpm `resident`, escrow refuses to start, as documented.

mod common;

use common::secrets::{self, token};
use common::{Server, decrypt, encrypt, tpm_mode, write_config};
use keyward::api::pb;
use std::path::Path;

use common::cli::{ok, refused};

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `keyward escrow init`: the public key file and the shares.
fn escrow_init(dir: &Path, name: &str) -> (std::path::PathBuf, Vec<String>) {
    let public = dir.join(format!("{name}.pem"));
    let out = ok(&[
        "escrow",
        "init",
        "--shares",
        "5",
        "--threshold",
        "3",
        "--public-key",
        path(&public),
    ]);
    let shares = out["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(shares.len(), 5);
    (public, shares)
}

fn escrow_table(public: &Path) -> String {
    format!("[escrow]\npublic_key_file = \"{}\"\n", public.display())
}

/// A share's body with its checksum made again, as a careful forger would.
fn with_checksum(body: &str) -> String {
    let sum = keyward::crypto::sha256(body.as_bytes());
    format!("{body}:{}", keyward::crypto::hex::encode(&sum[..4]))
}

const KEY_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"all","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#;
const SECRET_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"keyward:principal/nobody"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

/// What the test keeps from the lost deployment, to check against the recovered one.
struct Kept {
    key_a: String,
    key_b: String,
    /// Under key A's first version (before its rotation) and its second.
    old_ciphertext: Vec<u8>,
    new_ciphertext: Vec<u8>,
    data_key: pb::GenerateDataKeyResponse,
    b_ciphertext: Vec<u8>,
    stages: std::collections::BTreeMap<String, Vec<String>>,
}

async fn populate(server: &Server) -> Kept {
    let mut kms = server.kms().await;
    let key_a = common::create_key(&mut kms, "drill a").await.key_id;
    let old_ciphertext = encrypt(&mut kms, &key_a, b"before rotation", &[("app", "drill")]).await;
    kms.rotate_key_on_demand(pb::RotateKeyOnDemandRequest {
        key_id: key_a.clone(),
    })
    .await
    .unwrap();
    let new_ciphertext = encrypt(&mut kms, &key_a, b"after rotation", &[]).await;
    let data_key = kms
        .generate_data_key(pb::GenerateDataKeyRequest {
            key_id: key_a.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key_b = common::create_key(&mut kms, "drill b").await.key_id;
    kms.put_key_policy(pb::PutKeyPolicyRequest {
        key_id: key_b.clone(),
        policy: KEY_POLICY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let b_ciphertext = encrypt(&mut kms, &key_b, b"key b", &[]).await;

    let mut sm = secrets::client(server).await;
    secrets::create(&mut sm, "drill/db", Some("v1")).await;
    secrets::put(&mut sm, "drill/db", &token("v2"), "v2", &[])
        .await
        .unwrap();
    secrets::put(&mut sm, "drill/db", &token("v3"), "v3", &["STAGED"])
        .await
        .unwrap();
    sm.put_resource_policy(pb::PutResourcePolicyRequest {
        secret_id: "drill/db".into(),
        resource_policy: SECRET_POLICY.into(),
        block_public_policy: None,
    })
    .await
    .unwrap();
    let stages = secrets::stages(&mut sm, "drill/db").await;
    Kept {
        key_a,
        key_b,
        old_ciphertext,
        new_ciphertext,
        data_key,
        b_ciphertext,
        stages,
    }
}

async fn assert_intact(server: &Server, kept: &Kept) {
    let mut kms = server.kms().await;
    assert_eq!(
        decrypt(&mut kms, &kept.old_ciphertext, &[("app", "drill")])
            .await
            .unwrap(),
        b"before rotation"
    );
    assert_eq!(
        decrypt(&mut kms, &kept.new_ciphertext, &[]).await.unwrap(),
        b"after rotation"
    );
    assert_eq!(
        decrypt(&mut kms, &kept.data_key.ciphertext_blob, &[])
            .await
            .unwrap(),
        kept.data_key.plaintext
    );
    assert_eq!(
        decrypt(&mut kms, &kept.b_ciphertext, &[]).await.unwrap(),
        b"key b"
    );
    let policy = kms
        .get_key_policy(pb::GetKeyPolicyRequest {
            key_id: kept.key_b.clone(),
            policy_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy;
    assert_eq!(policy, KEY_POLICY);
    // A tampered ciphertext is still refused under the recovered key.
    let mut tampered = kept.new_ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(decrypt(&mut kms, &tampered, &[]).await.is_err());
    // The recovered deployment makes new keys, escrowed again.
    let fresh = common::create_key(&mut kms, "after recovery").await.key_id;
    assert_ne!(fresh, kept.key_a);

    let mut sm = secrets::client(server).await;
    assert_eq!(secrets::stages(&mut sm, "drill/db").await, kept.stages);
    assert_eq!(
        secrets::value(&mut sm, "drill/db", "AWSCURRENT").await,
        "v2"
    );
    assert_eq!(
        secrets::value(&mut sm, "drill/db", "AWSPREVIOUS").await,
        "v1"
    );
    assert_eq!(secrets::value(&mut sm, "drill/db", "STAGED").await, "v3");
    let policy = sm
        .get_resource_policy(pb::GetResourcePolicyRequest {
            secret_id: "drill/db".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .resource_policy;
    assert_eq!(policy.as_deref(), Some(SECRET_POLICY));
}

#[tokio::test]
async fn the_disaster_drill_brings_every_key_and_secret_back_on_new_hardware() {
    let dir = tempfile::tempdir().unwrap();
    let (public, shares) = escrow_init(dir.path(), "escrow");
    let escrow = escrow_table(&public);

    let data = dir.path().join("data");
    let (config, tpm) = write_config(&data, &escrow);
    if tpm_mode() == Some("resident") {
        // Resident keys cannot be escrowed: the server refuses to make its first key.
        let error = Server::try_spawn(&data, &["--config", path(&config)], &[])
            .err()
            .expect("a resident server with escrow must not start");
        assert!(
            error.contains("TPM resident keys cannot be escrowed"),
            "{error}"
        );
        return;
    }
    ok(&["escrow", "install", "--config", path(&config)]);
    let mut server = Server::try_spawn(&data, &["--config", path(&config)], &[]).unwrap();
    server.swtpm = tpm;
    let kept = populate(&server).await;
    let backup = dir.path().join("drill.kwb");
    ok(&[
        "backup",
        "--to",
        path(&backup),
        "--endpoint",
        &server.endpoint,
    ]);

    // The disaster: machine, disk and token (or TPM) gone.
    let (lost_tpm, lost_etcd) = (server.swtpm.take(), server.etcd.take());
    server.stop();
    drop((lost_tpm, lost_etcd));
    std::fs::remove_dir_all(&data).unwrap();
    for beside in ["swtpm", "etcd"] {
        let _ = std::fs::remove_dir_all(data.with_extension(beside));
    }

    // New hardware: a new token (or a new swtpm), an empty data directory.
    let new = dir.path().join("new");
    let (new_config, new_tpm) = write_config(&new, &escrow);
    ok(&["escrow", "install", "--config", path(&new_config)]);
    let recover = |shares: &str| -> Vec<String> {
        vec![
            "recover".into(),
            "--backup".into(),
            path(&backup).into(),
            "--shares".into(),
            shares.into(),
            "--config".into(),
            path(&new_config).into(),
        ]
    };
    // On etcd the store is not a directory; there the final recovery's need of an empty store
    // shows the refusals wrote nothing.
    let store_untouched = || {
        assert!(
            !new.join("store").exists(),
            "a refused recovery must not open the new store"
        );
    };

    // Too few shares.
    let two = recover(&shares[..2].join(","));
    let error = refused(&strs(&two));
    assert!(
        error.contains("2 distinct shares given; this escrow key needs 3"),
        "{error}"
    );
    store_untouched();
    // A share damaged in transcription.
    let mut damaged = shares[2].clone().into_bytes();
    let at = damaged.len() - 20;
    damaged[at] = if damaged[at] == b'0' { b'1' } else { b'0' };
    let damaged = String::from_utf8(damaged).unwrap();
    let error = refused(&strs(&recover(
        &[&shares[0], &shares[1], &damaged]
            .map(|s| s.as_str())
            .join(","),
    )));
    assert!(
        error.contains("share 3: its checksum does not match"),
        "{error}"
    );
    store_untouched();
    // A wrong share with a valid checksum: the rebuilt prime does not divide the modulus.
    let (body, _) = shares[3].rsplit_once(':').unwrap();
    let (head, payload) = body.rsplit_once(':').unwrap();
    let mut payload = payload.to_owned().into_bytes();
    payload[0] = if payload[0] == b'a' { b'b' } else { b'a' };
    let wrong = with_checksum(&format!("{head}:{}", String::from_utf8(payload).unwrap()));
    let error = refused(&strs(&recover(
        &[shares[0].as_str(), &shares[1], &wrong].join(","),
    )));
    assert!(
        error.contains("the shares do not rebuild escrow key"),
        "{error}"
    );
    store_untouched();
    // Shares of another escrow key.
    let (_, others) = escrow_init(dir.path(), "other");
    let error = refused(&strs(&recover(&others[..3].join(","))));
    assert!(error.contains("the backup holds no escrow key"), "{error}");
    store_untouched();
    // A backup edited by one byte.
    let edited = dir.path().join("edited.kwb");
    let mut bytes = std::fs::read(&backup).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&edited, bytes).unwrap();
    let mut edited_args = recover(&shares[1..4].join(","));
    edited_args[2] = path(&edited).into();
    let error = refused(&strs(&edited_args));
    assert!(error.contains("changed after it was written"), "{error}");
    store_untouched();

    // 3 of 5, not the first three; on an etcd run, into the new site's etcd (running for the
    // recovery only: the server starts its own on the same data).
    let etcd_dir = new.with_extension("etcd");
    let new_etcd = common::on_etcd().then(|| common::etcd::Etcd::start(&etcd_dir, 1, &[]));
    let picked = [shares[4].as_str(), &shares[1], &shares[3]].join(",");
    let report = ok(&strs(&recover(&picked)));
    drop(new_etcd);
    assert_eq!(report["keys"], 3, "{report}"); // a, b and the secrets' default key
    assert_eq!(report["key_versions"], 4, "{report}");
    assert_eq!(report["mac_keys"], 2, "{report}");
    assert_eq!(report["mac_checked"], true, "{report}");
    assert_eq!(report["skipped"], serde_json::json!([]), "{report}");

    let mut recovered = Server::try_spawn(&new, &["--config", path(&new_config)], &[]).unwrap();
    recovered.swtpm = new_tpm;
    assert_intact(&recovered, &kept).await;
    // The restore is on the new deployment's audit log.
    assert_eq!(
        common::audit_records(&new, "keyward:RestoreBackup").len(),
        1
    );
    recovered.stop();
}

#[tokio::test]
async fn add_existing_escrows_what_the_root_allows_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (config, tpm) = write_config(&data, "");
    let mut server = Server::try_spawn(&data, &["--config", path(&config)], &[]).unwrap();
    server.swtpm = tpm;
    let mut kms = server.kms().await;
    let key = common::create_key(&mut kms, "made before escrow")
        .await
        .key_id;
    // Stopped, its TPM and etcd kept running for the CLI.
    let kept = (server.swtpm.take(), server.etcd.take());
    server.stop();

    let (public, _) = escrow_init(dir.path(), "escrow");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&escrow_table(&public));
    std::fs::write(&config, text).unwrap();
    ok(&["escrow", "install", "--config", path(&config)]);
    let report = ok(&["escrow", "add-existing", "--config", path(&config)]);
    let cannot: Vec<(String, String)> = report["cannot_escrow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_owned(),
                c["why"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let ours = format!("{key} v1");
    let escrowed: Vec<&str> = report["escrowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    // The audit key was made inside the root before escrow: it stays where it is everywhere.
    assert!(cannot.iter().any(|(k, _)| k == "audit/mac-key"), "{report}");
    match tpm_mode() {
        None => {
            // Made non-extractable: a PKCS#11 key made before escrow can never leave.
            let (_, why) = cannot.iter().find(|(k, _)| *k == ours).expect("reported");
            assert!(why.contains("non-extractable"), "{why}");
            assert!(escrowed.is_empty(), "{report}");
        }
        Some("sealed-kek") => {
            assert!(escrowed.contains(&ours.as_str()), "{report}");
            let again = ok(&["escrow", "add-existing", "--config", path(&config)]);
            assert_eq!(again["escrowed"], serde_json::json!([]), "{again}");
            assert!(again["already_escrowed"].as_u64().unwrap() >= 2, "{again}");
        }
        Some(_) => {
            let (_, why) = cannot.iter().find(|(k, _)| *k == ours).expect("reported");
            assert!(why.contains("resident keys cannot be escrowed"), "{why}");
        }
    }
    // It ran offline, with no log: the next start records what it escrowed, once.
    let (tpm, etcd) = kept;
    drop(etcd);
    let mut server = Server::try_spawn(&data, &["--config", path(&config)], &[]).unwrap();
    server.swtpm = tpm;
    let records = common::audit_records(&data, "keyward:EscrowExistingKeys");
    assert_eq!(
        records.len(),
        usize::from(!escrowed.is_empty()),
        "{records:#?}"
    );
    if let Some(record) = records.first() {
        assert!(
            record["reason"].as_str().unwrap_or("").contains(&ours),
            "{record}"
        );
    }
    server.stop();
}

#[test]
fn the_readmes_recovery_drill_runs_as_written() {
    // The README's drill is written for the development default (SoftHSM, sled).
    if tpm_mode().is_some() || common::on_etcd() {
        return;
    }
    let (ok, stdout, stderr) = common::run_readme_section(
        "## Recovery onto new hardware",
        180,
        "--config /tmp/keyward-escrow/",
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l == "outlived its hardware"),
        "{stdout}"
    );
    assert!(stdout.contains("\"mac_checked\": true"), "{stdout}");
}

#[test]
fn a_server_refuses_to_start_on_an_escrow_key_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    // A 2048-bit key: too small for escrow.
    let small = keyward::crypto::spki::rsa_public_key(&[0xc5; 256], &[1, 0, 1]);
    let small_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &small)
    );
    let cases = [
        ("missing.pem", None, "missing.pem"),
        (
            "garbage.pem",
            Some("not a key at all".to_owned()),
            "BEGIN PUBLIC KEY",
        ),
        ("small.pem", Some(small_pem), "escrow needs at least 3072"),
    ];
    for (name, contents, expected) in cases {
        let file = dir.path().join(name);
        if let Some(contents) = contents {
            std::fs::write(&file, contents).unwrap();
        }
        let data = dir.path().join(name.replace(".pem", ""));
        let (config, _tpm) = write_config(&data, &escrow_table(&file));
        let error = Server::try_spawn(&data, &["--config", path(&config)], &[])
            .err()
            .expect("the server must not start");
        assert!(
            error.contains("key escrow") && error.contains(expected),
            "{error}"
        );
    }
}
