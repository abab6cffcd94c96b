//! Policy decisions the security review found too lax, on real servers with bearer tokens:
//! ReEncrypt's destination context, alias names as resources, BatchGetSecretValue's per-secret
//! conditions, and key policies that can restrict use (delegation to identity policies, the
//! lockout check).

mod common;

use common::auth::{policy, token_entry};

use common::{Server, assert_error};
use keyward::api::pb::{
    self, key_management_service_client::KeyManagementServiceClient,
    secrets_manager_service_client::SecretsManagerServiceClient,
};
use keyward::cli::client::Conn;
use tonic::Code;

type Sm = SecretsManagerServiceClient<Conn>;
type Kms = KeyManagementServiceClient<Conn>;

const ADMIN_ALL: &str = common::auth::ALLOW_ALL;

/// A server with an `admin` allowed everything and one more principal per `(name, policy)`.
fn server(dir: &std::path::Path, principals: &[(&str, &str)]) -> Server {
    let mut config = format!("[auth]\n{}", token_entry("admin"));
    for (name, _) in principals {
        config.push_str(&token_entry(name));
    }
    config.push_str(&policy("admin-all", "\"admin\"", ADMIN_ALL));
    for (name, document) in principals {
        config.push_str(&policy(name, &format!("\"{name}\""), document));
    }
    Server::with_config(&dir.join("data"), &config)
}

async fn as_principal(server: &Server, principal: &str) -> (Sm, Kms) {
    common::auth::clients(server, principal).await
}

#[track_caller]
fn denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    assert_error(
        &result.unwrap_err(),
        Code::PermissionDenied,
        "AccessDeniedException",
    );
}

async fn create_key(kms: &mut Kms) -> String {
    kms.create_key(pb::CreateKeyRequest::default())
        .await
        .expect("create key")
        .into_inner()
        .key_metadata
        .expect("metadata")
        .key_id
}

async fn encrypt(kms: &mut Kms, key_id: &str, context: &[(&str, &str)]) -> Vec<u8> {
    kms.encrypt(pb::EncryptRequest {
        key_id: key_id.into(),
        plaintext: b"payload".to_vec(),
        encryption_context: common::context(context),
        ..Default::default()
    })
    .await
    .expect("encrypt")
    .into_inner()
    .ciphertext_blob
}

async fn re_encrypt(
    kms: &mut Kms,
    blob: &[u8],
    source: &[(&str, &str)],
    destination_key: &str,
    destination: &[(&str, &str)],
) -> Result<pb::ReEncryptResponse, tonic::Status> {
    kms.re_encrypt(pb::ReEncryptRequest {
        ciphertext_blob: blob.to_vec(),
        source_encryption_context: common::context(source),
        destination_key_id: destination_key.into(),
        destination_encryption_context: common::context(destination),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_encrypt_to_conditions_read_the_destination_context() {
    let dir = tempfile::tempdir().unwrap();
    let app = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kms:ReEncryptFrom","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:purpose":"from"}}},
        {"Effect":"Allow","Action":"kms:ReEncryptTo","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:purpose":"to"}}},
        {"Sid":"NoBlockedTier","Effect":"Deny","Action":"kms:ReEncryptTo","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:tier":"blocked"}}}
        ]}"#;
    let server = server(dir.path(), &[("app", app)]);
    let (_, mut admin) = as_principal(&server, "admin").await;
    let (_, mut app) = as_principal(&server, "app").await;
    let source_key = create_key(&mut admin).await;
    let destination_key = create_key(&mut admin).await;
    let from = [("purpose", "from")];
    let blob = encrypt(&mut admin, &source_key, &from).await;

    let moved = re_encrypt(
        &mut app,
        &blob,
        &from,
        &destination_key,
        &[("purpose", "to")],
    )
    .await
    .expect("ReEncryptFrom holds on the source context, ReEncryptTo on the destination's");
    assert!(moved.key_id.ends_with(&destination_key), "{moved:?}");
    denied(
        re_encrypt(
            &mut app,
            &blob,
            &from,
            &destination_key,
            &[("purpose", "other")],
        )
        .await,
    );
    // The Deny on ReEncryptTo reads the destination context only.
    denied(
        re_encrypt(
            &mut app,
            &blob,
            &from,
            &destination_key,
            &[("purpose", "to"), ("tier", "blocked")],
        )
        .await,
    );
    let tiered = encrypt(
        &mut admin,
        &source_key,
        &[("purpose", "from"), ("tier", "blocked")],
    )
    .await;
    re_encrypt(
        &mut app,
        &tiered,
        &[("purpose", "from"), ("tier", "blocked")],
        &destination_key,
        &[("purpose", "to")],
    )
    .await
    .expect("the source's tier is not the destination's");
}

const KMS_ARN: &str = "arn:keyward:kms:local:000000000000";

