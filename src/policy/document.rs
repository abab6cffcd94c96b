//! Parsing and validation of policy JSON into [`Policy`].
//!
//! Validation keeps going after the first problem so a client fixing a policy sees every
//! mistake at once, the way ValidateResourcePolicy reports findings.

use std::collections::HashSet;
use std::fmt::Display;

use super::json::{Json, Object};
use super::matching::{self, PRINCIPAL_PREFIX};

/// The AWS ValidateResourcePolicy check name for every problem this module reports.
pub const SYNTAX_CHECK: &str = "SYNTAX_CHECK";

/// Identity policies are attached to a principal and name none; resource policies are attached
/// to a key or secret and must say whom each statement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    Identity,
    /// A secret's resource policy.
    Resource,
    /// A key policy: a resource policy that may also name the account
    /// (`arn:keyward:iam::<12 digits>:root`), the statement that delegates to identity policies.
    Key,
}

/// `arn:keyward:iam::<account id>:root`: the account, in a key policy.
pub const ACCOUNT_ROOT_PREFIX: &str = "arn:keyward:iam::";
const ACCOUNT_ROOT_SUFFIX: &str = ":root";

/// The account id a principal names as `arn:keyward:iam::<12 digits>:root` (or with AWS's
/// partition), if it does.
pub fn account_root(principal: &str) -> Option<&str> {
    let account = principal
        .strip_prefix(ACCOUNT_ROOT_PREFIX)
        .or_else(|| principal.strip_prefix("arn:aws:iam::"))?
        .strip_suffix(ACCOUNT_ROOT_SUFFIX)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub check_name: &'static str,
    pub message: String,
}

impl Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check_name, self.message)
    }
}

impl std::error::Error for ValidationError {}

#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) kind: PolicyKind,
    pub(crate) version: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub(crate) sid: Option<String>,
    pub(crate) effect: Effect,
    /// `None` in identity policies. `"*"` in any accepted form is stored as the pattern `*`.
    pub(crate) principals: Option<Vec<String>>,
    pub(crate) actions: Patterns,
    pub(crate) resources: Patterns,
    pub(crate) conditions: Vec<Condition>,
}

/// `Action`/`Resource` (negated = false) or `NotAction`/`NotResource` (negated = true).
#[derive(Debug, Clone)]
pub(crate) struct Patterns {
    pub(crate) negated: bool,
    pub(crate) patterns: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Condition {
    /// As written; compared case-insensitively because IAM condition keys are.
    pub(crate) key: String,
    pub(crate) test: Test,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    String {
        op: StringOp,
        negated: bool,
        set: SetQualifier,
        if_exists: bool,
        values: Vec<String>,
    },
    /// `"true"` means "the key is absent"; listing both values accepts either.
    Null { absent_ok: bool, present_ok: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringOp {
    Equals,
    EqualsIgnoreCase,
    Like,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetQualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

const TOP_LEVEL_ELEMENTS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_ELEMENTS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];
const VERSIONS: &[&str] = &["2012-10-17", "2008-10-17"];

impl Policy {
    /// Parses and validates. All problems found are returned, not only the first.
    pub fn parse(json: &str, kind: PolicyKind) -> Result<Policy, Vec<ValidationError>> {
        let tree = Json::parse(json).map_err(|e| {
            vec![ValidationError {
                check_name: SYNTAX_CHECK,
                message: format!("policy is not valid JSON: {e}"),
            }]
        })?;
        let mut parser = Parser {
            kind,
            errors: Vec::new(),
        };
        let policy = parser.policy(&tree);
        match policy {
            Some(policy) if parser.errors.is_empty() => Ok(policy),
            _ => Err(parser.errors),
        }
    }

    /// True when an Allow statement grants every principal (`"*"` or `keyward:principal/*`) with
    /// no Condition. Any condition counts as a restriction, whatever its key: telling a real
    /// restriction from a vacuous one needs knowledge of which keys requests carry.
    pub fn grants_public_access(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && s.conditions.is_empty()
                && s.principals
                    .as_ref()
                    .is_some_and(|ps| ps.iter().any(|p| matching::matches_every_principal(p)))
        })
    }

    /// Every principal the statements name.
    pub fn principals(&self) -> impl Iterator<Item = &str> {
        self.statements
            .iter()
            .flat_map(|s| s.principals.iter().flatten())
            .map(String::as_str)
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Sids in statement order, `None` for statements without one.
    pub fn sids(&self) -> impl Iterator<Item = Option<&str>> {
        self.statements.iter().map(|s| s.sid.as_deref())
    }
}

struct Parser {
    kind: PolicyKind,
    errors: Vec<ValidationError>,
}

impl Parser {
    fn error(&mut self, path: &str, message: impl Display) {
        let message = if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.errors.push(ValidationError {
            check_name: SYNTAX_CHECK,
            message,
        });
    }

    fn elements(&mut self, path: &str, object: &Object, known: &[&str], what: &str) {
        for key in &object.duplicates {
            self.error(path, format_args!("duplicate element '{key}'"));
        }
        for (key, _) in &object.entries {
            if !known.contains(&key.as_str()) {
                self.error(path, format_args!("unknown {what} element '{key}'"));
            }
        }
    }

    fn policy(&mut self, tree: &Json) -> Option<Policy> {
        let Json::Object(top) = tree else {
            self.error(
                "",
                format_args!("policy must be a JSON object, got {}", tree.type_name()),
            );
            return None;
        };
        self.elements("", top, TOP_LEVEL_ELEMENTS, "top-level");

        let version = match top.get("Version") {
            None => None,
            Some(Json::String(v)) if VERSIONS.contains(&v.as_str()) => Some(v.clone()),
            Some(Json::String(v)) => {
                self.error(
                    "Version",
                    format_args!(
                        "unsupported version '{v}'; expected \"2012-10-17\" or \"2008-10-17\""
                    ),
                );
                None
            }
            Some(other) => {
                self.error(
                    "Version",
                    format_args!("expected a string, got {}", other.type_name()),
                );
                None
            }
        };
        let id = self.optional_string("Id", top.get("Id"));

        let statements = match top.get("Statement") {
            None => {
                self.error("", "missing required element 'Statement'");
                Vec::new()
            }
            Some(Json::Object(single)) => self.statement("Statement", single).into_iter().collect(),
            Some(Json::Array(items)) if items.is_empty() => {
                self.error("Statement", "must contain at least one statement");
                Vec::new()
            }
            Some(Json::Array(items)) => {
                let mut statements = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("Statement[{i}]");
                    match item {
                        Json::Object(obj) => statements.extend(self.statement(&path, obj)),
                        other => self.error(
                            &path,
                            format_args!("expected an object, got {}", other.type_name()),
                        ),
                    }
                }
                statements
            }
            Some(other) => {
                self.error(
                    "Statement",
                    format_args!(
                        "expected an object or an array of objects, got {}",
                        other.type_name()
                    ),
                );
                Vec::new()
            }
        };
        self.unique_sids(top);

        Some(Policy {
            kind: self.kind,
            version,
            id,
            statements,
        })
    }

    /// IAM requires Sids to be unique so a decision naming one is unambiguous. Checked on the raw
    /// statements so the index reported is the one the client wrote.
    fn unique_sids(&mut self, top: &Object) {
        let Some(Json::Array(items)) = top.get("Statement") else {
            return;
        };
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            if let Json::Object(statement) = item
                && let Some(Json::String(sid)) = statement.get("Sid")
                && !seen.insert(sid.as_str())
            {
                self.error(
                    &format!("Statement[{i}].Sid"),
                    format_args!("duplicate Sid '{sid}'"),
                );
            }
        }
    }

