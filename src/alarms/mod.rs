//! Alarms: rules evaluated in-process on the stream of audited requests, and webhooks that
//! tell someone when one fires.
//!
//! - [`rules`]: the configuration and [`Alarms`], the engine called once per request.
//! - [`window`]: the bounded sliding-window counter behind the threshold rules.
//! - [`webhook`]: the background task that POSTs firings as JSON, with bounded retries.
//! - `firing`: what an alarm reports ([`Firing`]), shared by the two above.
//!
//! Observations carry names and outcomes only, never secret values, so nothing the engine
//! logs or sends can leak one.

mod firing;
mod history;
pub mod rules;
pub mod webhook;
mod window;

pub use firing::Firing;
pub use history::StoreHistory;
pub use rules::{
    Alarms, AlarmsConfig, Condition, Limit, Observation, Outcome, ReaderHistory, RuleConfig,
    RuleKind,
};
pub use webhook::WebhookTask;

/// An alarms configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlarmsError {
    #[error("alarm rule #{index} has an empty name")]
    EmptyName { index: usize },
    #[error("alarm rule name {0:?} is used more than once")]
    DuplicateName(String),
    #[error("alarm rule {rule:?}: {reason}")]
    Rule { rule: String, reason: String },
    #[error("webhook {url:?}: https webhooks are not supported yet")]
    HttpsWebhook { url: String },
    #[error("webhook {url:?}: {reason}")]
    Webhook { url: String, reason: String },
    #[error("alarms: {0}")]
    Setting(String),
}
