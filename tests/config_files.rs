//! The reference configurations in hsm-config/ parse, and a server runs from one against a
//! token made by softhsm/create-token, with the PIN from the environment; durations written
//! with units start a server too.

mod common;

use common::*;
use keyward::api::pb;
use keyward::config::Config;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_file_in_hsm_config_parses() {
    let mut parsed = 0;
    for entry in std::fs::read_dir(repo().join("hsm-config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            parsed += 1;
        }
    }
    assert!(parsed >= 1, "hsm-config/ holds no configuration");
}

/// Runs softhsm/create-token and returns the variables it prints.
fn create_token(dir: &Path, label: &str) -> Vec<(String, String)> {
    let out = Command::new("bash")
        .arg(repo().join("softhsm/create-token"))
        .arg(dir)
        .arg(label)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

#[tokio::test]
async fn a_server_runs_from_the_reference_config_on_a_script_made_token() {
    let dir = tempfile::tempdir().unwrap();
    let vars = create_token(&dir.path().join("hsm"), "keyward");
    // The script is idempotent: a second run reuses the token and PIN.
    assert_eq!(create_token(&dir.path().join("hsm"), "keyward"), vars);
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = repo().join("hsm-config/softhsm.toml");
    let data = dir.path().join("data");
    let server = Server::spawn(&data, &["--config", config.to_str().unwrap()], &env);
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "from config").await;
    let generated = kms
        .generate_data_key(pb::GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decrypt(&mut kms, &generated.ciphertext_blob, &[])
            .await
            .unwrap(),
        generated.plaintext
    );
    // --data-dir overrode the file's data_dir.
    assert!(data.join("store").is_dir());
    let log = server.log();
    let pin = &vars
        .iter()
        .find(|(k, _)| k == "KEYWARD_PKCS11_PIN")
        .unwrap()
        .1;
    assert!(!log.contains(pin.as_str()), "the PIN must never be logged");
    assert!(!log.contains("DEVELOPMENT DEFAULT"));
}

#[tokio::test]
async fn a_missing_pin_variable_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let vars = create_token(&dir.path().join("hsm"), "keyward");
    let conf = &vars.iter().find(|(k, _)| k == "SOFTHSM2_CONF").unwrap().1;
    let config = repo().join("hsm-config/softhsm.toml");
    let err = Server::try_spawn(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[("SOFTHSM2_CONF", conf), ("KEYWARD_PKCS11_PIN", "")],
    )
    .err()
    .expect("must not start");
    assert!(err.contains("KEYWARD_PKCS11_PIN is not set"), "{err}");
}

/// Durations written with units and bare numbers in the key's unit, side by side: the server
/// starts and serves on them.
#[tokio::test]
async fn a_server_runs_from_durations_with_units() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_config(
        &dir.path().join("data"),
        "[health]\ncheck_interval_ms = \"1s\"\n[kms]\ndeletion_check_interval_secs = \"1m\"\n\
         [secrets]\ndata_key_cache_seconds = \"5m\"\n\
         [rotation]\ncheck_interval_ms = \"500ms\"\nretry_initial_secs = 1\nretry_max_secs = \"1h\"\n\
         [audit]\ncheckpoint_interval_secs = \"10m\"\n[aws_endpoint]\nread_timeout_ms = \"10s\"\n",
    );
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "durations").await;
    assert!(!key.key_id.is_empty());
}
