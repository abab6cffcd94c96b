//! Access decisions: AWS same-account evaluation over identity policies and a resource policy.

use super::document::{
    Condition, Effect, Patterns, Policy, SetQualifier, Statement, StringOp, Test,
};
use super::matching::{self, Case};

/// What is being asked. Borrowed throughout so evaluation allocates nothing (except the policy
/// name and Sid copied into an explicit deny).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Canonical caller name, e.g. `keyward:principal/app`.
    pub principal: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    /// Condition keys with their values, e.g. `("kms:encryptioncontext:app", &["billing"])`.
    /// Keys compare case-insensitively (lower-case is expected). An entry with no values counts as
    /// an absent key; a key given twice has the values of both entries.
    pub conditions: &'a [(&'a str, &'a [&'a str])],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// A Deny statement matched; `policy` is the name the caller gave that policy.
    Explicit { policy: String, sid: Option<String> },
    /// Nothing allowed the request (implicit deny).
    NoAllow,
    /// The policy attached to the resource no longer parses: nobody may use the resource until
    /// it is replaced, rather than the policy's restrictions silently vanishing.
    Unparseable { policy: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Identity,
    Resource,
}

/// AWS same-account evaluation: an explicit Deny in any policy wins; else Allow if any identity
/// policy or the resource policy allows; else implicit deny. Identity policies apply to
/// `request.principal` (the caller passes only the ones attached to it); a resource policy
/// statement applies only if its Principal matches `request.principal`.
///
/// The first matching Deny is reported, identity policies in the order given before the
/// resource policy.
pub fn decide(
    identity: &[(&str, &Policy)],
    resource: Option<(&str, &Policy)>,
    request: &Request,
) -> Decision {
    let attached = identity
        .iter()
        .map(|&(name, policy)| (name, policy, Slot::Identity));
    let on_resource = resource.map(|(name, policy)| (name, policy, Slot::Resource));
    let mut allowed = false;
    for (name, policy, slot) in attached.chain(on_resource) {
        for statement in &policy.statements {
            // Once allowed, only a Deny can change the outcome.
            if allowed && statement.effect == Effect::Allow {
                continue;
            }
            if !applies(statement, slot, request) {
                continue;
            }
            match statement.effect {
                Effect::Deny => {
                    return Decision::Deny(DenyReason::Explicit {
                        policy: name.to_owned(),
                        sid: statement.sid.clone(),
                    });
                }
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny(DenyReason::NoAllow)
    }
}

/// AWS KMS evaluation over identity policies and a key policy that restricts use: an explicit
/// Deny in any policy wins (a Deny naming the account names every principal); else Allow if a
/// key-policy Allow names the caller, or if a key-policy Allow names the account
/// (`account_root`, the delegation statement) and an identity policy allows. Without the
/// delegation, identity-policy Allows do not reach the key.
pub fn decide_key(
    identity: &[(&str, &Policy)],
    key_policy: (&str, &Policy),
    account_root: &str,
    request: &Request,
) -> Decision {
    let mut identity_allows = false;
    for &(name, policy) in identity {
        for statement in &policy.statements {
            if !applies(statement, Slot::Identity, request) {
                continue;
            }
            match statement.effect {
                Effect::Deny => return explicit_deny(name, statement),
                Effect::Allow => identity_allows = true,
            }
        }
    }
    let (name, policy) = key_policy;
    let (mut direct, mut delegated) = (false, false);
    for statement in &policy.statements {
        if !applies_to_any_principal(statement, request) {
            continue;
        }
        let names_caller = principal_applies(statement, Slot::Resource, request.principal);
        let names_account = statement
            .principals
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|p| p == account_root));
        match statement.effect {
            Effect::Deny if names_caller || names_account => {
                return explicit_deny(name, statement);
            }
            Effect::Allow if names_caller => direct = true,
            Effect::Allow if names_account => delegated = true,
            _ => {}
        }
    }
    if direct || (delegated && identity_allows) {
        Decision::Allow
    } else {
        Decision::Deny(DenyReason::NoAllow)
    }
}

fn explicit_deny(policy: &str, statement: &Statement) -> Decision {
    Decision::Deny(DenyReason::Explicit {
        policy: policy.to_owned(),
        sid: statement.sid.clone(),
    })
}

