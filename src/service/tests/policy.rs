//! Policy decisions on the documents the services store and hand out. The policy engine's own
//! tests (`policy::evaluate`) cover the evaluation rules; these cover what they miss: the
//! default key policy as GetKeyPolicy returns it, and policies as PutKeyPolicy and
//! PutResourcePolicy accept or refuse them.

use super::*;
use crate::policy::{Decision, DenyReason, Policy, PolicyKind, Request, decide, decide_key};
use crate::service::KmsError;

const APP: &str = "keyward:principal/app";
const OTHER: &str = "keyward:principal/other";

fn root() -> String {
    format!("arn:keyward:iam::{ACCOUNT}:root")
}

fn request<'a>(principal: &'a str, action: &'a str, resource: &'a str) -> Request<'a> {
    Request {
        principal,
        action,
        resource,
        conditions: &[],
    }
}

async fn key_id(f: &Fixture) -> String {
    f.new_key().await.key_id
}

#[tokio::test]
async fn the_default_key_policy_delegates_to_identity_policies_only() {
    let f = services().await;
    let id = key_id(&f).await;
    let arn = f.kms.arns().key(&id);
    let text = f.kms.get_key_policy(&id, "").await.unwrap();
    let policy = Policy::parse(&text, PolicyKind::Key).unwrap();
    let may_decrypt = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}]}"#,
        PolicyKind::Identity,
    )
    .unwrap();
    let decrypt = request(APP, "kms:Decrypt", &arn);
    assert_eq!(
        decide_key(
            &[("app", &may_decrypt)],
            ("default", &policy),
            &root(),
            &decrypt
        ),
        Decision::Allow
    );
    // Delegation alone grants nothing, and reaches no further than the identity policy.
    assert_eq!(
        decide_key(&[], ("default", &policy), &root(), &decrypt),
        Decision::Deny(DenyReason::NoAllow)
    );
    let encrypt = request(APP, "kms:Encrypt", &arn);
    assert_eq!(
        decide_key(
            &[("app", &may_decrypt)],
            ("default", &policy),
            &root(),
            &encrypt
        ),
        Decision::Deny(DenyReason::NoAllow)
    );
    let err = f.kms.get_key_policy(&id, "custom").await.err();
    assert!(matches!(err, Some(KmsError::NotFound(_))), "{err:?}");
}

#[tokio::test]
async fn a_put_key_policy_is_what_decides_and_other_accounts_are_refused() {
    let f = services().await;
    let id = key_id(&f).await;
    let arn = f.kms.arns().key(&id);
    let own = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{APP}"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    f.kms
        .put_key_policy(&id, "default", own.clone(), None)
        .await
        .unwrap();
    let stored = f.kms.get_key_policy(&id, "default").await.unwrap();
    assert_eq!(stored, own);
    let policy = Policy::parse(&stored, PolicyKind::Key).unwrap();
    assert_eq!(
        decide_key(
            &[],
            ("default", &policy),
            &root(),
            &request(APP, "kms:Encrypt", &arn)
        ),
        Decision::Allow
    );
    assert_eq!(
        decide_key(
            &[],
            ("default", &policy),
            &root(),
            &request(OTHER, "kms:Encrypt", &arn)
        ),
        Decision::Deny(DenyReason::NoAllow)
    );

    let foreign = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:keyward:iam::111111111111:root"},"Action":"kms:*","Resource":"*"}]}"#;
    let err = f
        .kms
        .put_key_policy(&id, "default", foreign.into(), None)
        .await
        .err();
    assert!(
        matches!(&err, Some(KmsError::MalformedPolicy(m)) if *m == format!("the policy names account 111111111111; this service is account {ACCOUNT}")),
        "{err:?}"
    );
    // A policy that would lock its author out is refused unless the check is bypassed.
    let err = f
        .kms
        .put_key_policy(&id, "default", own.clone(), Some(&|_: &str| false))
        .await
        .err();
    assert!(matches!(err, Some(KmsError::MalformedPolicy(_))), "{err:?}");
    assert_eq!(f.kms.get_key_policy(&id, "").await.unwrap(), own);
}

#[tokio::test]
async fn a_secrets_resource_policy_decides_for_other_principals() {
    let f = services().await;
    f.create("s", &token("a"), "v").await;
    let arn = f.secrets.describe_secret("s").await.unwrap().arn;
    let public = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    let err = f
        .secrets
        .put_resource_policy("s", public.into(), true)
        .await
        .err();
    assert!(matches!(err, Some(SecretsError::PublicPolicy)), "{err:?}");
    let err = f
        .secrets
        .put_resource_policy("s", "{not json".into(), false)
        .await
        .err();
    assert!(
        matches!(err, Some(SecretsError::MalformedPolicy(_))),
        "{err:?}"
    );
    assert_eq!(f.secrets.get_resource_policy("s").await.unwrap().1, None);

    let grant = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{OTHER}"}},"Action":"secretsmanager:GetSecretValue","Resource":"*"}},{{"Sid":"NoDelete","Effect":"Deny","Principal":"*","Action":"secretsmanager:DeleteSecret","Resource":"*"}}]}}"#
    );
    f.secrets
        .put_resource_policy("s", grant.clone(), true)
        .await
        .unwrap();
    let (_, stored) = f.secrets.get_resource_policy("s").await.unwrap();
    let policy = Policy::parse(&stored.unwrap(), PolicyKind::Resource).unwrap();
    let get = |who| {
        decide(
            &[],
            Some(("s", &policy)),
            &request(who, "secretsmanager:GetSecretValue", &arn),
        )
    };
    assert_eq!(get(OTHER), Decision::Allow);
    assert_eq!(get(APP), Decision::Deny(DenyReason::NoAllow));
    let admin = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:*","Resource":"*"}]}"#,
        PolicyKind::Identity,
    )
    .unwrap();
    assert_eq!(
        decide(
            &[("admin", &admin)],
            Some(("s", &policy)),
            &request(APP, "secretsmanager:DeleteSecret", &arn)
        ),
        Decision::Deny(DenyReason::Explicit {
            policy: "s".into(),
            sid: Some("NoDelete".into())
        })
    );
}