/// The aliases of one key.
async fn alias_names(kms: &mut Kms, key_id: &str) -> Vec<String> {
    let mut names: Vec<String> = kms
        .list_aliases(pb::ListAliasesRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await
        .expect("list aliases")
        .into_inner()
        .aliases
        .into_iter()
        .map(|a| a.alias_name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_name_is_a_resource_policies_can_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let app = format!(
        r#"{{"Version":"2012-10-17","Statement":[
        {{"Effect":"Allow","Action":"kms:CreateAlias","Resource":["{KMS_ARN}:key/*","{KMS_ARN}:alias/app-*"]}},
        {{"Effect":"Allow","Action":"kms:DeleteAlias","Resource":["{KMS_ARN}:key/*","{KMS_ARN}:alias/*"]}},
        {{"Sid":"Reserved","Effect":"Deny","Action":"kms:DeleteAlias","Resource":"{KMS_ARN}:alias/reserved-*"}}
        ]}}"#
    );
    let server = server(dir.path(), &[("app", &app)]);
    let (_, mut admin) = as_principal(&server, "admin").await;
    let (_, mut app) = as_principal(&server, "app").await;
    let key = create_key(&mut admin).await;
    let create = |name: &str| pb::CreateAliasRequest {
        alias_name: name.into(),
        target_key_id: key.clone(),
    };

    denied(app.create_alias(create("alias/prod-x")).await);
    assert_eq!(alias_names(&mut admin, &key).await, Vec::<String>::new());
    app.create_alias(create("alias/app-x"))
        .await
        .expect("alias/app-* is allowed");
    admin
        .create_alias(create("alias/reserved-x"))
        .await
        .expect("admin creates a reserved name");
    denied(
        app.delete_alias(pb::DeleteAliasRequest {
            alias_name: "alias/reserved-x".into(),
        })
        .await,
    );
    app.delete_alias(pb::DeleteAliasRequest {
        alias_name: "alias/app-x".into(),
    })
    .await
    .expect("DeleteAlias outside the reserved names");
    assert_eq!(
        alias_names(&mut admin, &key).await,
        vec!["alias/reserved-x"]
    );
}

const SECRET_ARN: &str = "arn:keyward:secretsmanager:local:000000000000:secret";

async fn create_secret(sm: &mut Sm, name: &str) -> String {
    sm.create_secret(pb::CreateSecretRequest {
        name: name.into(),
        secret_string: Some(format!("value-of-{name}")),
        ..Default::default()
    })
    .await
    .expect("create secret")
    .into_inner()
    .arn
}

