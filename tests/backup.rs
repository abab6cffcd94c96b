//! Backups and restores through the CLI against real servers, on whichever root of trust and
//! store the suite runs: what was backed up comes back exactly, nothing after it does, and a
//! changed, cut or foreign backup is refused with nothing written.

mod common;

use common::secrets::{self, Sm, token};
use common::{Server, assert_error, audit_records, auth, decrypt, encrypt, on_etcd};
use keyward::api::pb::{self, CreateBackupRequest, backup_service_client::BackupServiceClient};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tonic::Code;

use common::cli::{ok, refused};

fn config_of(server: &Server) -> PathBuf {
    server.data_dir.with_extension("toml")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A stopped server's swtpm and etcd, kept running for the CLI until dropped.
type Roots = (Option<common::swtpm::Swtpm>, Option<common::etcd::Etcd>);

/// Stops `server` gracefully, keeping its root of trust (swtpm) and etcd running.
fn stop_keeping_roots(mut server: Server) -> Roots {
    let kept = (server.swtpm.take(), server.etcd.take());
    server.stop();
    kept
}

/// `keyward restore` into `server`'s (stopped) data directory with its configuration.
fn restore_args<'a>(from: &'a Path, data_dir: &'a Path, config: &'a Path) -> Vec<&'a str> {
    vec![
        "restore",
        "--from",
        path(from),
        "--data-dir",
        path(data_dir),
        "--config",
        path(config),
    ]
}

async fn sm(server: &Server) -> Sm {
    secrets::client(server).await
}

#[tokio::test]
async fn a_restored_backup_brings_back_every_key_secret_and_label_and_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::with_config(&data, "");
    let mut kms = server.kms().await;
    let mut client = sm(&server).await;
    let key = common::create_key(&mut kms, "kept").await;
    let ctx = [("app", "billing")];
    let ciphertext = encrypt(&mut kms, &key.key_id, b"only the test keeps this", &ctx).await;
    secrets::create(&mut client, "db", Some("v1")).await;
    secrets::put(&mut client, "db", &token("v2"), "v2", &[])
        .await
        .unwrap();
    secrets::put(&mut client, "db", &token("v3"), "v3", &["STAGED"])
        .await
        .unwrap();
    let stages_at_backup = secrets::stages(&mut client, "db").await;

    let file = dir.path().join("site.kwb");
    let made = ok(&[
        "backup",
        "--to",
        path(&file),
        "--endpoint",
        &server.endpoint,
    ]);
    assert!(made["entries"].as_u64().unwrap() > 0, "{made}");
    let checked = ok(&["backup", "verify", path(&file)]);
    assert_eq!(checked["whole_and_unchanged"], true);
    assert_eq!(checked["sha256"], made["sha256"]);
    // A second backup to the same name would overwrite the first: refused.
    let again = refused(&[
        "backup",
        "--to",
        path(&file),
        "--endpoint",
        &server.endpoint,
    ]);
    assert!(again.contains("exists"), "{again}");
    if !on_etcd() {
        // sled is locked by the running server: an offline backup says what to do instead.
        let busy = refused(&[
            "backup",
            "--to",
            path(&dir.path().join("offline.kwb")),
            "--data-dir",
            path(&data),
            "--config",
            path(&config_of(&server)),
        ]);
        assert!(busy.contains("is its server running"), "{busy}");
    }
    // The refusal above came before any call: one backup made, one audited.
    let records = audit_records(&data, "keyward:CreateBackup");
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "success", "{records:#?}");

    // After the backup: a new version, a moved label, a new key. None of it comes back.
    secrets::put(&mut client, "db", &token("v4"), "v4", &[])
        .await
        .unwrap();
    common::create_key(&mut kms, "after").await;
    drop((kms, client));
    let config = config_of(&server);
    let roots = stop_keeping_roots(server);

    // A stopped server's data directory backs up offline too, sealed the same way.
    let offline = dir.path().join("offline.kwb");
    ok(&[
        "backup",
        "--to",
        path(&offline),
        "--data-dir",
        path(&data),
        "--config",
        path(&config),
    ]);
    let sealed = ok(&[
        "backup",
        "verify",
        path(&offline),
        "--data-dir",
        path(&data),
        "--config",
        path(&config),
    ]);
    assert_eq!(sealed["sealed_by_this_deployment"], true);

    // The store is not empty: restore refuses to mix, then replaces it when told to.
    let args = restore_args(&file, &data, &config);
    let mixed = refused(&args);
    assert!(
        mixed.contains("not empty") && mixed.contains("--force"),
        "{mixed}"
    );
    let restored = ok(&[args.as_slice(), &["--force"]].concat());
    assert_eq!(restored["restored"], made["entries"]);
    drop(roots);

    let server = Server::with_config(&data, "");
    let mut kms = server.kms().await;
    let mut client = sm(&server).await;
    assert_eq!(
        decrypt(&mut kms, &ciphertext, &ctx).await.unwrap(),
        b"only the test keeps this"
    );
    assert_eq!(secrets::stages(&mut client, "db").await, stages_at_backup);
    assert_eq!(secrets::value(&mut client, "db", "AWSCURRENT").await, "v2");
    assert_eq!(secrets::value(&mut client, "db", "STAGED").await, "v3");
    let keys = kms
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    let descriptions: Vec<String> = futures_descriptions(&mut kms, &keys).await;
    assert!(
        descriptions.contains(&"kept".to_owned()),
        "{descriptions:?}"
    );
    assert!(
        !descriptions.contains(&"after".to_owned()),
        "{descriptions:?}"
    );
    // The restore ran offline; the first start after it put it in the log, naming the backup.
    let restores = audit_records(&data, "keyward:RestoreBackup");
    assert_eq!(restores.len(), 1, "{restores:#?}");
    let sha = made["sha256"].as_str().unwrap();
    assert!(
        restores[0]["reason"].as_str().unwrap_or("").contains(sha),
        "{restores:#?}"
    );
    // The service goes on from the restored state.
    secrets::put(&mut client, "db", &token("v5"), "v5", &[])
        .await
        .unwrap();
    assert_eq!(secrets::value(&mut client, "db", "AWSPREVIOUS").await, "v2");
}

