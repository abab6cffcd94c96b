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
    sdk_client!(aws_sdk_secretsmanager, server)
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
    // DescribeKey's members AWS always returns, empty or false as they may be.
    let (status, described) = call(
        &server,
        "TrentService.DescribeKey",
        serde_json::json!({"KeyId": key}),
    );
    assert_eq!(status, 200, "{described}");
    let metadata = &described["KeyMetadata"];
    assert_eq!(metadata["AWSAccountId"], "000000000000", "{metadata}");
    assert_eq!(metadata["Description"], "", "{metadata}");
    assert_eq!(metadata["MultiRegion"], false, "{metadata}");
    assert_eq!(
        metadata["CustomerMasterKeySpec"], "SYMMETRIC_DEFAULT",
        "{metadata}"
    );
    assert_eq!(metadata["KeySpec"], "SYMMETRIC_DEFAULT", "{metadata}");
    assert_eq!(metadata["KeyManager"], "CUSTOMER", "{metadata}");
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

/// The code and message of a failed SDK call.
fn failure<E: aws_sdk_secretsmanager::error::ProvideErrorMetadata>(err: E) -> (String, String) {
    (
        err.code().unwrap_or("none").to_owned(),
        err.message().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_codes_and_messages_are_the_ones_aws_documents() {
    use aws_sdk_secretsmanager::primitives::Blob;
    use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, ReplicaRegionType};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let sm = secrets_client(&server);
    sm.create_secret()
        .name("db")
        .secret_string("v1")
        .client_request_token("t".repeat(32))
        .send()
        .await
        .unwrap();

    // An unknown filter key: ValidationException.
    let err = sm
        .list_secrets()
        .filters(
            Filter::builder()
                .key(FilterNameStringType::from("bogus"))
                .values("x")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(err.into_service_error()),
        (
            "ValidationException".to_owned(),
            "1 validation error detected: Value 'bogus' at 'filters.1.member.key' failed to \
             satisfy constraint: Member must satisfy enum value set: [all, name, tag-key, \
             description, tag-value]"
                .to_owned()
        )
    );

    // PutSecretValue with neither value or with both: InvalidRequestException.
    let neither = sm
        .put_secret_value()
        .secret_id("db")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(neither.into_service_error()).0,
        "InvalidRequestException"
    );
    let both = sm
        .put_secret_value()
        .secret_id("db")
        .secret_string("s")
        .secret_binary(Blob::new(b"b".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(both.into_service_error()).0,
        "InvalidRequestException"
    );

    // A token already used, with another value: AWS's words.
    let reused = sm
        .put_secret_value()
        .secret_id("db")
        .secret_string("another")
        .client_request_token("t".repeat(32))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(reused.into_service_error()),
        (
            "ResourceExistsException".to_owned(),
            "You can't modify an existing version, you can only create a new version.".to_owned()
        )
    );
    let exists = sm
        .create_secret()
        .name("db")
        .secret_string("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(exists.into_service_error()),
        (
            "ResourceExistsException".to_owned(),
            "The operation failed because the secret db already exists.".to_owned()
        )
    );

    // Unknown secrets: ResourceNotFoundException with AWS's message, before anything else
    // (a resource policy is not looked at).
    let missing = sm
        .get_secret_value()
        .secret_id("nothing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(missing.into_service_error()),
        (
            "ResourceNotFoundException".to_owned(),
            "Secrets Manager can't find the specified secret.".to_owned()
        )
    );
    let policy = sm
        .get_resource_policy()
        .secret_id("nothing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(policy.into_service_error()).0,
        "ResourceNotFoundException"
    );
    let version = sm
        .get_secret_value()
        .secret_id("db")
        .version_stage("NOPE")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(version.into_service_error()),
        (
            "ResourceNotFoundException".to_owned(),
            "Secrets Manager can't find the specified secret value for staging label: NOPE"
                .to_owned()
        )
    );

    // Replicating to the site's own region: InvalidParameterException, replication configured
    // or not.
    let own = sm
        .replicate_secret_to_regions()
        .secret_id("db")
        .add_replica_regions(ReplicaRegionType::builder().region("local").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        failure(own.into_service_error()).0,
        "InvalidParameterException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arns_are_written_in_the_configured_partition_and_read_in_either() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_config(&dir.path().join("data"), "arn_partition = \"aws\"\n");
    let sm = secrets_client(&server);
    let created = sm
        .create_secret()
        .name("svc")
        .secret_string("v")
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_owned();
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");
    let keyward_arn = arn.replacen("arn:aws:", "arn:keyward:", 1);
    for id in [
        arn.as_str(),
        keyward_arn.as_str(),
        &keyward_arn[..keyward_arn.len() - 7],
    ] {
        let got = sm.get_secret_value().secret_id(id).send().await.unwrap();
        assert_eq!(got.secret_string(), Some("v"), "{id}");
        assert_eq!(got.arn(), Some(arn.as_str()));
    }

    let (_, key) = call(&server, "TrentService.CreateKey", serde_json::json!({}));
    let key_arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    assert!(key_arn.starts_with("arn:aws:kms:"), "{key_arn}");
    let other = key_arn.replacen("arn:aws:", "arn:keyward:", 1);
    let (status, described) = call(
        &server,
        "TrentService.DescribeKey",
        serde_json::json!({"KeyId": other}),
    );
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["KeyMetadata"]["Arn"], key_arn.as_str());
    // Not a partition Keyward answers to.
    let (status, refused) = call(
        &server,
        "TrentService.DescribeKey",
        serde_json::json!({"KeyId": key_arn.replacen("arn:aws:", "arn:aws-cn:", 1)}),
    );
    assert_eq!(status, 400, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_tags_descriptions_alias_updates_and_policy_names_through_the_sdk() {
    use aws_sdk_kms as sdk;
    use aws_sdk_kms::types::Tag;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let kms = sdk_client!(aws_sdk_kms, server);
    let key = |created: sdk::operation::create_key::CreateKeyOutput| {
        created.key_metadata().unwrap().key_id().to_owned()
    };
    let a = key(kms.create_key().send().await.unwrap());
    let b = key(kms.create_key().send().await.unwrap());
    let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().unwrap();

    // No tags: an empty list, present.
    let (_, untagged) = call(
        &server,
        "TrentService.ListResourceTags",
        serde_json::json!({"KeyId": a}),
    );
    assert_eq!(untagged["Tags"], serde_json::json!([]), "{untagged}");
    assert_eq!(untagged["Truncated"], false, "{untagged}");

    kms.tag_resource()
        .key_id(&a)
        .tags(tag("team", "payments"))
        .tags(tag("env", "dev"))
        .send()
        .await
        .unwrap();
    kms.tag_resource()
        .key_id(&a)
        .tags(tag("env", "prod"))
        .send()
        .await
        .unwrap();
    let tags = |out: sdk::operation::list_resource_tags::ListResourceTagsOutput| {
        out.tags()
            .iter()
            .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
            .collect::<Vec<_>>()
    };
    let listed = tags(kms.list_resource_tags().key_id(&a).send().await.unwrap());
    assert_eq!(
        listed,
        [
            ("team".into(), "payments".into()),
            ("env".into(), "prod".into())
        ]
    );
    // A page of one, then the rest.
    let first = kms
        .list_resource_tags()
        .key_id(&a)
        .limit(1)
        .send()
        .await
        .unwrap();
    assert!(first.truncated());
    let marker = first.next_marker().unwrap().to_owned();
    let rest = kms
        .list_resource_tags()
        .key_id(&a)
        .marker(marker)
        .send()
        .await
        .unwrap();
    assert_eq!(tags(rest), [("env".into(), "prod".into())]);
    kms.untag_resource()
        .key_id(&a)
        .tag_keys("team")
        .tag_keys("not-there")
        .send()
        .await
        .unwrap();
    let listed = tags(kms.list_resource_tags().key_id(&a).send().await.unwrap());
    assert_eq!(listed, [("env".into(), "prod".into())]);
    let long = kms
        .untag_resource()
        .key_id(&a)
        .tag_keys("k".repeat(129))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        sdk::error::ProvideErrorMetadata::code(&long),
        Some("ValidationException")
    );

    kms.update_key_description()
        .key_id(&a)
        .description("payments key")
        .send()
        .await
        .unwrap();
    let described = kms.describe_key().key_id(&a).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().description(),
        Some("payments key")
    );

    // An alias moved from one key to another: encryptions through it use the new key.
    kms.create_alias()
        .alias_name("alias/payments")
        .target_key_id(&a)
        .send()
        .await
        .unwrap();
    kms.update_alias()
        .alias_name("alias/payments")
        .target_key_id(&b)
        .send()
        .await
        .unwrap();
    let encrypted = kms
        .encrypt()
        .key_id("alias/payments")
        .plaintext(sdk::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    assert!(encrypted.key_id().unwrap().ends_with(&b), "{encrypted:?}");
    let missing = kms
        .update_alias()
        .alias_name("alias/nothing")
        .target_key_id(&b)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        sdk::error::ProvideErrorMetadata::code(&missing),
        Some("NotFoundException")
    );

    let policies = kms.list_key_policies().key_id(&a).send().await.unwrap();
    assert_eq!(policies.policy_names(), ["default"]);
    assert!(!policies.truncated());
}

