//! Who may do what, on real servers: mutual TLS with certificates made here, bearer tokens,
//! identity policies from the configuration, resource and key policies, conditions on the
//! encryption context and version stage, and the refusals' codes. Denied requests must not
//! reach the root of trust.

mod common;

use common::auth::{policy, token_entry};
use common::pki::{Ca, Pair};
use common::{Server, assert_error};
use keyward::api::pb::{
    self, key_management_service_client::KeyManagementServiceClient,
    secrets_manager_service_client::SecretsManagerServiceClient,
};
use keyward::cli::client::{Conn, Connect, connect};
use tonic::Code;

type Sm = SecretsManagerServiceClient<Conn>;
type Kms = KeyManagementServiceClient<Conn>;

const SECRET_ARN: &str = "arn:keyward:secretsmanager:local:000000000000:secret";

async fn as_principal(server: &Server, principal: &str) -> (Sm, Kms) {
    common::auth::clients(server, principal).await
}

async fn get(sm: &mut Sm, id: &str, stage: &str) -> Result<String, tonic::Status> {
    sm.get_secret_value(pb::GetSecretValueRequest {
        secret_id: id.into(),
        version_stage: stage.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().secret_string.unwrap_or_default())
}

async fn create(sm: &mut Sm, name: &str, value: &str) {
    sm.create_secret(pb::CreateSecretRequest {
        name: name.into(),
        secret_string: Some(value.into()),
        ..Default::default()
    })
    .await
    .expect("create");
}

async fn hardware_calls(server: &Server) -> f64 {
    let text = keyward::metrics::fetch(server.metrics.as_deref().expect("metrics"))
        .await
        .expect("scrape");
    keyward::metrics::value_of(&text, "keyward_root_of_trust_calls_total").expect("calls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_matrix_decides_before_any_hardware_call() {
    let dir = tempfile::tempdir().unwrap();
    let app_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
        {{"Sid":"ReadApp","Effect":"Allow","Action":["secretsmanager:GetSecretValue","secretsmanager:Describe*"],"Resource":"{SECRET_ARN}:app/*"}},
        {{"Sid":"NotLocked","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"{SECRET_ARN}:app/locked*"}},
        {{"Sid":"CurrentOnly","Effect":"Deny","Action":"secretsmanager:GetSecretValue","Resource":"*","Condition":{{"StringNotEquals":{{"secretsmanager:VersionStage":"AWSCURRENT"}}}}}},
        {{"Sid":"Billing","Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*","Condition":{{"StringEquals":{{"kms:EncryptionContext:app":"billing"}}}}}}
        ]}}"#
    );
    let config = format!(
        "metrics_listen = \"127.0.0.1:0\"\n[audit]\ncheckpoint_interval_secs = 3600\n[auth]\n{}{}{}{}{}",
        token_entry("admin"),
        token_entry("app"),
        token_entry("other"),
        policy(
            "admin-all",
            "\"admin\"",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#
        ),
        policy("app", "\"app\"", &app_policy),
    );
    let server = Server::with_config(&dir.path().join("data"), &config);
    let (mut admin, mut admin_kms) = as_principal(&server, "admin").await;
    let (mut app, mut app_kms) = as_principal(&server, "app").await;
    let (mut other, _) = as_principal(&server, "other").await;
    create(&mut admin, "app/db", "app-db-value").await;
    create(&mut admin, "app/locked-key", "locked-value").await;
    create(&mut admin, "prod/db", "prod-db-value").await;
    let key = admin_kms
        .create_key(pb::CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;

    // Allowed by the identity policy; a wildcard action (Describe*) too.
    assert_eq!(get(&mut app, "app/db", "").await.unwrap(), "app-db-value");
    app.describe_secret(pb::DescribeSecretRequest {
        secret_id: "app/db".into(),
    })
    .await
    .expect("Describe* allows DescribeSecret");

    // Everything below is refused, and none of it may reach the root of trust.
    let before = hardware_calls(&server).await;
    let denied = |r: Result<String, tonic::Status>| {
        assert_error(
            &r.unwrap_err(),
            Code::PermissionDenied,
            "AccessDeniedException",
        )
    };
    denied(get(&mut app, "prod/db", "").await); // resource outside app/*
    denied(get(&mut app, "app/locked-key", "").await); // explicit deny beats the allow
    denied(get(&mut app, "app/db", "AWSPREVIOUS").await); // condition on the stage
    denied(get(&mut app, "prod/does-not-exist", "").await); // existence is not revealed
    denied(get(&mut other, "app/db", "").await); // no policy at all
    let put = app
        .put_secret_value(pb::PutSecretValueRequest {
            secret_id: "app/db".into(),
            secret_string: Some("overwritten".into()),
            ..Default::default()
        })
        .await;
    assert_error(
        &put.unwrap_err(),
        Code::PermissionDenied,
        "AccessDeniedException",
    );
    for context in [vec![("app", "payroll")], vec![]] {
        let encrypt = app_kms
            .encrypt(pb::EncryptRequest {
                key_id: key.clone(),
                plaintext: b"x".to_vec(),
                encryption_context: common::context(&context),
                ..Default::default()
            })
            .await;
        assert_error(
            &encrypt.unwrap_err(),
            Code::PermissionDenied,
            "AccessDeniedException",
        );
    }
    assert_eq!(
        hardware_calls(&server).await,
        before,
        "a denied request reached the root of trust"
    );

    // The condition on the encryption context lets the matching request through.
    let blob = app_kms
        .encrypt(pb::EncryptRequest {
            key_id: key.clone(),
            plaintext: b"billing data".to_vec(),
            encryption_context: common::context(&[("app", "billing")]),
            ..Default::default()
        })
        .await
        .expect("context app=billing is allowed")
        .into_inner()
        .ciphertext_blob;
    let decrypted = app_kms
        .decrypt(pb::DecryptRequest {
            ciphertext_blob: blob,
            encryption_context: common::context(&[("app", "billing")]),
            ..Default::default()
        })
        .await
        .expect("decrypt")
        .into_inner()
        .plaintext;
    assert_eq!(decrypted, b"billing data");

    // A resource policy grants a second principal one secret, nothing else.
    let grant = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"keyward:principal/other"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#.to_owned();
    admin
        .put_resource_policy(pb::PutResourcePolicyRequest {
            secret_id: "prod/db".into(),
            resource_policy: grant.clone(),
            block_public_policy: Some(true),
        })
        .await
        .expect("put resource policy");
    assert_eq!(
        get(&mut other, "prod/db", "").await.unwrap(),
        "prod-db-value"
    );
    denied(get(&mut other, "app/db", "").await);
    denied(get(&mut app, "prod/db", "").await);
    let stored = admin
        .get_resource_policy(pb::GetResourcePolicyRequest {
            secret_id: "prod/db".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.resource_policy.as_deref(), Some(grant.as_str()));

    // An explicit deny in a resource policy beats the identity policy's allow.
    admin
        .put_resource_policy(pb::PutResourcePolicyRequest {
            secret_id: "app/db".into(),
            resource_policy: r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"keyward:principal/app"},"Action":"secretsmanager:*","Resource":"*"}]}"#.into(),
            block_public_policy: None,
        })
        .await
        .unwrap();
    denied(get(&mut app, "app/db", "").await);
    admin
        .delete_resource_policy(pb::DeleteResourcePolicyRequest {
            secret_id: "app/db".into(),
        })
        .await
        .unwrap();
    assert_eq!(get(&mut app, "app/db", "").await.unwrap(), "app-db-value");

    // Public policies are refused when asked; malformed ones always.
    let public = admin
        .put_resource_policy(pb::PutResourcePolicyRequest {
            secret_id: "prod/db".into(),
            resource_policy: r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#.into(),
            block_public_policy: Some(true),
        })
        .await;
    assert_error(
        &public.unwrap_err(),
        Code::InvalidArgument,
        "PublicPolicyException",
    );
    let malformed = admin
        .put_resource_policy(pb::PutResourcePolicyRequest {
            secret_id: "prod/db".into(),
            resource_policy:
                r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue"}]}"#
                    .into(),
            block_public_policy: None,
        })
        .await;
    assert_error(
        &malformed.unwrap_err(),
        Code::InvalidArgument,
        "MalformedPolicyDocumentException",
    );
    let validation = admin
        .validate_resource_policy(pb::ValidateResourcePolicyRequest {
            secret_id: None,
            resource_policy: r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"x:Y","Resource":"*"}]}"#.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!validation.policy_validation_passed);
    assert!(
        validation.validation_errors[0]
            .error_message
            .contains("Effect"),
        "{validation:?}"
    );

    // A key policy grants Decrypt on one key to a principal with no identity policy.
    let blob = admin_kms
        .encrypt(pb::EncryptRequest {
            key_id: key.clone(),
            plaintext: b"for other".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob;
    let (_, mut other_kms) = as_principal(&server, "other").await;
    let decrypt = |kms: &mut Kms, blob: Vec<u8>| {
        let mut kms = kms.clone();
        async move {
            kms.decrypt(pb::DecryptRequest {
                ciphertext_blob: blob,
                ..Default::default()
            })
            .await
        }
    };
    assert_error(
        &decrypt(&mut other_kms, blob.clone()).await.unwrap_err(),
        Code::PermissionDenied,
        "AccessDeniedException",
    );
    admin_kms
        .put_key_policy(pb::PutKeyPolicyRequest {
            key_id: key.clone(),
            policy_name: "default".into(),
            policy: r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"keyward:principal/other"},"Action":"kms:Decrypt","Resource":"*"}]}"#.into(),
            bypass_policy_lockout_safety_check: true,
        })
        .await
        .expect("put key policy");
    assert_eq!(
        decrypt(&mut other_kms, blob)
            .await
            .unwrap()
            .into_inner()
            .plaintext,
        b"for other"
    );

    // Denied and unauthenticated requests are counted.
    let text = keyward::metrics::fetch(server.metrics.as_deref().unwrap())
        .await
        .unwrap();
    let value = |name| keyward::metrics::value_of(&text, name).unwrap_or(-1.0);
    assert!(value("keyward_requests_denied_total") >= 11.0, "{text}");
    assert!(value("keyward_requests_allowed_total") >= 10.0, "{text}");
    assert!(value("keyward_audit_records_total") >= 30.0, "{text}");
    assert_eq!(value("keyward_audit_write_failures_total"), 0.0, "{text}");
    assert!(value("keyward_root_of_trust_sessions") >= 1.0, "{text}");
    assert_eq!(
        value("keyward_root_of_trust_calls_in_flight"),
        0.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_valid_credentials_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[auth]\n{}{}",
        token_entry("app"),
        policy(
            "app",
            "\"app\"",
            r#"{"Statement":[{"Effect":"Allow","Action":"secretsmanager:ListSecrets","Resource":"*"}]}"#
        )
    );
    let server = Server::with_config(&dir.path().join("data"), &config);
    let list = |to: Connect| async move {
        let mut sm = SecretsManagerServiceClient::new(connect(&to).await.expect("connect"));
        sm.list_secrets(pb::ListSecretsRequest::default()).await
    };
    let mut good = Connect::plain(&server.endpoint);
    good.token = Some("token-app".into());
    list(good).await.expect("a valid token works");
    let none = Connect::plain(&server.endpoint);
    assert_error(
        &list(none).await.unwrap_err(),
        Code::Unauthenticated,
        "UnrecognizedClientException",
    );
    let mut wrong = Connect::plain(&server.endpoint);
    wrong.token = Some("token-guess".into());
    assert_error(
        &list(wrong).await.unwrap_err(),
        Code::Unauthenticated,
        "UnrecognizedClientException",
    );
}

