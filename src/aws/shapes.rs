//! AWS JSON 1.1 shapes to and from the gRPC messages. The protobuf messages already carry the
//! AWS member names in snake_case, so one rule converts most of a document: member names change
//! case, user-keyed maps (encryption contexts) are left alone, blobs are base64 on both sides.
//! The few places where the AWS shape differs are named here, once.

use serde_json::{Map, Value};

/// Maps whose keys are the client's data, not member names.
const USER_MAPS: &[&str] = &[
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
    "encryption_context",
    "source_encryption_context",
    "destination_encryption_context",
];

/// Maps from version id to a list of stages: `{"id": {"stages": [...]}}` in protobuf,
/// `{"id": [...]}` in AWS.
const STAGE_MAPS: &[&str] = &["version_ids_to_stages", "secret_versions_to_stages"];

/// `KmsKeyId` → `kms_key_id`, `RotationLambdaARN` → `rotation_lambda_arn`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p));
            let next = chars.get(i + 1);
            let boundary = match prev {
                None => false,
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                // The last capital of an acronym starts the next word: `ARNValue` → arn_value.
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `kms_key_id` → `KmsKeyId`; `arn` becomes `ARN` in Secrets Manager and `Arn` in KMS;
/// `aws_account_id` is `AWSAccountId`.
pub fn pascal_case(name: &str, service: Service) -> String {
    if name == "arn" && service == Service::SecretsManager {
        return "ARN".into();
    }
    if name == "aws_account_id" {
        return "AWSAccountId".into();
    }
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    SecretsManager,
    Kms,
}

/// An AWS request document as the protobuf message's JSON.
pub fn request_in(value: Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(name, value)| {
                    let value = if USER_MAPS.contains(&name.as_str()) {
                        value
                    } else {
                        request_in(value)
                    };
                    (snake_case(&name), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(request_in).collect()),
        other => other,
    }
}

/// The list members of responses that AWS returns even when they are empty (a client that
/// reads `response["SecretList"]` must not fail on an empty result). Top level only; KMS's
/// `Tags` (ListResourceTags) too, not Secrets Manager's (DescribeSecret leaves it out).
const ALWAYS_LISTED_KMS: &[&str] = &["tags", "policy_names"];
const ALWAYS_LISTED: &[&str] = &[
    "secret_list",
    "secret_values",
    "errors",
    "versions",
    "keys",
    "aliases",
    "rotations",
    "validation_errors",
];

/// Members AWS returns even when they are empty strings, by the member that holds them.
const ALWAYS_PRESENT: &[(&str, &str)] = &[("key_metadata", "description")];

/// A protobuf message's JSON as the AWS response document. Absent members (null, empty
/// strings, empty lists) are left out, as AWS leaves them out, except the lists AWS always
/// returns ([`ALWAYS_LISTED`]) and the few empty members it returns ([`ALWAYS_PRESENT`]).
pub fn response_out(value: Value, service: Service) -> Value {
    shape_out(value, service, None)
}

/// `parent`: the member holding `value`, None at the top.
fn shape_out(value: Value, service: Service, parent: Option<&str>) -> Value {
    match value {
        Value::Object(members) => {
            let mut out = Map::with_capacity(members.len());
            for (name, value) in members {
                let value = if STAGE_MAPS.contains(&name.as_str()) {
                    flatten_stages(value)
                } else if USER_MAPS.contains(&name.as_str()) {
                    value
                } else {
                    shape_out(value, service, Some(&name))
                };
                let listed = parent.is_none()
                    && (ALWAYS_LISTED.contains(&name.as_str())
                        || (service == Service::Kms && ALWAYS_LISTED_KMS.contains(&name.as_str())))
                    && matches!(value, Value::Array(_));
                let present = parent.is_some_and(|p| ALWAYS_PRESENT.contains(&(p, name.as_str())))
                    && !value.is_null();
                if is_absent(&value) && !listed && !present {
                    continue;
                }
                out.insert(pascal_case(&name, service), value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| shape_out(item, service, parent))
                .collect(),
        ),
        other => other,
    }
}

fn is_absent(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn flatten_stages(value: Value) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    Value::Object(
        map.into_iter()
            .map(|(id, stages)| {
                let list = match stages {
                    Value::Object(mut inner) => inner.remove("stages").unwrap_or(Value::Null),
                    other => other,
                };
                (id, list)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn member_names_change_case_both_ways() {
        for (aws, proto) in [
            ("KmsKeyId", "kms_key_id"),
            ("SecretId", "secret_id"),
            ("NumberOfBytes", "number_of_bytes"),
            ("RotationLambdaARN", "rotation_lambda_arn"),
            ("ARN", "arn"),
        ] {
            assert_eq!(snake_case(aws), proto);
        }
        assert_eq!(pascal_case("kms_key_id", Service::Kms), "KmsKeyId");
        assert_eq!(pascal_case("arn", Service::SecretsManager), "ARN");
        assert_eq!(pascal_case("arn", Service::Kms), "Arn");
        assert_eq!(pascal_case("key_arn", Service::Kms), "KeyArn");
    }

    #[test]
    fn user_maps_keep_their_keys_and_stage_maps_flatten() {
        let request = request_in(json!({
            "KeyId": "k",
            "EncryptionContext": {"TenantId": "a", "Purpose": "b"},
        }));
        assert_eq!(
            request,
            json!({"key_id": "k", "encryption_context": {"TenantId": "a", "Purpose": "b"}})
        );
        let response = response_out(
            json!({
                "arn": "arn:x",
                "version_ids_to_stages": {"v1": {"stages": ["AWSCURRENT"]}},
                "description": "",
                "deleted_date": null,
                "tags": [],
                "enabled": false,
            }),
            Service::SecretsManager,
        );
        assert_eq!(
            response,
            json!({
                "ARN": "arn:x",
                "VersionIdsToStages": {"v1": ["AWSCURRENT"]},
                "Enabled": false,
            })
        );
    }

    #[test]
    fn the_lists_aws_always_returns_stay_when_empty_and_only_at_the_top() {
        let response = response_out(
            json!({
                "secret_list": [],
                "next_token": "",
                "errors": [],
                "nested": {"keys": [], "x": 1},
            }),
            Service::SecretsManager,
        );
        assert_eq!(
            response,
            json!({"SecretList": [], "Errors": [], "Nested": {"X": 1}})
        );
    }
}