/// A program from the venv `softhsm/run-tests` makes (the aws CLI, its Python).
fn venv_tool(variable: &str, name: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the suite with softhsm/run-tests, which installs {name}")
    })
}

fn run(program: &str, args: &[&str]) -> String {
    let out = common::aws::tool(program, DEV)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_clis_query_and_table_output_on_list_operations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let aws = venv_tool("KEYWARD_AWS_CLI", "the aws CLI");
    let endpoint = server.aws.clone().expect("AWS endpoint");
    let cli = |args: &[&str]| {
        let mut all = vec!["--endpoint-url", endpoint.as_str()];
        all.extend_from_slice(args);
        run(&aws, &all)
    };
    // Empty: the query finds an empty list, not null.
    let none = cli(&[
        "secretsmanager",
        "list-secrets",
        "--query",
        "SecretList[].Name",
        "--output",
        "json",
    ]);
    assert_eq!(none.trim(), "[]");
    for name in ["app/db", "app/api"] {
        cli(&[
            "secretsmanager",
            "create-secret",
            "--name",
            name,
            "--secret-string",
            "v",
        ]);
    }
    let names = cli(&[
        "secretsmanager",
        "list-secrets",
        "--query",
        "sort(SecretList[].Name)",
        "--output",
        "text",
    ]);
    assert_eq!(
        names.split_whitespace().collect::<Vec<_>>(),
        ["app/api", "app/db"]
    );
    let table = cli(&["secretsmanager", "list-secrets", "--output", "table"]);
    assert!(
        table.contains("ListSecrets") && table.contains("app/db"),
        "{table}"
    );
    let keys = cli(&[
        "kms",
        "list-keys",
        "--query",
        "length(Keys)",
        "--output",
        "text",
    ]);
    assert!(keys.trim().parse::<u32>().is_ok(), "{keys}");
    let table = cli(&["kms", "list-aliases", "--output", "table"]);
    assert!(table.contains("ListAliases"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awss_python_caching_client_reads_secrets_and_their_stages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let sm = secrets_client(&server);
    sm.create_secret()
        .name("app/db")
        .secret_string("first")
        .send()
        .await
        .unwrap();
    sm.put_secret_value()
        .secret_id("app/db")
        .secret_string("second")
        .send()
        .await
        .unwrap();
    let python = venv_tool("KEYWARD_AWS_PYTHON", "aws-secretsmanager-caching");
    const SCRIPT: &str = r#"
import sys
import botocore.session
from aws_secretsmanager_caching import SecretCache, SecretCacheConfig
client = botocore.session.get_session().create_client(
    "secretsmanager", region_name="local", endpoint_url=sys.argv[1])
cache = SecretCache(config=SecretCacheConfig(), client=client)
print(cache.get_secret_string("app/db"))
print(cache.get_secret_string("app/db", "AWSPREVIOUS"))
print(cache.get_secret_string("app/db"))
"#;
    let endpoint = server.aws.clone().expect("AWS endpoint");
    let out = run(&python, &["-c", SCRIPT, &endpoint]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["second", "first", "second"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_kms_members_refuse_garbage_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let (_, created) = call(
        &server,
        "TrentService.CreateKey",
        serde_json::json!({"Description": "kept", "Tags": [{"TagKey": "k", "TagValue": "v"}]}),
    );
    let key = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let refused = |target: &str, body: serde_json::Value, code: &str| {
        let (status, answer) = call(&server, target, body.clone());
        assert_eq!(status, 400, "{target} {body}: {answer}");
        assert_eq!(answer["__type"], code, "{target} {body}: {answer}");
    };
    let tags = |n: usize, key_len: usize, value_len: usize| {
        (0..n)
            .map(|i| serde_json::json!({"TagKey": format!("{i}{}", "k".repeat(key_len.saturating_sub(1))), "TagValue": "v".repeat(value_len)}))
            .collect::<Vec<_>>()
    };
    let empty_key = vec![serde_json::json!({"TagKey": "", "TagValue": "v"})];
    for bad in [tags(1, 129, 1), tags(1, 1, 257), tags(51, 2, 1), empty_key] {
        refused(
            "TrentService.TagResource",
            serde_json::json!({"KeyId": key, "Tags": bad}),
            "ValidationException",
        );
    }
    // 50 tags at once is fine; one more on top of the one the key has is not.
    refused(
        "TrentService.TagResource",
        serde_json::json!({"KeyId": key, "Tags": tags(50, 3, 256)}),
        "ValidationException",
    );
    refused(
        "TrentService.TagResource",
        serde_json::json!({"KeyId": "not-a-key", "Tags": tags(1, 1, 1)}),
        "ValidationException",
    );
    refused(
        "TrentService.UntagResource",
        serde_json::json!({"KeyId": key, "TagKeys": []}),
        "ValidationException",
    );
    refused(
        "TrentService.UpdateKeyDescription",
        serde_json::json!({"KeyId": key, "Description": "d".repeat(8193)}),
        "ValidationException",
    );
    for marker in ["garbage", "-1", "99999999999999999999999"] {
        refused(
            "TrentService.ListResourceTags",
            serde_json::json!({"KeyId": key, "Marker": marker}),
            "InvalidMarkerException",
        );
    }
    for limit in [0, 51] {
        refused(
            "TrentService.ListResourceTags",
            serde_json::json!({"KeyId": key, "Limit": limit}),
            "ValidationException",
        );
    }
    call(
        &server,
        "TrentService.CreateAlias",
        serde_json::json!({"AliasName": "alias/kept", "TargetKeyId": key}),
    );
    refused(
        "TrentService.UpdateAlias",
        serde_json::json!({"AliasName": "kept", "TargetKeyId": key}),
        "InvalidAliasNameException",
    );
    refused(
        "TrentService.UpdateAlias",
        serde_json::json!({"AliasName": "alias/kept", "TargetKeyId": "alias/kept"}),
        "ValidationException",
    );
    // Nothing changed.
    let (_, described) = call(
        &server,
        "TrentService.DescribeKey",
        serde_json::json!({"KeyId": key}),
    );
    assert_eq!(described["KeyMetadata"]["Description"], "kept");
    let (_, listed) = call(
        &server,
        "TrentService.ListResourceTags",
        serde_json::json!({"KeyId": key}),
    );
    assert_eq!(
        listed["Tags"],
        serde_json::json!([{"TagKey": "k", "TagValue": "v"}])
    );
    let (_, aliases) = call(
        &server,
        "TrentService.ListAliases",
        serde_json::json!({"KeyId": key}),
    );
    assert_eq!(
        aliases["Aliases"][0]["AliasName"], "alias/kept",
        "{aliases}"
    );
}