async fn futures_descriptions(kms: &mut common::Kms, keys: &[pb::KeyListEntry]) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys {
        out.push(common::describe(kms, &key.key_id).await.description);
    }
    out
}

#[tokio::test]
async fn a_changed_cut_or_foreign_backup_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = Server::with_config(&data_a, "");
    let b = Server::with_config(&data_b, "");
    secrets::create(&mut sm(&a).await, "in-a", Some("a")).await;
    secrets::create(&mut sm(&b).await, "in-b", Some("b")).await;
    let file = dir.path().join("a.kwb");
    ok(&["backup", "--to", path(&file), "--endpoint", &a.endpoint]);
    let bytes = std::fs::read(&file).unwrap();

    let changed = dir.path().join("changed.kwb");
    let mut edited = bytes.clone();
    let middle = edited.len() / 2;
    edited[middle] ^= 0x01;
    std::fs::write(&changed, &edited).unwrap();
    let why = refused(&["backup", "verify", path(&changed)]);
    assert!(why.contains("changed after it was written"), "{why}");

    let cut = dir.path().join("cut.kwb");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let why = refused(&["backup", "verify", path(&cut)]);
    assert!(why.contains("cut short"), "{why}");

    // Into B: a changed backup, a cut one, and A's (sealed by another root of trust) are all
    // refused before anything is written, even with --force.
    let config_b = config_of(&b);
    let roots_b = stop_keeping_roots(b);
    for (backup, expected) in [
        (&changed, "changed after it was written"),
        (&cut, "cut short"),
        (&file, "another deployment"),
    ] {
        let args = [
            restore_args(backup, &data_b, &config_b).as_slice(),
            &["--force"],
        ]
        .concat();
        let why = refused(&args);
        assert!(why.contains(expected), "{backup:?}: {why}");
    }
    drop(roots_b);
    let b = Server::with_config(&data_b, "");
    let mut client = sm(&b).await;
    assert_eq!(secrets::value(&mut client, "in-b", "AWSCURRENT").await, "b");
    let missing = secrets::get(&mut client, "in-a", "", "AWSCURRENT")
        .await
        .unwrap_err();
    assert_error(&missing, Code::NotFound, "ResourceNotFoundException");
    drop(a);
}