    fn optional_string(&mut self, path: &str, value: Option<&Json>) -> Option<String> {
        match value {
            None => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => {
                self.error(
                    path,
                    format_args!("expected a string, got {}", other.type_name()),
                );
                None
            }
        }
    }

    fn statement(&mut self, path: &str, obj: &Object) -> Option<Statement> {
        let errors_before = self.errors.len();
        self.elements(path, obj, STATEMENT_ELEMENTS, "statement");

        let sid = self.optional_string(&format!("{path}.Sid"), obj.get("Sid"));
        let effect = self.effect(path, obj.get("Effect"));
        let principals = self.principals(path, obj);
        let actions = self.either(path, obj, "Action", "NotAction", Self::action);
        let resources = self.either(path, obj, "Resource", "NotResource", Self::resource);
        let conditions = match obj.get("Condition") {
            None => Vec::new(),
            Some(c) => self.conditions(&format!("{path}.Condition"), c),
        };

        if self.errors.len() != errors_before {
            return None;
        }
        Some(Statement {
            sid,
            effect: effect?,
            principals,
            actions: actions?,
            resources: resources?,
            conditions,
        })
    }

    fn effect(&mut self, path: &str, value: Option<&Json>) -> Option<Effect> {
        match value {
            Some(Json::String(s)) if s == "Allow" => Some(Effect::Allow),
            Some(Json::String(s)) if s == "Deny" => Some(Effect::Deny),
            Some(Json::String(s)) => {
                self.error(
                    &format!("{path}.Effect"),
                    format_args!("expected \"Allow\" or \"Deny\" (case-sensitive), got \"{s}\""),
                );
                None
            }
            Some(other) => {
                self.error(
                    &format!("{path}.Effect"),
                    format_args!("expected \"Allow\" or \"Deny\", got {}", other.type_name()),
                );
                None
            }
            None => {
                self.error(path, "missing required element 'Effect'");
                None
            }
        }
    }

