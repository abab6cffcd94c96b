//! What only a TPM does: refusing a cleared or swapped TPM, PCR binding in both key modes,
//! parameter encryption, and a TPM that goes away under a running server. The rest of the
//! suite runs on swtpm too (`KEYWARD_TEST_ROOT`, see softhsm/run-tests).

mod common;

use common::swtpm::Swtpm;
use common::*;
use keyward::api::pb;
use std::path::Path;
use std::time::Duration;
use tonic::Code;

/// A server on `tpm` in `mode`; `extra` goes into its `[root_of_trust]` table.
fn tpm_server(data: &Path, tpm: &Swtpm, mode: &str, extra: &str) -> Result<Server, String> {
    tpm_server_with_env(data, tpm, mode, extra, &[])
}

fn tpm_server_with_env(
    data: &Path,
    tpm: &Swtpm,
    mode: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> Result<Server, String> {
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n{}[health]\ncheck_interval_ms = 200\n",
            data.display(),
            tpm_table(tpm, mode, extra)
        ),
    )
    .unwrap();
    Server::try_spawn(data, &["--config", config.to_str().unwrap()], env)
}

async fn create_bound_key(kms: &mut Kms, pcrs: &[u32]) -> pb::KeyMetadata {
    kms.create_key(pb::CreateKeyRequest {
        description: "bound".into(),
        tpm_pcrs: pcrs.to_vec(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .key_metadata
    .unwrap()
}

async fn try_encrypt(kms: &mut Kms, key_id: &str) -> Result<Vec<u8>, tonic::Status> {
    kms.encrypt(pb::EncryptRequest {
        key_id: key_id.into(),
        plaintext: b"measured".to_vec(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().ciphertext_blob)
}

#[track_caller]
fn assert_platform_changed(status: &tonic::Status) {
    assert_error(status, Code::FailedPrecondition, "KMSInvalidStateException");
    assert!(
        status.message().contains("platform state changed"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_cleared_or_swapped_tpm_stops_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tpm = Swtpm::start(&dir.path().join("tpm"));
    let server = tpm_server(&data, &tpm, "resident", "").unwrap();
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "on the first TPM").await;
    let blob = encrypt(&mut kms, &key.key_id, b"x", &[]).await;
    drop(kms);
    server.kill();
    drop(tpm);

    // The same TPM state again: the key and its ciphertexts work.
    let tpm = Swtpm::start(&dir.path().join("tpm"));
    let server = tpm_server(&data, &tpm, "resident", "").unwrap();
    let mut kms = server.kms().await;
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"x");
    drop(kms);
    server.kill();
    drop(tpm);

    // A fresh TPM (as after TPM2_Clear, or another machine's) under the old data directory.
    let fresh = Swtpm::start(&dir.path().join("fresh-tpm"));
    let err = match tpm_server(&data, &fresh, "resident", "") {
        Ok(_) => panic!("a server started on another TPM"),
        Err(printed) => printed,
    };
    assert!(
        err.contains("not the one this data directory was created with")
            && err.contains("cleared or replaced"),
        "{err}"
    );
}

async fn pcr_binding_holds(mode: &str, extra: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tpm = Swtpm::start(&dir.path().join("tpm"));
    let server = tpm_server(&data, &tpm, mode, extra).unwrap();
    let mut kms = server.kms().await;
    let bound = create_bound_key(&mut kms, &[17]).await;
    assert_eq!(
        (bound.tpm_key_mode.as_str(), bound.tpm_pcrs.as_slice()),
        (mode, &[17][..])
    );
    let free = create_key(&mut kms, "unbound").await;
    let bound_blob = try_encrypt(&mut kms, &bound.key_id).await.unwrap();
    let free_blob = try_encrypt(&mut kms, &free.key_id).await.unwrap();
    assert_eq!(
        decrypt(&mut kms, &bound_blob, &[]).await.unwrap(),
        b"measured"
    );

    // The platform state changes: a new measurement lands in PCR 17.
    tpm.measure_into_pcr17("another boot chain");
    assert_platform_changed(&try_encrypt(&mut kms, &bound.key_id).await.unwrap_err());
    assert_platform_changed(&decrypt(&mut kms, &bound_blob, &[]).await.unwrap_err());
    // Other keys keep working.
    assert_eq!(
        decrypt(&mut kms, &free_blob, &[]).await.unwrap(),
        b"measured"
    );
    try_encrypt(&mut kms, &free.key_id).await.unwrap();

    // After a restart nothing is in memory: the TPM itself refuses the bound key's objects.
    drop(kms);
    server.kill();
    let server = tpm_server(&data, &tpm, mode, extra).unwrap();
    let mut kms = server.kms().await;
    assert_platform_changed(&decrypt(&mut kms, &bound_blob, &[]).await.unwrap_err());
    assert_eq!(
        decrypt(&mut kms, &free_blob, &[]).await.unwrap(),
        b"measured"
    );
}

#[tokio::test]
async fn pcr_binding_resident() {
    pcr_binding_holds("resident", "").await;
}

#[tokio::test]
async fn pcr_binding_sealed_kek() {
    pcr_binding_holds("sealed-kek", "").await;
}

#[tokio::test]
async fn pcr_binding_with_parameter_encryption() {
    pcr_binding_holds("resident", "parameter_encryption = true").await;
    pcr_binding_holds("sealed-kek", "parameter_encryption = true").await;
}

/// Data keys and secrets through salted sessions, in both modes.
#[tokio::test]
async fn parameter_encryption_serves_keys_and_secrets() {
    for mode in ["resident", "sealed-kek"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let tpm = Swtpm::start(&dir.path().join("tpm"));
        let server = tpm_server(&data, &tpm, mode, "parameter_encryption = true").unwrap();
        let mut kms = server.kms().await;
        let key = create_key(&mut kms, "salted").await;
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
        let mut sm = secrets::client(&server).await;
        secrets::create(&mut sm, "salted/secret", Some("value")).await;
        assert_eq!(secrets::value(&mut sm, "salted/secret", "").await, "value");
        assert!(
            server.log().contains("parameter_encryption=true"),
            "{}",
            server.log()
        );
    }
}

#[tokio::test]
async fn a_tpm_that_goes_away_gives_unavailable_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut tpm = Swtpm::start(&dir.path().join("tpm"));
    let server = tpm_server(&data, &tpm, "resident", "").unwrap();
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "steady").await;
    let blob = encrypt(&mut kms, &key.key_id, b"kept", &[]).await;

    tpm.kill();
    let err = try_encrypt(&mut kms, &key.key_id).await.unwrap_err();
    assert_error(&err, Code::Unavailable, "KeyUnavailableException");
    wait_for("health NOT_SERVING", Duration::from_secs(20), || async {
        server.health().await == NOT_SERVING
    })
    .await;

    tpm.restart();
    wait_for("health SERVING", Duration::from_secs(20), || async {
        server.health().await == SERVING
    })
    .await;
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"kept");
    try_encrypt(&mut kms, &key.key_id).await.unwrap();
}

#[tokio::test]
async fn tpm_only_options_are_refused_on_softhsm() {
    if tpm_mode().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let err = kms
        .create_key(pb::CreateKeyRequest {
            tpm_pcrs: vec![17],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");
    assert!(err.message().contains("need a TPM"), "{}", err.message());
}

/// A persistent SRK (as provisioned by an operator) and the re-created one are the same key:
/// a data directory works with either, and a missing handle is named at start.
#[tokio::test]
async fn a_provisioned_persistent_srk_is_used_and_matches_the_re_created_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tpm = Swtpm::start(&dir.path().join("tpm"));
    keyward::backend::tpm::persist_srk(&tpm.tcti(), None, 0x8100_0001).unwrap();

    let server = tpm_server(&data, &tpm, "resident", "srk_handle = 0x81000001").unwrap();
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "under the persistent SRK").await;
    let blob = encrypt(&mut kms, &key.key_id, b"p", &[]).await;
    drop(kms);
    server.kill();

    let server = tpm_server(&data, &tpm, "resident", "").unwrap();
    let mut kms = server.kms().await;
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"p");
    drop(kms);
    server.kill();

    let err = match tpm_server(&data, &tpm, "resident", "srk_handle = 0x81000002") {
        Ok(_) => panic!("started with an SRK handle nobody provisioned"),
        Err(printed) => printed,
    };
    assert!(
        err.contains("0x81000002") && err.contains("provisioned"),
        "{err}"
    );
}

/// A TPM whose owner hierarchy has an authorization value: without it the server refuses to
/// start and says what to set; with it from the environment, it works.
#[tokio::test]
async fn the_owner_authorization_comes_from_the_environment() {
    use std::str::FromStr;
    use tss_esapi::interface_types::session_handles::AuthSession;
    use tss_esapi::structures::Auth;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tpm = Swtpm::start(&dir.path().join("tpm"));
    {
        let tcti = tss_esapi::tcti_ldr::TctiNameConf::from_str(&tpm.tcti()).unwrap();
        let mut ctx = tss_esapi::Context::new(tcti).unwrap();
        ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.hierarchy_change_auth(
                tss_esapi::handles::AuthHandle::Owner,
                Auth::try_from(b"owner-secret".to_vec()).unwrap(),
            )
        })
        .unwrap();
    }

    let err = match tpm_server(&data, &tpm, "resident", "") {
        Ok(_) => panic!("started without the owner authorization"),
        Err(printed) => printed,
    };
    assert!(err.contains("owner_auth_env"), "{err}");
    assert!(!err.contains("owner-secret"), "{err}");

    let server = tpm_server_with_env(
        &data,
        &tpm,
        "resident",
        "owner_auth_env = \"TPM_OWNER\"",
        &[("TPM_OWNER", "owner-secret")],
    )
    .unwrap();
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "owned").await;
    let blob = encrypt(&mut kms, &key.key_id, b"o", &[]).await;
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"o");
    assert!(!server.log().contains("owner-secret"));
}
