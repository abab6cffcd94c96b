//! Rotation fields in and out of protobuf: rules, rotator configuration and status.

use super::pb::{self, rotator_config::Kind};
use crate::service::secrets::{RotationRules, SecretsError};
use crate::store::{PasswordPolicy, PostgresStrategy, RotationRecord, RotatorSpec};
use crate::time::Timestamp;

fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub fn rules_in(rules: pb::RotationRulesType) -> RotationRules {
    RotationRules {
        automatically_after_days: rules.automatically_after_days,
        schedule_expression: optional(rules.schedule_expression),
        duration: optional(rules.duration),
    }
}

fn rules_out(rotation: &RotationRecord) -> pb::RotationRulesType {
    pb::RotationRulesType {
        automatically_after_days: rotation.automatically_after_days,
        schedule_expression: rotation.schedule_expression.clone().unwrap_or_default(),
        duration: rotation.duration.clone().unwrap_or_default(),
    }
}

fn policy_in(policy: Option<pb::PasswordPolicy>) -> PasswordPolicy {
    let p = policy.unwrap_or_default();
    PasswordPolicy {
        password_length: p.password_length,
        exclude_characters: p.exclude_characters,
        exclude_numbers: p.exclude_numbers,
        exclude_punctuation: p.exclude_punctuation,
        exclude_uppercase: p.exclude_uppercase,
        exclude_lowercase: p.exclude_lowercase,
        include_space: p.include_space,
        require_each_included_type: p.require_each_included_type,
    }
}

fn policy_out(p: &PasswordPolicy) -> pb::PasswordPolicy {
    pb::PasswordPolicy {
        password_length: p.password_length,
        exclude_characters: p.exclude_characters.clone(),
        exclude_numbers: p.exclude_numbers,
        exclude_punctuation: p.exclude_punctuation,
        exclude_uppercase: p.exclude_uppercase,
        exclude_lowercase: p.exclude_lowercase,
        include_space: p.include_space,
        require_each_included_type: p.require_each_included_type,
    }
}

pub fn rotator_in(config: pb::RotatorConfig) -> Result<RotatorSpec, SecretsError> {
    match config.kind {
        Some(Kind::Generated(g)) => Ok(RotatorSpec::Generated {
            password: policy_in(g.password),
            template: optional(g.template),
        }),
        Some(Kind::Postgresql(p)) => Ok(RotatorSpec::Postgresql {
            strategy: match p.strategy.as_str() {
                "" | "single-user" => PostgresStrategy::SingleUser,
                "alternating-users" => PostgresStrategy::AlternatingUsers,
                other => {
                    return Err(SecretsError::invalid(
                        "rotator",
                        format!(
                            "unknown PostgreSQL strategy {other:?}: single-user or alternating-users"
                        ),
                    ));
                }
            },
            admin_secret_id: optional(p.admin_secret_id),
            password: policy_in(p.password),
        }),
        Some(Kind::Exec(e)) => Ok(RotatorSpec::Exec { name: e.name }),
        None => Err(SecretsError::invalid(
            "rotator",
            "name a kind: generated, postgresql or exec",
        )),
    }
}

fn rotator_out(spec: &RotatorSpec) -> pb::RotatorConfig {
    let kind = match spec {
        RotatorSpec::Generated { password, template } => Kind::Generated(pb::GeneratedRotator {
            password: Some(policy_out(password)),
            template: template.clone().unwrap_or_default(),
        }),
        RotatorSpec::Postgresql {
            strategy,
            admin_secret_id,
            password,
        } => Kind::Postgresql(pb::PostgresqlRotator {
            strategy: match strategy {
                PostgresStrategy::SingleUser => "single-user",
                PostgresStrategy::AlternatingUsers => "alternating-users",
            }
            .into(),
            admin_secret_id: admin_secret_id.clone().unwrap_or_default(),
            password: Some(policy_out(password)),
        }),
        RotatorSpec::Exec { name } => Kind::Exec(pb::ExecRotator { name: name.clone() }),
    };
    pb::RotatorConfig { kind: Some(kind) }
}

/// The rotation fields DescribeSecret and ListSecrets share.
pub struct RotationFields {
    pub enabled: bool,
    pub rules: Option<pb::RotationRulesType>,
    pub last_rotated_date: Option<i64>,
    pub next_rotation_date: Option<i64>,
    pub rotator: Option<pb::RotatorConfig>,
    pub status: Option<pb::RotationStatus>,
}

pub fn fields_out(rotation: Option<&RotationRecord>) -> RotationFields {
    let Some(r) = rotation else {
        return RotationFields {
            enabled: false,
            rules: None,
            last_rotated_date: None,
            next_rotation_date: None,
            rotator: None,
            status: None,
        };
    };
    RotationFields {
        enabled: r.enabled,
        rules: (r.automatically_after_days.is_some() || r.schedule_expression.is_some())
            .then(|| rules_out(r)),
        last_rotated_date: r.last_rotated_at.map(Timestamp::secs),
        next_rotation_date: r.next_rotation_at.map(Timestamp::secs),
        rotator: Some(rotator_out(&r.rotator)),
        status: r.in_flight.as_ref().map(|f| pb::RotationStatus {
            version_id: f.token.clone(),
            step: f.step.as_str().into(),
            failed_attempts: f.failed_attempts,
            last_error: f.last_error.clone().unwrap_or_default(),
            next_attempt_date: Some(f.retry_at.secs()),
        }),
    }
}