fn applies(statement: &Statement, slot: Slot, request: &Request) -> bool {
    applies_to_any_principal(statement, request)
        && principal_applies(statement, slot, request.principal)
}

fn applies_to_any_principal(statement: &Statement, request: &Request) -> bool {
    covers(&statement.actions, request.action, matching::action_matches)
        && covers(
            &statement.resources,
            request.resource,
            matching::resource_matches,
        )
        && statement
            .conditions
            .iter()
            .all(|c| condition_holds(c, request.conditions))
}

fn covers(patterns: &Patterns, value: &str, matches: fn(&str, &str) -> bool) -> bool {
    patterns.patterns.iter().any(|p| matches(p, value)) != patterns.negated
}

fn principal_applies(statement: &Statement, slot: Slot, principal: &str) -> bool {
    match (&statement.principals, slot) {
        (Some(patterns), _) => patterns
            .iter()
            .any(|p| matching::principal_matches(p, principal)),
        (None, Slot::Identity) => true,
        // An identity policy passed as the resource policy: its statements name no principal.
        // Fail closed both ways rather than let it allow everyone or deny no one.
        (None, Slot::Resource) => statement.effect == Effect::Deny,
    }
}

fn condition_holds(condition: &Condition, context: &[(&str, &[&str])]) -> bool {
    let actual = || request_values(context, &condition.key);
    let present = actual().next().is_some();
    match &condition.test {
        Test::Null {
            absent_ok,
            present_ok,
        } => {
            if present {
                *present_ok
            } else {
                *absent_ok
            }
        }
        Test::String {
            op,
            negated,
            set,
            if_exists,
            values,
        } => {
            if !present {
                return *if_exists
                    || match set {
                        SetQualifier::None => *negated,
                        SetQualifier::ForAnyValue => false,
                        SetQualifier::ForAllValues => true,
                    };
            }
            let listed = |v: &str| {
                values
                    .iter()
                    .any(|expected| string_matches(*op, expected, v))
            };
            match set {
                // Without a set qualifier a negated operator is exactly the opposite of its
                // positive form, also for multi-valued keys: StringNotEquals holds only when
                // no request value equals a listed value.
                SetQualifier::None => actual().any(listed) != *negated,
                SetQualifier::ForAnyValue => actual().any(|v| listed(v) != *negated),
                SetQualifier::ForAllValues => actual().all(|v| listed(v) != *negated),
            }
        }
    }
}

fn string_matches(op: StringOp, expected: &str, actual: &str) -> bool {
    match op {
        StringOp::Equals => expected == actual,
        StringOp::EqualsIgnoreCase => matching::eq_ignore_case(expected, actual),
        StringOp::Like => matching::wildcard_match(expected, actual, Case::Sensitive),
    }
}