    /// Exactly one of a positive element and its `Not` form, each a string or array of strings.
    fn either(
        &mut self,
        path: &str,
        obj: &Object,
        positive: &str,
        negative: &str,
        check: fn(&mut Self, &str, &str),
    ) -> Option<Patterns> {
        let (name, value, negated) = match (obj.get(positive), obj.get(negative)) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    format_args!("has both '{positive}' and '{negative}'; use exactly one"),
                );
                return None;
            }
            (None, None) => {
                self.error(
                    path,
                    format_args!("missing required element '{positive}' or '{negative}'"),
                );
                return None;
            }
            (Some(v), None) => (positive, v, false),
            (None, Some(v)) => (negative, v, true),
        };
        let element_path = format!("{path}.{name}");
        let patterns = self.string_list(&element_path, value)?;
        for (i, pattern) in patterns.iter().enumerate() {
            let item_path = item_path(&element_path, value, i);
            check(self, &item_path, pattern);
        }
        Some(Patterns { negated, patterns })
    }

    fn action(&mut self, path: &str, action: &str) {
        if self.rejects_variables(path, action) || action == "*" {
            return;
        }
        let valid = action.split_once(':').is_some_and(|(service, name)| {
            !service.is_empty()
                && service
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
        });
        if !valid {
            self.error(
                path,
                format_args!(
                    "'{action}' is not a valid action; expected \"*\" or \"service:ActionName\""
                ),
            );
        }
    }

    fn resource(&mut self, path: &str, resource: &str) {
        if self.rejects_variables(path, resource) {
            return;
        }
        if resource.is_empty() {
            self.error(path, "resource must not be empty");
        }
    }

    /// Policy variables would be matched literally here, silently granting or denying the wrong
    /// thing, so they are refused outright.
    fn rejects_variables(&mut self, path: &str, text: &str) -> bool {
        if text.contains("${") {
            self.error(
                path,
                format_args!("policy variables such as '${{...}}' are not supported (in '{text}')"),
            );
            return true;
        }
        false
    }

    fn principals(&mut self, path: &str, obj: &Object) -> Option<Vec<String>> {
        if obj.get("NotPrincipal").is_some() {
            self.error(
                &format!("{path}.NotPrincipal"),
                "NotPrincipal is not supported",
            );
        }
        let value = obj.get("Principal");
        match (self.kind, value) {
            (PolicyKind::Identity, Some(_)) => {
                self.error(
                    &format!("{path}.Principal"),
                    "not allowed in an identity policy (it applies to the principal it is attached to)",
                );
                None
            }
            (PolicyKind::Identity, None) => None,
            (PolicyKind::Resource | PolicyKind::Key, None) => {
                if obj.get("NotPrincipal").is_none() {
                    self.error(
                        path,
                        "missing required element 'Principal' (required in a resource policy)",
                    );
                }
                None
            }
            (PolicyKind::Resource | PolicyKind::Key, Some(value)) => {
                self.principal_value(&format!("{path}.Principal"), value)
            }
        }
    }

    fn principal_value(&mut self, path: &str, value: &Json) -> Option<Vec<String>> {
        let obj = match value {
            Json::String(s) if s == "*" => return Some(vec!["*".to_owned()]),
            Json::String(s) => {
                self.error(
                    path,
                    format_args!("'{s}' is not supported; use \"*\" or {{\"AWS\": \"keyward:principal/<name>\"}}"),
                );
                return None;
            }
            Json::Object(obj) => obj,
            other => {
                self.error(
                    path,
                    format_args!(
                        "expected \"*\" or an object with an 'AWS' element, got {}",
                        other.type_name()
                    ),
                );
                return None;
            }
        };
        let errors_before = self.errors.len();
        for key in &obj.duplicates {
            self.error(path, format_args!("duplicate element '{key}'"));
        }
        for (key, _) in &obj.entries {
            if key != "AWS" {
                self.error(
                    &format!("{path}.{key}"),
                    format_args!("principal type '{key}' is not supported; only 'AWS' is"),
                );
            }
        }
        let Some(aws) = obj.get("AWS") else {
            if obj.entries.is_empty() {
                self.error(path, "missing required element 'AWS'");
            }
            return None;
        };
        let aws_path = format!("{path}.AWS");
        let principals = self.string_list(&aws_path, aws)?;
        for (i, principal) in principals.iter().enumerate() {
            let item_path = item_path(&aws_path, aws, i);
            if self.rejects_variables(&item_path, principal) {
                continue;
            }
            let named = principal
                .strip_prefix(PRINCIPAL_PREFIX)
                .is_some_and(|name| !name.is_empty());
            let account = self.kind == PolicyKind::Key && account_root(principal).is_some();
            if principal != "*" && !named && !account {
                self.error(
                    &item_path,
                    format_args!("principal '{principal}' is not supported; use \"*\" or \"keyward:principal/<name>\""),
                );
            }
        }
        (self.errors.len() == errors_before).then_some(principals)
    }

    fn conditions(&mut self, path: &str, value: &Json) -> Vec<Condition> {
        let Json::Object(operators) = value else {
            self.error(
                path,
                format_args!("expected an object, got {}", value.type_name()),
            );
            return Vec::new();
        };
        for key in &operators.duplicates {
            self.error(path, format_args!("duplicate condition operator '{key}'"));
        }
        let mut conditions = Vec::new();
        for (operator, block) in &operators.entries {
            let op_path = format!("{path}.{operator}");
            let parsed = parse_operator(operator);
            if let Err(message) = &parsed {
                self.error(&op_path, message);
            }
            let Json::Object(keys) = block else {
                self.error(
                    &op_path,
                    format_args!(
                        "expected an object of condition keys, got {}",
                        block.type_name()
                    ),
                );
                continue;
            };
            if keys.entries.is_empty() {
                self.error(&op_path, "must contain at least one condition key");
            }
            for key in &keys.duplicates {
                self.error(&op_path, format_args!("duplicate condition key '{key}'"));
            }
            for (key, values) in &keys.entries {
                let key_path = format!("{op_path}.{key}");
                if key.is_empty() {
                    self.error(&op_path, "condition key must not be empty");
                }
                self.rejects_variables(&key_path, key);
                if !key.is_empty() && !supplied_condition_key(key) {
                    self.error(
                        &key_path,
                        format_args!(
                            "condition key '{key}' is not supported: Keyward supplies only {SUPPLIED_KEYS}, \
                             so a condition on it would never match"
                        ),
                    );
                }
                let Some(values) = self.condition_values(&key_path, values) else {
                    continue;
                };
                let Ok(op) = &parsed else { continue };
                if let Some(test) = self.test(&key_path, *op, values) {
                    conditions.push(Condition {
                        key: key.clone(),
                        test,
                    });
                }
            }
        }
        conditions
    }

    fn test(&mut self, path: &str, op: Operator, values: Vec<String>) -> Option<Test> {
        match op {
            Operator::String {
                op,
                negated,
                set,
                if_exists,
            } => Some(Test::String {
                op,
                negated,
                set,
                if_exists,
                values,
            }),
            Operator::Null => {
                let mut absent_ok = false;
                let mut present_ok = false;
                for value in &values {
                    match value.as_str() {
                        "true" => absent_ok = true,
                        "false" => present_ok = true,
                        other => self.error(
                            path,
                            format_args!("Null takes \"true\" or \"false\", got \"{other}\""),
                        ),
                    }
                }
                (absent_ok || present_ok).then_some(Test::Null {
                    absent_ok,
                    present_ok,
                })
            }
        }
    }

    /// Booleans and integers are accepted and stringified, as IAM does (`"Null": {"k": true}`).
    fn condition_values(&mut self, path: &str, value: &Json) -> Option<Vec<String>> {
        const EXPECTED: &str = "expected a string or an array of strings";
        let scalar = |v: &Json| match v {
            Json::String(s) => Some(s.clone()),
            Json::Integer(s) => Some(s.clone()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let values = match value {
            Json::Array(items) if items.is_empty() => {
                self.error(path, "must list at least one value");
                return None;
            }
            Json::Array(items) => {
                let mut values = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match scalar(item) {
                        Some(v) => values.push(v),
                        None => self.error(
                            &format!("{path}[{i}]"),
                            format_args!("{EXPECTED}, got {}", item.type_name()),
                        ),
                    }
                }
                if values.len() != items.len() {
                    return None;
                }
                values
            }
            other => match scalar(other) {
                Some(v) => vec![v],
                None => {
                    self.error(path, format_args!("{EXPECTED}, got {}", other.type_name()));
                    return None;
                }
            },
        };
        let mut ok = true;
        for v in &values {
            ok &= !self.rejects_variables(path, v);
        }
        ok.then_some(values)
    }

    fn string_list(&mut self, path: &str, value: &Json) -> Option<Vec<String>> {
        const EXPECTED: &str = "expected a string or an array of strings";
        match value {
            Json::String(s) => Some(vec![s.clone()]),
            Json::Array(items) if items.is_empty() => {
                // An empty list would match nothing (or, negated, everything): never what was meant.
                self.error(path, "must not be an empty array");
                None
            }
            Json::Array(items) => {
                let mut strings = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Json::String(s) => strings.push(s.clone()),
                        other => self.error(
                            &format!("{path}[{i}]"),
                            format_args!("{EXPECTED}, got {}", other.type_name()),
                        ),
                    }
                }
                (strings.len() == items.len()).then_some(strings)
            }
            other => {
                self.error(path, format_args!("{EXPECTED}, got {}", other.type_name()));
                None
            }
        }
    }
}