fn tls_config(server_pair: &Pair, ca: &Ca) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n[auth]\n{}",
        server_pair.cert.display(),
        server_pair.key.display(),
        ca.cert.display(),
        policy(
            "app",
            "\"app.example\"",
            r#"{"Statement":[{"Effect":"Allow","Action":["secretsmanager:CreateSecret","secretsmanager:GetSecretValue"],"Resource":"*"}]}"#
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_valid_certificates_from_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = Ca::new(&pki, "keyward-test-ca");
    let rogue = Ca::new(&pki, "rogue-ca");
    let server_pair = ca.server(&pki);
    let server = Server::with_config(&dir.path().join("data"), &tls_config(&server_pair, &ca));
    let https = server.endpoint.replace("http://", "https://");
    let with = |client: Option<&Pair>| {
        let mut to = Connect::plain(&https);
        to.ca = Some(ca.cert.clone());
        if let Some(pair) = client {
            to.cert = Some(pair.cert.clone());
            to.key = Some(pair.key.clone());
        }
        to
    };
    let call = |to: Connect| async move {
        let mut sm = SecretsManagerServiceClient::new(connect(&to).await?);
        sm.create_secret(pb::CreateSecretRequest {
            name: format!("tls-{}", uuid::Uuid::new_v4()),
            secret_string: Some("v".into()),
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|s| format!("{s:?}"))
    };

    // The certificate's CN names the principal its policy is attached to.
    call(with(Some(&ca.client(&pki, "app.example"))))
        .await
        .expect("a valid client certificate works");
    let refused = [
        ("no certificate", with(None)),
        ("another CA", with(Some(&rogue.client(&pki, "app.example")))),
        (
            "expired",
            with(Some(&ca.expired_client(&pki, "app.example"))),
        ),
    ];
    for (what, to) in refused {
        assert!(call(to).await.is_err(), "{what}: accepted");
    }
    // A valid certificate for a principal no policy names: authenticated, then denied.
    let stranger = call(with(Some(&ca.client(&pki, "stranger")))).await;
    assert!(
        stranger
            .as_ref()
            .is_err_and(|e| e.contains("PermissionDenied")),
        "{stranger:?}"
    );
    // Plaintext clients get nothing from a TLS listener.
    assert!(call(Connect::plain(&server.endpoint)).await.is_err());
}

#[test]
fn plaintext_or_no_auth_on_a_network_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &str| {
        let config = dir.path().join("net.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"0.0.0.0:0\"\ndata_dir = \"{}\"\n{extra}\n[root_of_trust]\ntype = \"development\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(common::BIN)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_remove("KEYWARD_LISTEN")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let plaintext = run("[auth]\ntokens = []\n");
    assert!(
        plaintext.contains("allow_plaintext_on_network"),
        "{plaintext}"
    );
    let open = run("allow_plaintext_on_network = true\n");
    assert!(open.contains("every caller is an administrator"), "{open}");
}

/// Security finding 1, the sending side: CreateSecret with replica regions is also
/// ReplicateSecretToRegions on the secret, as in AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_with_replicas_also_needs_replicate_secret_to_regions() {
    let dir = tempfile::tempdir().unwrap();
    let create_only = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["secretsmanager:CreateSecret","secretsmanager:DescribeSecret"],"Resource":"{SECRET_ARN}:app/*"}}]}}"#
    );
    let replicating = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["secretsmanager:CreateSecret","secretsmanager:ReplicateSecretToRegions"],"Resource":"{SECRET_ARN}:app/*"}}]}}"#
    );
    let config = format!(
        "[auth]\n{}{}{}{}",
        token_entry("creator"),
        token_entry("replicator"),
        policy("creator", "\"creator\"", &create_only),
        policy("replicator", "\"replicator\"", &replicating),
    );
    let server = Server::with_config(&dir.path().join("data"), &config);
    let (mut creator, _) = as_principal(&server, "creator").await;
    let (mut replicator, _) = as_principal(&server, "replicator").await;
    let with_replica = |name: &str| pb::CreateSecretRequest {
        name: name.into(),
        secret_string: Some("v".into()),
        add_replica_regions: vec![pb::ReplicaRegionType {
            region: "site-b".into(),
            kms_key_id: String::new(),
        }],
        ..Default::default()
    };
    let refused = creator
        .create_secret(with_replica("app/replicated"))
        .await
        .unwrap_err();
    assert_error(&refused, Code::PermissionDenied, "AccessDeniedException");
    assert!(
        refused
            .message()
            .contains("secretsmanager:ReplicateSecretToRegions"),
        "{refused:?}"
    );
    let missing = creator
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "app/replicated".into(),
        })
        .await
        .unwrap_err();
    assert_error(&missing, Code::NotFound, "ResourceNotFoundException");
    // The same principal may create without replicas.
    create(&mut creator, "app/local", "v").await;
    // With both rights the gate lets it through; this server has no peers at all.
    let unknown = replicator
        .create_secret(with_replica("app/replicated"))
        .await
        .unwrap_err();
    assert_error(
        &unknown,
        Code::FailedPrecondition,
        "InvalidRequestException",
    );
}
