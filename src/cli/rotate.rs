//! `keyward secrets rotate`: the RotateSecret request from friendly flags.

use crate::api::pb::{self, rotator_config::Kind};
use clap::Args;

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The secret's name or ARN.
    pub name: String,
    /// "rate(30 days)", "rate(12 hours)", "cron(0 2 ? * SUN *)" (UTC), or a number of days.
    #[arg(long)]
    pub schedule: Option<String>,
    /// The rotation window, e.g. "3h".
    #[arg(long)]
    pub duration: Option<String>,
    /// generated | postgresql | exec:NAME (a program named in the server's configuration).
    #[arg(long)]
    pub rotator: Option<String>,
    /// postgresql: single-user (default) or alternating-users.
    #[arg(long)]
    pub strategy: Option<String>,
    /// postgresql alternating-users: the secret holding administrator credentials.
    #[arg(long)]
    pub admin_secret_id: Option<String>,
    /// generated: a JSON object whose "{{generate}}" strings get new passwords.
    #[arg(long)]
    pub template: Option<String>,
    /// Length of generated passwords (default 32).
    #[arg(long)]
    pub password_length: Option<i64>,
    /// Characters generated passwords must not contain.
    #[arg(long, default_value = "")]
    pub exclude_characters: String,
    #[arg(long)]
    pub exclude_punctuation: bool,
    /// Store the schedule and rotator without rotating now.
    #[arg(long)]
    pub no_rotate_immediately: bool,
    #[arg(long, default_value = "")]
    pub client_request_token: String,
}

impl RotateArgs {
    pub fn request(self) -> Result<pb::RotateSecretRequest, String> {
        let rotation_rules = self.schedule.map(|schedule| {
            let schedule = schedule.trim().to_owned();
            match schedule.parse::<i64>() {
                Ok(days) => pb::RotationRulesType {
                    automatically_after_days: Some(days),
                    schedule_expression: String::new(),
                    duration: self.duration.clone().unwrap_or_default(),
                },
                Err(_) => pb::RotationRulesType {
                    automatically_after_days: None,
                    schedule_expression: schedule,
                    duration: self.duration.clone().unwrap_or_default(),
                },
            }
        });
        if rotation_rules.is_none() && self.duration.is_some() {
            return Err("--duration needs --schedule".into());
        }
        let password = Some(pb::PasswordPolicy {
            password_length: self.password_length,
            exclude_characters: self.exclude_characters,
            exclude_punctuation: self.exclude_punctuation,
            ..Default::default()
        });
        let kind = match self.rotator.as_deref() {
            None => None,
            Some("generated") => Some(Kind::Generated(pb::GeneratedRotator {
                password,
                template: self.template.unwrap_or_default(),
            })),
            Some("postgresql") => Some(Kind::Postgresql(pb::PostgresqlRotator {
                strategy: self.strategy.unwrap_or_default(),
                admin_secret_id: self.admin_secret_id.unwrap_or_default(),
                password,
            })),
            Some(other) => match other.strip_prefix("exec:") {
                Some(name) if !name.is_empty() => Some(Kind::Exec(pb::ExecRotator {
                    name: name.to_owned(),
                })),
                _ => {
                    return Err(format!(
                        "unknown rotator {other:?}: generated, postgresql or exec:NAME"
                    ));
                }
            },
        };
        Ok(pb::RotateSecretRequest {
            secret_id: self.name,
            client_request_token: super::token_or_new(self.client_request_token),
            rotation_rules,
            rotator: kind.map(|kind| pb::RotatorConfig { kind: Some(kind) }),
            rotate_immediately: Some(!self.no_rotate_immediately),
        })
    }
}