#[tokio::test]
async fn a_backup_taken_under_writes_restores_every_version_with_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::with_config(&data, "");
    let names: Vec<String> = (0..4).map(|i| format!("busy-{i}")).collect();
    let mut client = sm(&server).await;
    for name in &names {
        secrets::create(&mut client, name, Some("0")).await;
    }
    // Writers move AWSCURRENT on every secret while the backup is taken.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for name in names.clone() {
        let (mut client, stop) = (client.clone(), std::sync::Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 400 {
                n += 1;
                let value = n.to_string();
                secrets::put(
                    &mut client,
                    &name,
                    &token(&format!("{name}-{n}")),
                    &value,
                    &[],
                )
                .await
                .expect("put while backing up");
            }
            n
        }));
    }
    // Some writes first, so the backup lands in the middle of the load.
    common::wait_for(
        "writes under way",
        std::time::Duration::from_secs(60),
        || {
            let mut client = client.clone();
            async move { secrets::versions(&mut client, "busy-0").await.len() > 5 }
        },
    )
    .await;
    let mut backups = BackupServiceClient::new(
        tonic::transport::Channel::from_shared(server.endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut stream = backups
        .create_backup(CreateBackupRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend_from_slice(&chunk.data);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let file = dir.path().join("busy.kwb");
    std::fs::write(&file, &bytes).unwrap();
    drop(client);
    let config = config_of(&server);
    let roots = stop_keeping_roots(server);
    ok(&[restore_args(&file, &data, &config).as_slice(), &["--force"]].concat());
    drop(roots);

    let server = Server::with_config(&data, "");
    let mut client = sm(&server).await;
    for name in &names {
        let versions = secrets::versions(&mut client, name).await;
        let mut holders: BTreeMap<String, usize> = BTreeMap::new();
        for version in &versions {
            for stage in &version.version_stages {
                *holders.entry(stage.clone()).or_default() += 1;
            }
            // Every version listed has its value.
            let got = secrets::get(&mut client, name, &version.version_id, "")
                .await
                .unwrap_or_else(|e| panic!("{name} {}: {e}", version.version_id));
            assert!(got.secret_string.is_some());
        }
        assert_eq!(holders.get("AWSCURRENT"), Some(&1), "{name}: {versions:#?}");
        assert_eq!(
            holders.get("AWSPREVIOUS"),
            Some(&1),
            "{name}: {versions:#?}"
        );
        // AWSCURRENT is the newest value the backup saw, AWSPREVIOUS the one before it.
        let current: u32 = secrets::value(&mut client, name, "AWSCURRENT")
            .await
            .parse()
            .unwrap();
        let previous: u32 = secrets::value(&mut client, name, "AWSPREVIOUS")
            .await
            .parse()
            .unwrap();
        assert_eq!(previous + 1, current, "{name}");
    }
}

#[tokio::test]
async fn backups_are_for_callers_allowed_to_make_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secrets_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#;
    let config = auth::principal_with_policy("admin", auth::ALLOW_ALL)
        + &auth::principal_with_policy("app", secrets_only);
    let server = Server::with_config(&data, &config);
    let file = dir.path().join("denied.kwb");
    let mut app = keyward::cli::client::Connect::plain(&server.endpoint);
    app.token = Some("token-app".into());
    let conn = keyward::cli::client::connect(&app).await.unwrap();
    let denied = BackupServiceClient::new(conn)
        .create_backup(CreateBackupRequest {})
        .await
        .map(|_| ())
        .unwrap_err();
    assert_error(&denied, Code::PermissionDenied, "AccessDeniedException");
    let (ok_admin, out, err) = {
        let out = Command::new(common::BIN)
            .args([
                "backup",
                "--to",
                path(&file),
                "--endpoint",
                &server.endpoint,
            ])
            .env("KEYWARD_TOKEN", "token-admin")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(ok_admin, "{out}{err}");
    let records = audit_records(&data, "keyward:CreateBackup");
    let outcomes: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["principal"].as_str().unwrap_or(""),
                r["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("keyward:principal/app", "denied"),
            ("keyward:principal/admin", "success")
        ]
    );
}

#[test]
fn the_readmes_backup_walkthrough_runs_as_written() {
    // The walkthrough runs the development default (SoftHSM, sled); the other phases of the
    // suite cover backups on a TPM and on etcd through the tests above.
    if common::tpm_mode().is_some() || on_etcd() {
        return;
    }
    let (ok, stdout, stderr) =
        common::run_readme_section("## Backup and recovery", 120, "--data-dir /tmp/keyward-dr/");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l == "kept in the backup"),
        "{stdout}"
    );
    assert!(stdout.contains("\"whole_and_unchanged\": true"), "{stdout}");
}
