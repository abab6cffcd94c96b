//! What an alarm reports, shared by the rules that raise it and the webhooks that send it.

use serde::Serialize;

/// What an alarm reports: logged, returned by [`Alarms::observe`](super::Alarms::observe) and sent to the webhooks.
#[derive(Serialize, Clone, Debug)]
pub struct Firing {
    pub alarm: String,
    pub kind: &'static str,
    /// RFC 3339, UTC, of the observation that fired.
    pub time: String,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub count: Option<u64>,
    pub window_secs: Option<u64>,
    pub message: String,
}
