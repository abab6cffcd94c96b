//! Policy decisions the security review found too lax, on real servers with bearer tokens:
//! ReEncrypt's destination context, alias names as resources, BatchGetSecretValue's per-secret
//! conditions, and key policies that can restrict use (delegation to identity policies, the
//! lockout check).

mod common;

use common::{Server, assert_error};
use keyward::api::pb::{
    self, key_management_service_client::KeyManagementServiceClient,
    secrets_manager_service_client::SecretsManagerServiceClient,
};
use keyward::cli::client::{Conn, Connect, connect};
use keyward::crypto::{hex, sha256};
use tonic::Code;

type Sm = SecretsManagerServiceClient<Conn>;
type Kms = KeyManagementServiceClient<Conn>;

const ADMIN_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

fn token_entry(principal: &str) -> String {
    format!(
        "[[auth.tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{}\"\n",
        hex::encode(&sha256(format!("token-{principal}").as_bytes()))
    )
}

fn policy(name: &str, principal: &str, document: &str) -> String {
    format!(
        "[[auth.policies]]\nname = \"{name}\"\nprincipals = [\"{principal}\"]\ndocument = '''{document}'''\n"
    )
}

/// A server with an `admin` allowed everything and one more principal per `(name, policy)`.
fn server(dir: &std::path::Path, principals: &[(&str, &str)]) -> Server {
    let mut config = format!("[auth]\n{}", token_entry("admin"));
    for (name, _) in principals {
        config.push_str(&token_entry(name));
    }
    config.push_str(&policy("admin-all", "admin", ADMIN_ALL));
    for (name, document) in principals {
        config.push_str(&policy(name, name, document));
    }
    Server::with_config(&dir.join("data"), &config)
}

async fn as_principal(server: &Server, principal: &str) -> (Sm, Kms) {
    let mut to = Connect::plain(&server.endpoint);
    to.token = Some(format!("token-{principal}"));
    let conn = connect(&to).await.expect("connect");
    (
        SecretsManagerServiceClient::new(conn.clone()),
        KeyManagementServiceClient::new(conn),
    )
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