fn request_values<'a>(
    context: &'a [(&'a str, &'a [&'a str])],
    key: &str,
) -> impl Iterator<Item = &'a str> {
    context
        .iter()
        .filter(move |(k, _)| matching::eq_ignore_case(k, key))
        .flat_map(|(_, values)| values.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyKind;

    const APP: &str = "keyward:principal/app";
    const BATCH: &str = "keyward:principal/batch";
    const PROD_SECRET: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db-AbCdEf";
    const DEV_SECRET: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:dev/db-AbCdEf";
    const KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/1234abcd";
    const GET: &str = "secretsmanager:GetSecretValue";
    const NO_CONTEXT: &[(&str, &[&str])] = &[];

    fn parse(kind: PolicyKind, statements: &[&str]) -> Policy {
        let body: Vec<String> = statements.iter().map(|s| format!("{{{s}}}")).collect();
        let json = format!(
            r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
            body.join(",")
        );
        Policy::parse(&json, kind).unwrap_or_else(|e| panic!("{json}: {e:?}"))
    }

    fn identity(statements: &[&str]) -> Policy {
        parse(PolicyKind::Identity, statements)
    }

    fn resource(statements: &[&str]) -> Policy {
        parse(PolicyKind::Resource, statements)
    }

    fn request<'a>(
        principal: &'a str,
        action: &'a str,
        resource: &'a str,
        conditions: &'a [(&'a str, &'a [&'a str])],
    ) -> Request<'a> {
        Request {
            principal,
            action,
            resource,
            conditions,
        }
    }

    fn decide_identity(policy: &Policy, request: &Request) -> Decision {
        decide(&[("identity", policy)], None, request)
    }

    fn allows(policy: &Policy, action: &str, resource: &str) -> bool {
        decide_identity(policy, &request(APP, action, resource, NO_CONTEXT)).is_allowed()
    }

    fn explicit(policy: &str, sid: Option<&str>) -> Decision {
        Decision::Deny(DenyReason::Explicit {
            policy: policy.to_owned(),
            sid: sid.map(str::to_owned),
        })
    }

    const NO_ALLOW: Decision = Decision::Deny(DenyReason::NoAllow);

    #[test]
    fn identity_allow_grants_matching_request() {
        let policy = identity(&[&format!(
            r#""Effect":"Allow","Action":"{GET}","Resource":"arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/*""#
        )]);
        assert_eq!(
            decide_identity(&policy, &request(APP, GET, PROD_SECRET, NO_CONTEXT)),
            Decision::Allow
        );
        assert_eq!(
            decide_identity(&policy, &request(APP, GET, DEV_SECRET, NO_CONTEXT)),
            NO_ALLOW
        );
        assert_eq!(
            decide_identity(
                &policy,
                &request(
                    APP,
                    "secretsmanager:PutSecretValue",
                    PROD_SECRET,
                    NO_CONTEXT
                )
            ),
            NO_ALLOW
        );
    }

    #[test]
    fn no_policy_is_implicit_deny() {
        assert_eq!(
            decide(&[], None, &request(APP, GET, PROD_SECRET, NO_CONTEXT)),
            NO_ALLOW
        );
    }

    #[test]
    fn deny_in_identity_beats_allow_in_resource() {
        let deny = identity(&[
            r#""Sid":"NoSecrets","Effect":"Deny","Action":"secretsmanager:*","Resource":"*""#,
        ]);
        let allow = resource(&[r#""Principal":"*","Effect":"Allow","Action":"*","Resource":"*""#]);
        let req = request(APP, GET, PROD_SECRET, NO_CONTEXT);
        assert_eq!(
            decide(
                &[("deny-all", &deny)],
                Some(("secret-policy", &allow)),
                &req
            ),
            explicit("deny-all", Some("NoSecrets"))
        );
        assert_eq!(
            decide(&[], Some(("secret-policy", &allow)), &req),
            Decision::Allow
        );
    }

    #[test]
    fn deny_in_resource_beats_allow_in_identity() {
        let allow = identity(&[r#""Effect":"Allow","Action":"*","Resource":"*""#]);
        let deny = resource(&[&format!(
            r#""Principal":{{"AWS":"{APP}"}},"Effect":"Deny","Action":"{GET}","Resource":"*""#
        )]);
        let req = request(APP, GET, PROD_SECRET, NO_CONTEXT);
        assert_eq!(
            decide(&[("admin", &allow)], Some(("key-policy", &deny)), &req),
            explicit("key-policy", None)
        );
        // The resource Deny names only APP.
        let other = request(BATCH, GET, PROD_SECRET, NO_CONTEXT);
        assert_eq!(
            decide(&[("admin", &allow)], Some(("key-policy", &deny)), &other),
            Decision::Allow
        );
    }

    #[test]
    fn deny_wins_regardless_of_statement_or_policy_order() {
        let allow_first = identity(&[
            r#""Effect":"Allow","Action":"kms:*","Resource":"*""#,
            r#""Sid":"Stop","Effect":"Deny","Action":"kms:Decrypt","Resource":"*""#,
        ]);
        let req = request(APP, "kms:Decrypt", KEY, NO_CONTEXT);
        assert_eq!(
            decide_identity(&allow_first, &req),
            explicit("identity", Some("Stop"))
        );

        let allow = identity(&[r#""Effect":"Allow","Action":"kms:*","Resource":"*""#]);
        let deny = identity(&[r#""Effect":"Deny","Action":"kms:Decrypt","Resource":"*""#]);
        assert_eq!(
            decide(&[("a", &allow), ("d", &deny)], None, &req),
            explicit("d", None)
        );
        assert_eq!(
            decide(
                &[("a", &allow), ("d", &deny)],
                None,
                &request(APP, "kms:Encrypt", KEY, NO_CONTEXT)
            ),
            Decision::Allow
        );
    }

    #[test]
    fn wildcard_actions() {
        let get_star =
            identity(&[r#""Effect":"Allow","Action":"secretsmanager:Get*","Resource":"*""#]);
        assert!(allows(&get_star, GET, PROD_SECRET));
        assert!(allows(&get_star, "secretsmanager:GetRandomPassword", "*"));
        assert!(!allows(
            &get_star,
            "secretsmanager:PutSecretValue",
            PROD_SECRET
        ));
        assert!(!allows(&get_star, "kms:GetPublicKey", KEY));

        let kms_all = identity(&[r#""Effect":"Allow","Action":"kms:*","Resource":"*""#]);
        assert!(allows(&kms_all, "kms:Decrypt", KEY));
        assert!(allows(&kms_all, "kms:ScheduleKeyDeletion", KEY));
        assert!(!allows(&kms_all, GET, PROD_SECRET));

        let everything = identity(&[r#""Effect":"Allow","Action":"*","Resource":"*""#]);
        assert!(allows(&everything, GET, PROD_SECRET));
        assert!(allows(&everything, "kms:Decrypt", KEY));

        let question = identity(&[r#""Effect":"Allow","Action":"kms:?ncrypt","Resource":"*""#]);
        assert!(allows(&question, "kms:Encrypt", KEY));
        assert!(!allows(&question, "kms:Decrypt", KEY));
    }

    #[test]
    fn actions_match_case_insensitively_and_resources_do_not() {
        let policy = identity(&[
            r#""Effect":"Allow","Action":"KMS:decrypt","Resource":"arn:aws:kms:us-east-1:000000000000:key/1234abcd""#,
        ]);
        assert!(allows(&policy, "kms:Decrypt", KEY));
        assert!(!allows(
            &policy,
            "kms:Decrypt",
            "arn:aws:kms:us-east-1:000000000000:key/1234ABCD"
        ));
    }

    #[test]
    fn wildcard_resources() {
        let policy = identity(&[
            r#""Effect":"Allow","Action":"*","Resource":["arn:aws:secretsmanager:*:secret:prod/*","arn:aws:kms:us-east-1:000000000000:key/????abcd"]"#,
        ]);
        assert!(allows(&policy, GET, PROD_SECRET));
        assert!(!allows(&policy, GET, DEV_SECRET));
        assert!(allows(&policy, "kms:Decrypt", KEY));
        assert!(!allows(
            &policy,
            "kms:Decrypt",
            "arn:aws:kms:us-east-1:000000000000:key/12345abcd"
        ));
    }

    #[test]
    fn not_action_and_not_resource() {
        let policy = identity(&[
            r#""Effect":"Allow","NotAction":["kms:ScheduleKeyDeletion","kms:Disable*"],"Resource":"*""#,
        ]);
        assert!(allows(&policy, "kms:Decrypt", KEY));
        assert!(allows(&policy, GET, PROD_SECRET));
        assert!(!allows(&policy, "kms:ScheduleKeyDeletion", KEY));
        assert!(!allows(&policy, "kms:disablekey", KEY));

        let policy = identity(&[
            r#""Effect":"Allow","Action":"*","Resource":"*""#,
            r#""Sid":"OnlyProd","Effect":"Deny","Action":"secretsmanager:*","NotResource":"arn:aws:secretsmanager:*:secret:prod/*""#,
        ]);
        assert!(allows(&policy, GET, PROD_SECRET));
        assert_eq!(
            decide_identity(&policy, &request(APP, GET, DEV_SECRET, NO_CONTEXT)),
            explicit("identity", Some("OnlyProd"))
        );
    }

    #[test]
    fn resource_policy_grants_a_second_principal() {
        let own = identity(&[&format!(
            r#""Effect":"Allow","Action":"{GET}","Resource":"*""#
        )]);
        let shared = resource(&[&format!(
            r#""Principal":{{"AWS":["{APP}","{BATCH}"]}},"Effect":"Allow","Action":"{GET}","Resource":"*""#
        )]);
        // BATCH has no identity policy of its own: the resource policy alone grants it.
        let batch = request(BATCH, GET, PROD_SECRET, NO_CONTEXT);
        assert_eq!(
            decide(&[], Some(("secret", &shared)), &batch),
            Decision::Allow
        );
        let other = request("keyward:principal/other", GET, PROD_SECRET, NO_CONTEXT);
        assert_eq!(decide(&[], Some(("secret", &shared)), &other), NO_ALLOW);
        // An identity policy attached to someone else is not passed for BATCH, so it cannot help.
        assert_eq!(
            decide(
                &[("app-policy", &own)],
                None,
                &request(APP, GET, PROD_SECRET, NO_CONTEXT)
            ),
            Decision::Allow
        );
    }

    #[test]
    fn principal_wildcards() {
        let policy = resource(&[
            r#""Principal":{"AWS":["keyward:principal/batch-*","keyward:principal/job?"]},"Effect":"Allow","Action":"*","Resource":"*""#,
        ]);
        let check = |principal: &str| {
            decide(
                &[],
                Some(("r", &policy)),
                &request(principal, GET, PROD_SECRET, NO_CONTEXT),
            )
            .is_allowed()
        };
        assert!(check("keyward:principal/batch-nightly"));
        assert!(check("keyward:principal/job1"));
        assert!(!check("keyward:principal/job12"));
        assert!(!check("keyward:principal/batch"));
        assert!(!check("keyward:principal/Batch-nightly"));
        assert!(!check(APP));

        let anyone = resource(&[r#""Principal":"*","Effect":"Allow","Action":"*","Resource":"*""#]);
        assert!(
            decide(
                &[],
                Some(("r", &anyone)),
                &request(APP, GET, PROD_SECRET, NO_CONTEXT)
            )
            .is_allowed()
        );
        let all_named = resource(&[
            r#""Principal":{"AWS":"keyward:principal/*"},"Effect":"Allow","Action":"*","Resource":"*""#,
        ]);
        assert!(
            decide(
                &[],
                Some(("r", &all_named)),
                &request(BATCH, GET, PROD_SECRET, NO_CONTEXT)
            )
            .is_allowed()
        );
    }

    #[test]
    fn identity_policy_in_the_resource_slot_fails_closed() {
        let misplaced = identity(&[
            r#""Effect":"Allow","Action":"*","Resource":"*""#,
            r#""Effect":"Deny","Action":"kms:ScheduleKeyDeletion","Resource":"*""#,
        ]);
        let read = request(APP, "kms:Decrypt", KEY, NO_CONTEXT);
        assert_eq!(decide(&[], Some(("r", &misplaced)), &read), NO_ALLOW);
        let delete = request(APP, "kms:ScheduleKeyDeletion", KEY, NO_CONTEXT);
        assert_eq!(
            decide(&[], Some(("r", &misplaced)), &delete),
            explicit("r", None)
        );
    }

    /// Whether an Allow-everything identity policy restricted by `condition` allows `context`.
    fn condition_allows(condition: &str, context: &[(&str, &[&str])]) -> bool {
        let policy = identity(&[&format!(
            r#""Effect":"Allow","Action":"*","Resource":"*","Condition":{condition}"#
        )]);
        decide_identity(&policy, &request(APP, "kms:Decrypt", KEY, context)).is_allowed()
    }

    const APP_KEY: &str = "kms:encryptioncontext:app";
    const KEYS: &str = "kms:encryptioncontextkeys";

    #[test]
    fn string_equals_on_encryption_context() {
        let c = r#"{"StringEquals":{"kms:EncryptionContext:app":"billing"}}"#;
        assert!(condition_allows(c, &[(APP_KEY, &["billing"])]));
        assert!(!condition_allows(c, &[(APP_KEY, &["payroll"])]));
        assert!(
            !condition_allows(c, &[(APP_KEY, &["Billing"])]),
            "values are case-sensitive"
        );
        assert!(
            !condition_allows(c, NO_CONTEXT),
            "absent key does not match a positive operator"
        );
        assert!(
            !condition_allows(c, &[(APP_KEY, &[])]),
            "a key without values is absent"
        );
        assert!(!condition_allows(
            c,
            &[("kms:encryptioncontext:team", &["billing"])]
        ));
    }

    #[test]
    fn condition_keys_are_case_insensitive() {
        let c = r#"{"StringEquals":{"KMS:EncryptionContext:APP":"billing"}}"#;
        assert!(condition_allows(c, &[(APP_KEY, &["billing"])]));
        assert!(condition_allows(
            c,
            &[("Kms:EncryptionContext:App", &["billing"])]
        ));
    }

    #[test]
    fn string_not_equals_matches_absent_key() {
        let c = r#"{"StringNotEquals":{"kms:EncryptionContext:app":"billing"}}"#;
        assert!(condition_allows(c, NO_CONTEXT));
        assert!(condition_allows(c, &[(APP_KEY, &["payroll"])]));
        assert!(!condition_allows(c, &[(APP_KEY, &["billing"])]));

        // The usual guard: deny unless the context says billing. An absent key is denied too.
        let policy = identity(&[
            r#""Effect":"Allow","Action":"kms:*","Resource":"*""#,
            r#""Sid":"BillingOnly","Effect":"Deny","Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEquals":{"kms:EncryptionContext:app":"billing"}}"#,
        ]);
        let denied = explicit("identity", Some("BillingOnly"));
        assert_eq!(
            decide_identity(&policy, &request(APP, "kms:Decrypt", KEY, NO_CONTEXT)),
            denied
        );
        assert_eq!(
            decide_identity(
                &policy,
                &request(APP, "kms:Decrypt", KEY, &[(APP_KEY, &["x"])])
            ),
            denied
        );
        assert_eq!(
            decide_identity(
                &policy,
                &request(APP, "kms:Decrypt", KEY, &[(APP_KEY, &["billing"])])
            ),
            Decision::Allow
        );
    }

    #[test]
    fn if_exists_makes_absent_keys_match() {
        let c = r#"{"StringEqualsIfExists":{"secretsmanager:VersionStage":"AWSCURRENT"}}"#;
        let stage = "secretsmanager:versionstage";
        assert!(condition_allows(c, NO_CONTEXT));
        assert!(condition_allows(c, &[(stage, &["AWSCURRENT"])]));
        assert!(!condition_allows(c, &[(stage, &["AWSPREVIOUS"])]));

        let c = r#"{"StringNotLikeIfExists":{"secretsmanager:VersionStage":"AWS*"}}"#;
        assert!(condition_allows(c, NO_CONTEXT));
        assert!(condition_allows(c, &[(stage, &["custom"])]));
        assert!(!condition_allows(c, &[(stage, &["AWSCURRENT"])]));

        let c = r#"{"ForAnyValue:StringEqualsIfExists":{"kms:EncryptionContextKeys":"app"}}"#;
        assert!(condition_allows(c, NO_CONTEXT));
        assert!(!condition_allows(c, &[(KEYS, &["team"])]));
    }

    #[test]
    fn string_like_and_ignore_case() {
        let c = r#"{"StringLike":{"kms:EncryptionContext:app":"bill*"}}"#;
        assert!(condition_allows(c, &[(APP_KEY, &["billing"])]));
        assert!(condition_allows(c, &[(APP_KEY, &["bill"])]));
        assert!(!condition_allows(c, &[(APP_KEY, &["Billing"])]));
        assert!(!condition_allows(c, NO_CONTEXT));

        let c = r#"{"StringNotLike":{"kms:EncryptionContext:app":"bill?ng"}}"#;
        assert!(!condition_allows(c, &[(APP_KEY, &["billing"])]));
        assert!(condition_allows(c, &[(APP_KEY, &["billings"])]));

        let c = r#"{"StringEquals":{"kms:EncryptionContext:app":"bill*"}}"#;
        assert!(
            !condition_allows(c, &[(APP_KEY, &["billing"])]),
            "StringEquals has no wildcards"
        );
        assert!(condition_allows(c, &[(APP_KEY, &["bill*"])]));

        let c = r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:app":"Billing"}}"#;
        assert!(condition_allows(c, &[(APP_KEY, &["BILLING"])]));
        assert!(!condition_allows(c, &[(APP_KEY, &["billings"])]));
        let c = r#"{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:app":"Billing"}}"#;
        assert!(!condition_allows(c, &[(APP_KEY, &["bILLING"])]));
        assert!(condition_allows(c, &[(APP_KEY, &["payroll"])]));
    }

    #[test]
    fn null_tests_presence() {
        let absent = r#"{"Null":{"kms:EncryptionContext:app":"true"}}"#;
        assert!(condition_allows(absent, NO_CONTEXT));
        assert!(condition_allows(absent, &[(APP_KEY, &[])]));
        assert!(!condition_allows(absent, &[(APP_KEY, &["billing"])]));

        let present = r#"{"Null":{"kms:EncryptionContext:app":false}}"#;
        assert!(!condition_allows(present, NO_CONTEXT));
        assert!(condition_allows(present, &[(APP_KEY, &["billing"])]));
    }

    #[test]
    fn for_all_values_on_encryption_context_keys() {
        let c = r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["app","team"]}}"#;
        assert!(condition_allows(c, &[(KEYS, &["app"])]));
        assert!(condition_allows(c, &[(KEYS, &["team", "app"])]));
        assert!(!condition_allows(c, &[(KEYS, &["app", "other"])]));
        assert!(
            condition_allows(c, NO_CONTEXT),
            "ForAllValues over no values holds, as in AWS"
        );
        assert!(condition_allows(c, &[(KEYS, &[])]));

        let c = r#"{"ForAllValues:StringNotEquals":{"kms:EncryptionContextKeys":"secret"}}"#;
        assert!(condition_allows(c, &[(KEYS, &["app", "team"])]));
        assert!(!condition_allows(c, &[(KEYS, &["app", "secret"])]));
    }

    #[test]
    fn for_any_value_on_encryption_context_keys() {
        let c = r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["app","team"]}}"#;
        assert!(condition_allows(c, &[(KEYS, &["other", "team"])]));
        assert!(!condition_allows(c, &[(KEYS, &["other"])]));
        assert!(
            !condition_allows(c, NO_CONTEXT),
            "ForAnyValue with an absent key does not match"
        );

        let c = r#"{"ForAnyValue:StringNotEquals":{"kms:EncryptionContextKeys":"app"}}"#;
        assert!(condition_allows(c, &[(KEYS, &["app", "team"])]));
        assert!(!condition_allows(c, &[(KEYS, &["app"])]));
        assert!(!condition_allows(c, NO_CONTEXT));

        let c = r#"{"ForAnyValue:StringLike":{"kms:EncryptionContextKeys":"tenant-*"}}"#;
        assert!(condition_allows(c, &[(KEYS, &["app", "tenant-7"])]));
    }

    #[test]
    fn multi_valued_request_key_without_set_qualifier() {
        // Positive: any request value may match. Negated: the exact opposite.
        let c = r#"{"StringEquals":{"kms:EncryptionContextKeys":"app"}}"#;
        assert!(condition_allows(c, &[(KEYS, &["team", "app"])]));
        assert!(!condition_allows(c, &[(KEYS, &["team", "other"])]));
        let c = r#"{"StringNotEquals":{"kms:EncryptionContextKeys":"app"}}"#;
        assert!(!condition_allows(c, &[(KEYS, &["team", "app"])]));
        assert!(condition_allows(c, &[(KEYS, &["team", "other"])]));
        // A key given in two entries has the values of both.
        let c = r#"{"StringEquals":{"kms:EncryptionContextKeys":"app"}}"#;
        assert!(condition_allows(c, &[(KEYS, &["team"]), (KEYS, &["app"])]));
    }

    #[test]
    fn listed_values_are_ored() {
        let c = r#"{"StringEquals":{"kms:EncryptionContext:app":["billing","payroll"]}}"#;
        assert!(condition_allows(c, &[(APP_KEY, &["billing"])]));
        assert!(condition_allows(c, &[(APP_KEY, &["payroll"])]));
        assert!(!condition_allows(c, &[(APP_KEY, &["hr"])]));
    }

    #[test]
    fn keys_and_operator_blocks_are_anded() {
        let stage = "secretsmanager:versionstage";
        let c = r#"{"StringEquals":{"kms:EncryptionContext:app":"billing","secretsmanager:VersionStage":"AWSCURRENT"}}"#;
        assert!(condition_allows(
            c,
            &[(APP_KEY, &["billing"]), (stage, &["AWSCURRENT"])]
        ));
        assert!(!condition_allows(
            c,
            &[(APP_KEY, &["billing"]), (stage, &["AWSPREVIOUS"])]
        ));
        assert!(!condition_allows(c, &[(APP_KEY, &["billing"])]));

        let c = r#"{"StringEquals":{"kms:EncryptionContext:app":"billing"},"StringLike":{"secretsmanager:VersionId":"v1-*"}}"#;
        let id = "secretsmanager:versionid";
        assert!(condition_allows(
            c,
            &[(APP_KEY, &["billing"]), (id, &["v1-abc"])]
        ));
        assert!(!condition_allows(
            c,
            &[(APP_KEY, &["billing"]), (id, &["v2-abc"])]
        ));
        assert!(!condition_allows(
            c,
            &[(APP_KEY, &["hr"]), (id, &["v1-abc"])]
        ));
    }

    const ROOT: &str = "arn:keyward:iam::000000000000:root";

    fn key_policy(statements: &[&str]) -> Policy {
        parse(PolicyKind::Key, statements)
    }

    #[test]
    fn key_policies_reach_identity_policies_only_through_delegation() {
        let decrypt = identity(&[r#""Effect":"Allow","Action":"kms:Decrypt","Resource":"*""#]);
        let own = key_policy(&[
            r#""Principal":{"AWS":"keyward:principal/admin"},"Effect":"Allow","Action":"kms:*","Resource":"*""#,
        ]);
        let delegating = key_policy(&[&format!(
            r#""Principal":{{"AWS":"{ROOT}"}},"Effect":"Allow","Action":"kms:*","Resource":"*""#
        )]);
        let naming_app = key_policy(&[&format!(
            r#""Principal":{{"AWS":"{APP}"}},"Effect":"Allow","Action":"kms:Decrypt","Resource":"*""#
        )]);
        let req = request(APP, "kms:Decrypt", KEY, NO_CONTEXT);
        let key = |p: &Policy, ids: &[(&str, &Policy)]| decide_key(ids, ("key", p), ROOT, &req);
        assert_eq!(key(&own, &[("app", &decrypt)]), NO_ALLOW);
        assert_eq!(key(&delegating, &[("app", &decrypt)]), Decision::Allow);
        assert_eq!(
            key(&delegating, &[]),
            NO_ALLOW,
            "delegation alone grants nothing"
        );
        assert_eq!(key(&naming_app, &[]), Decision::Allow);
        // The delegation is to this account only.
        let elsewhere = decide_key(
            &[("app", &decrypt)],
            ("key", &delegating),
            "arn:keyward:iam::111111111111:root",
            &req,
        );
        assert_eq!(elsewhere, NO_ALLOW);
    }

    #[test]
    fn a_key_policy_deny_naming_the_account_denies_everyone() {
        let policy = key_policy(&[
            &format!(
                r#""Principal":{{"AWS":"{APP}"}},"Effect":"Allow","Action":"kms:*","Resource":"*""#
            ),
            &format!(
                r#""Sid":"NoDecrypt","Principal":{{"AWS":"{ROOT}"}},"Effect":"Deny","Action":"kms:Decrypt","Resource":"*""#
            ),
        ]);
        let decrypt = request(APP, "kms:Decrypt", KEY, NO_CONTEXT);
        assert_eq!(
            decide_key(&[], ("key", &policy), ROOT, &decrypt),
            explicit("key", Some("NoDecrypt"))
        );
        let encrypt = request(APP, "kms:Encrypt", KEY, NO_CONTEXT);
        assert_eq!(
            decide_key(&[], ("key", &policy), ROOT, &encrypt),
            Decision::Allow
        );
        // An identity Deny still wins over the key policy's Allow.
        let deny = identity(&[r#""Effect":"Deny","Action":"kms:Encrypt","Resource":"*""#]);
        assert_eq!(
            decide_key(&[("d", &deny)], ("key", &policy), ROOT, &encrypt),
            explicit("d", None)
        );
    }

    #[test]
    fn conditions_apply_to_resource_policy_statements_too() {
        let policy = resource(&[&format!(
            r#""Principal":{{"AWS":"{BATCH}"}},"Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{{"StringEquals":{{"kms:EncryptionContext:app":"billing"}}}}"#
        )]);
        let ok = request(BATCH, "kms:Decrypt", KEY, &[(APP_KEY, &["billing"])]);
        assert_eq!(decide(&[], Some(("key", &policy)), &ok), Decision::Allow);
        let wrong = request(BATCH, "kms:Decrypt", KEY, &[(APP_KEY, &["hr"])]);
        assert_eq!(decide(&[], Some(("key", &policy)), &wrong), NO_ALLOW);
    }
}