async fn batch(
    sm: &mut Sm,
    ids: &[&str],
) -> Result<pb::BatchGetSecretValueResponse, tonic::Status> {
    sm.batch_get_secret_value(pb::BatchGetSecretValueRequest {
        secret_id_list: ids.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

/// The exception name of GetSecretValue, or "" when it succeeds.
async fn get_outcome(sm: &mut Sm, id: &str) -> String {
    match sm
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: id.into(),
            ..Default::default()
        })
        .await
    {
        Ok(_) => String::new(),
        Err(status) => status
            .metadata()
            .get("x-keyward-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_get_secret_value_decides_each_secret_as_get_secret_value_does() {
    let dir = tempfile::tempdir().unwrap();
    let app = format!(
        r#"{{"Version":"2012-10-17","Statement":[
        {{"Effect":"Allow","Action":"secretsmanager:BatchGetSecretValue","Resource":"*"}},
        {{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{{"StringEquals":{{"secretsmanager:VersionStage":"AWSCURRENT"}}}}}},
        {{"Sid":"CurrentOnly","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{{"StringNotEquals":{{"secretsmanager:VersionStage":"AWSCURRENT"}}}}}},
        {{"Sid":"NotOther","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"{SECRET_ARN}:other/*"}}
        ]}}"#
    );
    let lister = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["secretsmanager:BatchGetSecretValue","secretsmanager:ListSecrets","secretsmanager:GetSecretValue"],"Resource":"*"}
        ]}"#;
    let server = server(dir.path(), &[("app", &app), ("lister", lister)]);
    let (mut admin, _) = as_principal(&server, "admin").await;
    let (mut app, _) = as_principal(&server, "app").await;
    let (mut lister, _) = as_principal(&server, "lister").await;
    create_secret(&mut admin, "app/a").await;
    let other_arn = create_secret(&mut admin, "other/b").await;

    let ids = ["app/a", "other/b", "app/missing", "other/missing"];
    let answer = batch(&mut app, &ids).await.expect("batch");
    for id in ids {
        let single = get_outcome(&mut app, id).await;
        let in_batch = if answer.secret_values.iter().any(|v| v.name == id) {
            String::new()
        } else {
            let error = answer
                .errors
                .iter()
                .find(|e| e.secret_id == id)
                .unwrap_or_else(|| panic!("{id} missing from {answer:?}"));
            error.error_code.clone()
        };
        assert_eq!(in_batch, single, "{id}: {answer:?}");
    }
    assert_eq!(
        get_outcome(&mut app, "app/a").await,
        "",
        "AWSCURRENT reads are allowed"
    );
    // A refused item names only what the caller gave: not the ARN nor its random suffix.
    let refused = answer
        .errors
        .iter()
        .find(|e| e.secret_id == "other/b")
        .expect("other/b refused");
    let suffix = other_arn.rsplit('-').next().unwrap();
    assert!(
        !refused.message.contains("arn:") && !refused.message.contains(suffix),
        "{refused:?}"
    );

    // Filters list secrets: without secretsmanager:ListSecrets the call is refused.
    let by_filter = pb::BatchGetSecretValueRequest {
        filters: vec![pb::Filter {
            key: "name".into(),
            values: vec!["app/".into()],
        }],
        ..Default::default()
    };
    denied(app.batch_get_secret_value(by_filter.clone()).await);
    let listed = lister
        .batch_get_secret_value(by_filter)
        .await
        .expect("ListSecrets allows filters")
        .into_inner();
    assert_eq!(listed.secret_values.len(), 1, "{listed:?}");
}

async fn decrypt(kms: &mut Kms, blob: &[u8]) -> Result<Vec<u8>, tonic::Status> {
    kms.decrypt(pb::DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().plaintext)
}

const DELEGATE: &str = r#"{"Sid":"Enable identity policies","Effect":"Allow","Principal":{"AWS":"arn:keyward:iam::000000000000:root"},"Action":"kms:*","Resource":"*"}"#;
const ADMIN_OWNS: &str = r#"{"Effect":"Allow","Principal":{"AWS":"keyward:principal/admin"},"Action":"kms:*","Resource":"*"}"#;

fn key_policy(statements: &[&str]) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    )
}

async fn put_key_policy(
    kms: &mut Kms,
    key_id: &str,
    policy: &str,
    bypass: bool,
) -> Result<(), tonic::Status> {
    kms.put_key_policy(pb::PutKeyPolicyRequest {
        key_id: key_id.into(),
        policy_name: "default".into(),
        policy: policy.into(),
        bypass_policy_lockout_safety_check: bypass,
    })
    .await
    .map(drop)
}

async fn get_key_policy(kms: &mut Kms, key_id: &str) -> String {
    kms.get_key_policy(pb::GetKeyPolicyRequest {
        key_id: key_id.into(),
        policy_name: "default".into(),
    })
    .await
    .expect("get key policy")
    .into_inner()
    .policy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_policy_without_delegation_restricts_identity_policies() {
    let dir = tempfile::tempdir().unwrap();
    let app = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#;
    let server = server(dir.path(), &[("app", app)]);
    let (_, mut admin) = as_principal(&server, "admin").await;
    let (_, mut app) = as_principal(&server, "app").await;
    let key = create_key(&mut admin).await;
    let blob = encrypt(&mut admin, &key, &[]).await;
    // No key policy of its own: the default one delegates to identity policies.
    assert_eq!(decrypt(&mut app, &blob).await.unwrap(), b"payload");

    put_key_policy(&mut admin, &key, &key_policy(&[ADMIN_OWNS]), false)
        .await
        .expect("a policy that keeps its author");
    denied(decrypt(&mut app, &blob).await);

    put_key_policy(
        &mut admin,
        &key,
        &key_policy(&[ADMIN_OWNS, DELEGATE]),
        false,
    )
    .await
    .expect("the delegation statement parses");
    assert_eq!(decrypt(&mut app, &blob).await.unwrap(), b"payload");

    let names_app = r#"{"Effect":"Allow","Principal":{"AWS":"keyward:principal/app"},"Action":"kms:Decrypt","Resource":"*"}"#;
    put_key_policy(
        &mut admin,
        &key,
        &key_policy(&[ADMIN_OWNS, names_app]),
        false,
    )
    .await
    .unwrap();
    assert_eq!(decrypt(&mut app, &blob).await.unwrap(), b"payload");

    // What GetKeyPolicy shows for a key without a policy of its own is the delegation.
    let fresh = create_key(&mut admin).await;
    assert!(
        get_key_policy(&mut admin, &fresh)
            .await
            .contains(r#""AWS":"arn:keyward:iam::000000000000:root""#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_key_policy_refuses_to_lock_out_its_caller_unless_bypassed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), &[]);
    let (_, mut admin) = as_principal(&server, "admin").await;
    let key = create_key(&mut admin).await;
    let kept = key_policy(&[ADMIN_OWNS]);
    put_key_policy(&mut admin, &key, &kept, false)
        .await
        .unwrap();

    let names_app = key_policy(&[
        r#"{"Effect":"Allow","Principal":{"AWS":"keyward:principal/app"},"Action":"kms:*","Resource":"*"}"#,
    ]);
    assert_error(
        &put_key_policy(&mut admin, &key, &names_app, false)
            .await
            .unwrap_err(),
        Code::InvalidArgument,
        "MalformedPolicyDocumentException",
    );
    assert_eq!(get_key_policy(&mut admin, &key).await, kept);

    put_key_policy(&mut admin, &key, &names_app, true)
        .await
        .expect("bypass_policy_lockout_safety_check puts it anyway");
    denied(put_key_policy(&mut admin, &key, &kept, true).await);
}