fn item_path(path: &str, value: &Json, index: usize) -> String {
    match value {
        Json::Array(_) => format!("{path}[{index}]"),
        _ => path.to_owned(),
    }
}

/// The condition keys the access gate puts in a request (`gate::conditions`), for messages.
const SUPPLIED_KEYS: &str = "secretsmanager:VersionStage, secretsmanager:VersionId, \
                             kms:EncryptionContext:<key> and kms:EncryptionContextKeys";

/// Whether requests can carry `key` (IAM keys are case-insensitive). A key no request carries
/// would make a Deny that never applies and an Allow that never grants, so it is refused.
fn supplied_condition_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(
        key.as_str(),
        "secretsmanager:versionstage" | "secretsmanager:versionid" | "kms:encryptioncontextkeys"
    ) || key
        .strip_prefix("kms:encryptioncontext:")
        .is_some_and(|context_key| !context_key.is_empty())
}

#[derive(Debug, Clone, Copy)]
enum Operator {
    String {
        op: StringOp,
        negated: bool,
        set: SetQualifier,
        if_exists: bool,
    },
    Null,
}

/// Operator names are matched case-sensitively: a misspelt operator must be an error, never a
/// condition that is quietly not checked.
fn parse_operator(name: &str) -> Result<Operator, String> {
    let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
        (SetQualifier::ForAnyValue, rest)
    } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
        (SetQualifier::ForAllValues, rest)
    } else {
        (SetQualifier::None, name)
    };
    let (if_exists, base) = match rest.strip_suffix("IfExists") {
        Some(base) => (true, base),
        None => (false, rest),
    };
    let (op, negated) = match base {
        "StringEquals" => (StringOp::Equals, false),
        "StringNotEquals" => (StringOp::Equals, true),
        "StringEqualsIgnoreCase" => (StringOp::EqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (StringOp::EqualsIgnoreCase, true),
        "StringLike" => (StringOp::Like, false),
        "StringNotLike" => (StringOp::Like, true),
        "Null" if if_exists => {
            return Err(
                "condition operator 'NullIfExists' is not valid: Null already tests existence"
                    .to_owned(),
            );
        }
        "Null" if set != SetQualifier::None => {
            return Err(format!(
                "condition operator '{name}' is not valid: Null cannot take a set qualifier"
            ));
        }
        "Null" => return Ok(Operator::Null),
        _ => {
            return Err(format!(
                "unknown or unsupported condition operator '{name}'; supported: StringEquals, \
                 StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike, \
                 StringNotLike (each optionally with IfExists and ForAnyValue:/ForAllValues:) and Null"
            ));
        }
    };
    Ok(Operator::String {
        op,
        negated,
        set,
        if_exists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW_GET: &str =
        r#""Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*""#;
    const ANYONE: &str = r#""Principal":{"AWS":"*"}"#;

    fn errors(json: &str, kind: PolicyKind) -> Vec<ValidationError> {
        match Policy::parse(json, kind) {
            Ok(policy) => panic!("expected errors, parsed {policy:?}"),
            Err(errors) => {
                assert!(!errors.is_empty());
                assert!(
                    errors.iter().all(|e| e.check_name == SYNTAX_CHECK),
                    "{errors:?}"
                );
                errors
            }
        }
    }

    /// Asserts parsing fails with an error whose message contains every needle.
    fn rejects(json: &str, kind: PolicyKind, needles: &[&str]) {
        let errors = errors(json, kind);
        assert!(
            errors
                .iter()
                .any(|e| needles.iter().all(|n| e.message.contains(n))),
            "no error containing {needles:?} in {errors:?}"
        );
    }

    fn statement(body: &str) -> String {
        format!(r#"{{"Version":"2012-10-17","Statement":[{{{body}}}]}}"#)
    }

    fn resource_statement(body: &str) -> String {
        statement(&format!("{ANYONE},{body}"))
    }

    #[test]
    fn single_statement_object_and_array_both_parse() {
        let single =
            format!(r#"{{"Version":"2012-10-17","Statement":{{"Sid":"one",{ALLOW_GET}}}}}"#);
        let policy = Policy::parse(&single, PolicyKind::Identity).unwrap();
        assert_eq!(policy.sids().collect::<Vec<_>>(), [Some("one")]);

        let array = format!(
            r#"{{"Version":"2012-10-17","Id":"p1","Statement":[{{"Sid":"a",{ALLOW_GET}}},{{{ALLOW_GET}}}]}}"#
        );
        let policy = Policy::parse(&array, PolicyKind::Identity).unwrap();
        assert_eq!(policy.sids().collect::<Vec<_>>(), [Some("a"), None]);
        assert_eq!(policy.id(), Some("p1"));
        assert_eq!(policy.version(), Some("2012-10-17"));
        assert_eq!(policy.kind(), PolicyKind::Identity);
    }

    #[test]
    fn the_documented_example_parses() {
        let json = r#"{"Version":"2012-10-17","Id":"optional","Statement":[{"Sid":"opt","Effect":"Allow","Principal":{"AWS":["keyward:principal/app"]},"Action":["secretsmanager:GetSecretValue","kms:*"],"Resource":"arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"billing","secretsmanager:VersionStage":"AWSCURRENT"}}}]}"#;
        let policy = Policy::parse(json, PolicyKind::Resource).unwrap();
        let s = &policy.statements[0];
        assert_eq!(s.effect, Effect::Allow);
        assert_eq!(
            s.principals.as_deref(),
            Some(&["keyward:principal/app".to_owned()][..])
        );
        assert_eq!(s.actions.patterns.len(), 2);
        assert!(!s.resources.negated);
        assert_eq!(s.conditions.len(), 2);
    }

    #[test]
    fn version_may_be_absent_or_either_known_date() {
        for version in [
            "",
            r#""Version":"2008-10-17","#,
            r#""Version":"2012-10-17","#,
        ] {
            let json = format!(r#"{{{version}"Statement":{{{ALLOW_GET}}}}}"#);
            assert!(Policy::parse(&json, PolicyKind::Identity).is_ok(), "{json}");
        }
        let json = format!(r#"{{"Version":"2013-01-01","Statement":{{{ALLOW_GET}}}}}"#);
        rejects(&json, PolicyKind::Identity, &["Version", "2013-01-01"]);
        let json = format!(r#"{{"Version":2012,"Statement":{{{ALLOW_GET}}}}}"#);
        rejects(&json, PolicyKind::Identity, &["Version: expected a string"]);
        let json = format!(r#"{{"Id":["x"],"Statement":{{{ALLOW_GET}}}}}"#);
        rejects(&json, PolicyKind::Identity, &["Id: expected a string"]);
    }

    #[test]
    fn validation_errors_display_with_their_check_name() {
        let error = ValidationError {
            check_name: SYNTAX_CHECK,
            message: "Statement: x".to_owned(),
        };
        assert_eq!(error.to_string(), "SYNTAX_CHECK: Statement: x");
    }

    #[test]
    fn not_json_and_not_an_object_are_syntax_errors() {
        rejects("{\"Statement\":", PolicyKind::Identity, &["not valid JSON"]);
        rejects("", PolicyKind::Identity, &["not valid JSON"]);
        rejects("[]", PolicyKind::Identity, &["must be a JSON object"]);
        rejects(
            "\"Allow\"",
            PolicyKind::Identity,
            &["must be a JSON object"],
        );
    }

    #[test]
    fn statement_must_exist_and_be_objects() {
        rejects(
            r#"{"Version":"2012-10-17"}"#,
            PolicyKind::Identity,
            &["'Statement'"],
        );
        rejects(
            r#"{"Statement":[]}"#,
            PolicyKind::Identity,
            &["Statement: must contain at least one"],
        );
        rejects(
            r#"{"Statement":"Allow"}"#,
            PolicyKind::Identity,
            &["Statement: expected an object or an array"],
        );
        let json = format!(r#"{{"Statement":[{{{ALLOW_GET}}}, 7]}}"#);
        rejects(
            &json,
            PolicyKind::Identity,
            &["Statement[1]: expected an object"],
        );
    }

    #[test]
    fn unknown_elements_are_named() {
        let json =
            format!(r#"{{"Version":"2012-10-17","Comment":"x","Statement":{{{ALLOW_GET}}}}}"#);
        rejects(
            &json,
            PolicyKind::Identity,
            &["unknown top-level element 'Comment'"],
        );
        rejects(
            &statement(&format!(r#"{ALLOW_GET},"Foo":1"#)),
            PolicyKind::Identity,
            &["Statement[0]", "unknown statement element 'Foo'"],
        );
        // Element names are case-sensitive, as in IAM.
        rejects(
            &statement(r#""effect":"Allow","Action":"kms:Decrypt","Resource":"*""#),
            PolicyKind::Identity,
            &["unknown statement element 'effect'"],
        );
    }

    #[test]
    fn duplicate_elements_are_rejected() {
        rejects(
            &statement(r#""Effect":"Deny","Effect":"Allow","Action":"kms:Decrypt","Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0]", "duplicate element 'Effect'"],
        );
        let json = format!(r#"{{"Statement":{{{ALLOW_GET}}},"Statement":{{{ALLOW_GET}}}}}"#);
        rejects(
            &json,
            PolicyKind::Identity,
            &["duplicate element 'Statement'"],
        );
    }

    #[test]
    fn effect_is_required_and_case_sensitive() {
        rejects(
            &statement(r#""Action":"kms:Decrypt","Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0]", "'Effect'"],
        );
        rejects(
            &statement(r#""Effect":"allow","Action":"kms:Decrypt","Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0].Effect", "\"allow\""],
        );
        rejects(
            &statement(r#""Effect":true,"Action":"kms:Decrypt","Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0].Effect", "a boolean"],
        );
    }

    #[test]
    fn action_xor_not_action() {
        rejects(
            &statement(
                r#""Effect":"Allow","Action":"kms:Decrypt","NotAction":"kms:Encrypt","Resource":"*""#,
            ),
            PolicyKind::Identity,
            &["Statement[0]", "both 'Action' and 'NotAction'"],
        );
        rejects(
            &statement(r#""Effect":"Allow","Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0]", "'Action' or 'NotAction'"],
        );
        let policy = Policy::parse(
            &statement(r#""Effect":"Deny","NotAction":["kms:Decrypt"],"Resource":"*""#),
            PolicyKind::Identity,
        )
        .unwrap();
        assert!(policy.statements[0].actions.negated);
    }

    #[test]
    fn action_types_and_format() {
        rejects(
            &statement(r#""Effect":"Allow","Action":5,"Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0].Action: expected a string or an array of strings"],
        );
        rejects(
            &statement(r#""Effect":"Allow","Action":["kms:Decrypt",{"a":1}],"Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0].Action[1]: expected a string"],
        );
        rejects(
            &statement(r#""Effect":"Allow","Action":[],"Resource":"*""#),
            PolicyKind::Identity,
            &["Statement[0].Action", "empty array"],
        );
        for bad in [
            "kms",
            "kms:",
            ":Decrypt",
            "km s:Decrypt",
            "kms:De/crypt",
            "",
        ] {
            let body = format!(r#""Effect":"Allow","NotAction":["{bad}"],"Resource":"*""#);
            rejects(
                &statement(&body),
                PolicyKind::Identity,
                &["Statement[0].NotAction[0]", "not a valid action"],
            );
        }
        for good in [
            "*",
            "kms:*",
            "secretsmanager:Get*",
            "kms:Re?ncrypt*",
            "KMS:DECRYPT",
        ] {
            let body = format!(r#""Effect":"Allow","Action":"{good}","Resource":"*""#);
            assert!(
                Policy::parse(&statement(&body), PolicyKind::Identity).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn resource_xor_not_resource_and_required() {
        rejects(
            &statement(r#""Effect":"Allow","Action":"kms:Decrypt""#),
            PolicyKind::Identity,
            &["Statement[0]", "'Resource' or 'NotResource'"],
        );
        rejects(
            &statement(
                r#""Effect":"Allow","Action":"kms:Decrypt","Resource":"*","NotResource":"*""#,
            ),
            PolicyKind::Identity,
            &["both 'Resource' and 'NotResource'"],
        );
        rejects(
            &statement(r#""Effect":"Allow","Action":"kms:Decrypt","Resource":{"arn":"x"}"#),
            PolicyKind::Identity,
            &["Statement[0].Resource: expected a string or an array of strings"],
        );
        rejects(
            &statement(r#""Effect":"Allow","Action":"kms:Decrypt","Resource":["*",""]"#),
            PolicyKind::Identity,
            &["Statement[0].Resource[1]", "empty"],
        );
    }

    #[test]
    fn principal_rules_depend_on_policy_kind() {
        rejects(
            &resource_statement(ALLOW_GET),
            PolicyKind::Identity,
            &["Statement[0].Principal", "identity policy"],
        );
        rejects(
            &statement(ALLOW_GET),
            PolicyKind::Resource,
            &["Statement[0]", "'Principal'"],
        );
        assert!(Policy::parse(&resource_statement(ALLOW_GET), PolicyKind::Resource).is_ok());
    }

    #[test]
    fn supported_principal_forms() {
        for principal in [
            r#""*""#,
            r#"{"AWS":"*"}"#,
            r#"{"AWS":"keyward:principal/app"}"#,
            r#"{"AWS":["keyward:principal/app","keyward:principal/batch-*","keyward:principal/job?"]}"#,
        ] {
            let json = statement(&format!(r#""Principal":{principal},{ALLOW_GET}"#));
            assert!(
                Policy::parse(&json, PolicyKind::Resource).is_ok(),
                "{principal}"
            );
        }
    }

    #[test]
    fn only_key_policies_may_name_the_account() {
        let root = statement(&format!(
            r#""Principal":{{"AWS":"arn:keyward:iam::000000000000:root"}},{ALLOW_GET}"#
        ));
        assert!(Policy::parse(&root, PolicyKind::Key).is_ok());
        rejects(
            &root,
            PolicyKind::Resource,
            &["Principal.AWS", "not supported"],
        );
        for near in [
            "arn:keyward:iam::00000000000:root",
            "arn:keyward:iam::*:root",
            "arn:aws-cn:iam::000000000000:root",
            "arn:keyward:iam::000000000000:user/x",
        ] {
            let json = statement(&format!(r#""Principal":{{"AWS":"{near}"}},{ALLOW_GET}"#));
            rejects(&json, PolicyKind::Key, &["Principal.AWS", "not supported"]);
        }
        assert_eq!(
            account_root("arn:keyward:iam::123456789012:root"),
            Some("123456789012")
        );
        // AWS's partition names the same account.
        assert_eq!(
            account_root("arn:aws:iam::123456789012:root"),
            Some("123456789012")
        );
    }

    #[test]
    fn unsupported_principal_forms_are_errors() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#""Principal":{"Service":"kms.amazonaws.com"}"#,
                &["Principal.Service", "not supported"],
            ),
            (
                r#""Principal":{"AWS":"*","Federated":"x"}"#,
                &["Principal.Federated", "not supported"],
            ),
            (
                r#""Principal":{"AWS":"arn:aws:iam::000000000000:root"}"#,
                &[
                    "Principal.AWS",
                    "arn:aws:iam::000000000000:root",
                    "not supported",
                ],
            ),
            (
                r#""Principal":{"AWS":["keyward:principal/a","000000000000"]}"#,
                &["Principal.AWS[1]", "not supported"],
            ),
            (
                r#""Principal":{"AWS":"keyward:principal/"}"#,
                &["Principal.AWS", "not supported"],
            ),
            (
                r#""Principal":"keyward:principal/app""#,
                &["Principal", "not supported"],
            ),
            (r#""Principal":{}"#, &["Principal", "'AWS'"]),
            (r#""Principal":["*"]"#, &["Principal", "an array"]),
            (
                r#""Principal":{"AWS":7}"#,
                &["Principal.AWS: expected a string or an array of strings"],
            ),
            (
                r#""Principal":{"AWS":"keyward:principal/${aws:username}"}"#,
                &["Principal.AWS", "policy variables"],
            ),
        ];
        for (principal, needles) in cases {
            rejects(
                &statement(&format!("{principal},{ALLOW_GET}")),
                PolicyKind::Resource,
                needles,
            );
        }
        rejects(
            &statement(&format!(r#""NotPrincipal":{{"AWS":"*"}},{ALLOW_GET}"#)),
            PolicyKind::Resource,
            &["Statement[0].NotPrincipal", "not supported"],
        );
        rejects(
            &statement(&format!(r#""NotPrincipal":{{"AWS":"*"}},{ALLOW_GET}"#)),
            PolicyKind::Identity,
            &["NotPrincipal", "not supported"],
        );
    }

    #[test]
    fn every_supported_operator_parses() {
        let operators = [
            "StringEquals",
            "StringNotEquals",
            "StringEqualsIgnoreCase",
            "StringNotEqualsIgnoreCase",
            "StringLike",
            "StringNotLike",
        ];
        for op in operators {
            for prefix in ["", "ForAnyValue:", "ForAllValues:"] {
                for suffix in ["", "IfExists"] {
                    let body = format!(
                        r#"{ALLOW_GET},"Condition":{{"{prefix}{op}{suffix}":{{"kms:EncryptionContext:x":["a","b"]}}}}"#
                    );
                    let policy = Policy::parse(&statement(&body), PolicyKind::Identity)
                        .unwrap_or_else(|e| panic!("{prefix}{op}{suffix}: {e:?}"));
                    assert_eq!(policy.statements[0].conditions.len(), 1);
                }
            }
        }
        let body = format!(
            r#"{ALLOW_GET},"Condition":{{"Null":{{"kms:EncryptionContext:a":"true","kms:EncryptionContext:b":false}}}}"#
        );
        let policy = Policy::parse(&statement(&body), PolicyKind::Identity).unwrap();
        assert!(matches!(
            policy.statements[0].conditions[1].test,
            Test::Null {
                absent_ok: false,
                present_ok: true
            }
        ));
    }

    #[test]
    fn unknown_and_malformed_operators_are_errors() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"{"NumericEquals":{"kms:EncryptionContext:x":"1"}}"#,
                &[
                    "Statement[0].Condition.NumericEquals",
                    "unsupported condition operator 'NumericEquals'",
                ],
            ),
            (
                r#"{"Bool":{"aws:SecureTransport":"true"}}"#,
                &["unsupported condition operator 'Bool'"],
            ),
            (
                r#"{"stringequals":{"kms:EncryptionContext:x":"1"}}"#,
                &["unsupported condition operator 'stringequals'"],
            ),
            (
                r#"{"ForSomeValues:StringEquals":{"kms:EncryptionContext:x":"1"}}"#,
                &["'ForSomeValues:StringEquals'"],
            ),
            (
                r#"{"NullIfExists":{"kms:EncryptionContext:x":"true"}}"#,
                &["Condition.NullIfExists", "IfExists"],
            ),
            (
                r#"{"ForAnyValue:Null":{"kms:EncryptionContext:x":"true"}}"#,
                &["Condition.ForAnyValue:Null", "set qualifier"],
            ),
            (
                r#"{"Null":{"kms:EncryptionContext:x":"yes"}}"#,
                &["Condition.Null.kms:EncryptionContext:x", "\"yes\""],
            ),
            (
                r#"["StringEquals"]"#,
                &["Statement[0].Condition: expected an object"],
            ),
            (
                r#"{"StringEquals":"kms:EncryptionContext:x"}"#,
                &["Condition.StringEquals: expected an object of condition keys"],
            ),
            (
                r#"{"StringEquals":{}}"#,
                &["Condition.StringEquals", "at least one condition key"],
            ),
            (
                r#"{"StringEquals":{"kms:EncryptionContext:x":{"a":"b"}}}"#,
                &[
                    "Condition.StringEquals.kms:EncryptionContext:x: expected a string or an array of strings",
                ],
            ),
            (
                r#"{"StringEquals":{"kms:EncryptionContext:x":["a",null]}}"#,
                &["Condition.StringEquals.kms:EncryptionContext:x[1]", "null"],
            ),
            (
                r#"{"StringEquals":{"kms:EncryptionContext:x":[]}}"#,
                &[
                    "Condition.StringEquals.kms:EncryptionContext:x",
                    "at least one value",
                ],
            ),
            (
                r#"{"StringEquals":{"kms:EncryptionContext:x":1.5}}"#,
                &["Condition.StringEquals.kms:EncryptionContext:x", "a number"],
            ),
            (
                r#"{"StringEquals":{"kms:EncryptionContext:x":"a","kms:EncryptionContext:x":"b"}}"#,
                &["duplicate condition key 'kms:EncryptionContext:x'"],
            ),
            (
                r#"{"StringLike":{"kms:EncryptionContext:x":"a"},"StringLike":{"kms:EncryptionContext:y":"b"}}"#,
                &["duplicate condition operator 'StringLike'"],
            ),
        ];
        for (condition, needles) in cases {
            let body = format!(r#"{ALLOW_GET},"Condition":{condition}"#);
            rejects(&statement(&body), PolicyKind::Identity, needles);
        }
    }

    #[test]
    fn condition_values_may_be_booleans_or_integers() {
        let body = format!(
            r#"{ALLOW_GET},"Condition":{{"StringEquals":{{"kms:EncryptionContext:n":123456789012,"kms:EncryptionContext:b":[true,"x"]}}}}"#
        );
        let policy = Policy::parse(&statement(&body), PolicyKind::Identity).unwrap();
        let values: Vec<_> = policy.statements[0]
            .conditions
            .iter()
            .map(|c| match &c.test {
                Test::String { values, .. } => values.clone(),
                Test::Null { .. } => panic!("not a string test"),
            })
            .collect();
        assert_eq!(
            values,
            [
                vec!["123456789012".to_owned()],
                vec!["true".to_owned(), "x".to_owned()]
            ]
        );
    }

    #[test]
    fn policy_variables_are_rejected_everywhere_they_would_be_interpreted() {
        let cases = [
            r#""Effect":"Allow","Action":"kms:Decrypt","Resource":"arn:aws:kms:*:key/${aws:username}""#,
            r#""Effect":"Allow","Action":"kms:Decrypt","NotResource":["*","arn:${x}"]"#,
            r#""Effect":"Allow","Action":"kms:${x}","Resource":"*""#,
            r#""Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"StringLike":{"kms:EncryptionContext:x":"${aws:username}*"}}"#,
            r#""Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:${x}":"a"}}"#,
        ];
        for body in cases {
            rejects(
                &statement(body),
                PolicyKind::Identity,
                &["Statement[0]", "policy variables"],
            );
        }
    }

    #[test]
    fn sids_must_be_strings_and_unique() {
        let json = format!(
            r#"{{"Statement":[{{"Sid":"x",{ALLOW_GET}}},{{"Sid":"y",{ALLOW_GET}}},{{"Sid":"x",{ALLOW_GET}}}]}}"#
        );
        let errors = errors(&json, PolicyKind::Identity);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .contains("Statement[2].Sid: duplicate Sid 'x'")
        );
        rejects(
            &statement(&format!(r#""Sid":1,{ALLOW_GET}"#)),
            PolicyKind::Identity,
            &["Statement[0].Sid: expected a string"],
        );
    }

    #[test]
    fn condition_keys_requests_do_not_carry_are_refused() {
        for key in [
            "aws:PrincipalArn",
            "aws:SourceIp",
            "secretsmanager:ResourceTag/team",
            "kms:CallerAccount",
            "kms:EncryptionContext:",
        ] {
            rejects(
                &statement(&format!(
                    r#"{ALLOW_GET},"Condition":{{"StringEquals":{{"{key}":"x"}}}}"#
                )),
                PolicyKind::Identity,
                &[
                    &format!("Condition.StringEquals.{key}"),
                    &format!("condition key '{key}' is not supported"),
                ],
            );
        }
        for key in [
            "secretsmanager:VersionStage",
            "SECRETSMANAGER:versionid",
            "kms:EncryptionContext:Tenant",
            "kms:encryptioncontextkeys",
        ] {
            let json = statement(&format!(
                r#"{ALLOW_GET},"Condition":{{"StringEquals":{{"{key}":"x"}}}}"#
            ));
            assert!(Policy::parse(&json, PolicyKind::Identity).is_ok(), "{key}");
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let json = r#"{
            "Version": "2012-10-17",
            "Extra": 1,
            "Statement": [
                {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"},
                {"Effect": "Permit", "Action": 3, "Resource": "*", "Principal": "*"},
                {"Effect": "Deny", "Action": "kms:Decrypt", "Condition": {"DateLessThan": {"aws:CurrentTime": "2030"}}}
            ]
        }"#;
        let errors = errors(json, PolicyKind::Identity);
        let expected = [
            "unknown top-level element 'Extra'",
            "Statement[1].Effect",
            "Statement[1].Action: expected a string or an array of strings",
            "Statement[1].Principal",
            "Statement[2]: missing required element 'Resource' or 'NotResource'",
            "Statement[2].Condition.DateLessThan",
            "condition key 'aws:CurrentTime' is not supported",
        ];
        for needle in expected {
            assert!(
                errors.iter().any(|e| e.message.contains(needle)),
                "missing {needle:?} in {errors:?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:?}");
    }

    #[test]
    fn public_access_needs_allow_everyone_and_no_condition() {
        let public = [
            r#""Principal":"*""#,
            r#""Principal":{"AWS":"*"}"#,
            r#""Principal":{"AWS":["keyward:principal/app","keyward:principal/*"]}"#,
        ];
        for principal in public {
            let json = statement(&format!("{principal},{ALLOW_GET}"));
            assert!(
                Policy::parse(&json, PolicyKind::Resource)
                    .unwrap()
                    .grants_public_access(),
                "{principal}"
            );
        }
        let not_public = [
            format!(r#""Principal":{{"AWS":"keyward:principal/app"}},{ALLOW_GET}"#),
            format!(r#""Principal":{{"AWS":"keyward:principal/app*"}},{ALLOW_GET}"#),
            r#""Principal":"*","Effect":"Deny","Action":"*","Resource":"*""#.to_owned(),
            format!(
                r#""Principal":"*",{ALLOW_GET},"Condition":{{"StringEquals":{{"secretsmanager:VersionStage":"x"}}}}"#
            ),
        ];
        for body in &not_public {
            let policy = Policy::parse(&statement(body), PolicyKind::Resource).unwrap();
            assert!(!policy.grants_public_access(), "{body}");
        }
        let identity = Policy::parse(&statement(ALLOW_GET), PolicyKind::Identity).unwrap();
        assert!(!identity.grants_public_access());
    }
}
