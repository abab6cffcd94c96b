//! Code written for AWS runs unchanged: what AWS clients rely on that Keyward once did
//! differently, each checked with a real client (the AWS SDK for Rust) or on the wire.

mod common;

use common::Server;
use common::aws::{now, post, signed};
use keyward::aws::signing::{DEVELOPMENT_ACCESS_KEY_ID, DEVELOPMENT_SECRET_KEY};

const DEV: (&str, &str) = (DEVELOPMENT_ACCESS_KEY_ID, DEVELOPMENT_SECRET_KEY);

/// An AWS JSON 1.1 call on the wire: (HTTP status, response document).
fn call(server: &Server, target: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let body = body.to_string().into_bytes();
    let headers = signed(server, target, &body, DEV, "local", now());
    post(server, &headers, &body)
}

fn secrets_client(server: &Server) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager as sdk;
    let config = sdk::Config::builder()
        .behavior_version_latest()
        .endpoint_url(server.aws.as_deref().expect("AWS endpoint"))
        .region(sdk::config::Region::new("local"))
        .credentials_provider(sdk::config::Credentials::new(
            DEVELOPMENT_ACCESS_KEY_ID,
            DEVELOPMENT_SECRET_KEY,
            None,
            None,
            "test",
        ))
        .build();
    sdk::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_lists_are_members_of_the_response_not_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));

    let (status, listed) = call(&server, "secretsmanager.ListSecrets", serde_json::json!({}));
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["SecretList"], serde_json::json!([]), "{listed}");

    let (status, batch) = call(
        &server,
        "secretsmanager.BatchGetSecretValue",
        serde_json::json!({"Filters": [{"Key": "name", "Values": ["nothing-here"]}]}),
    );
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["SecretValues"], serde_json::json!([]), "{batch}");
    assert_eq!(batch["Errors"], serde_json::json!([]), "{batch}");

    let (_, created) = call(&server, "TrentService.CreateKey", serde_json::json!({}));
    let key = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let (status, rotations) = call(
        &server,
        "TrentService.ListKeyRotations",
        serde_json::json!({"KeyId": key}),
    );
    assert_eq!(status, 200, "{rotations}");
    assert_eq!(rotations["Rotations"], serde_json::json!([]), "{rotations}");
    assert_eq!(rotations["Truncated"], false, "{rotations}");
    let (status, aliases) = call(
        &server,
        "TrentService.ListAliases",
        serde_json::json!({"KeyId": key}),
    );
    assert_eq!(status, 200, "{aliases}");
    assert_eq!(aliases["Aliases"], serde_json::json!([]), "{aliases}");
    // Members that are empty strings or absent options stay out, as AWS leaves them out.
    assert!(listed.get("NextToken").is_none(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_id_is_an_exact_name_then_a_full_arn_then_a_partial_arn() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let sm = secrets_client(&server);
    // Names that end in a hyphen and six characters, beside the name they would shorten to.
    let long = sm
        .create_secret()
        .name("my-app-config")
        .secret_string("config")
        .send()
        .await
        .unwrap();
    let short = sm
        .create_secret()
        .name("my-app")
        .secret_string("app")
        .send()
        .await
        .unwrap();
    let value = |id: String| {
        let sm = sm.clone();
        async move {
            sm.get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map(|v| v.secret_string().unwrap_or_default().to_owned())
        }
    };
    assert_eq!(value("my-app-config".into()).await.unwrap(), "config");
    assert_eq!(value("my-app".into()).await.unwrap(), "app");
    let long_arn = long.arn().unwrap().to_owned();
    let short_arn = short.arn().unwrap().to_owned();
    assert_eq!(value(long_arn.clone()).await.unwrap(), "config");
    assert_eq!(value(short_arn.clone()).await.unwrap(), "app");
    // Partial ARNs: the ARN without its random suffix.
    let partial = |arn: &str| arn[..arn.len() - 7].to_owned();
    assert_eq!(value(partial(&long_arn)).await.unwrap(), "config");
    assert_eq!(value(partial(&short_arn)).await.unwrap(), "app");
    // A full ARN with another suffix names nothing.
    let wrong = format!("{}-ZZZZZZ", partial(&long_arn));
    let err = value(wrong).await.unwrap_err();
    assert_eq!(
        aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&err),
        Some("ResourceNotFoundException")
    );
}
