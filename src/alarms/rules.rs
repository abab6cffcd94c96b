//! Alarm configuration and the engine that evaluates every rule on every request.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;

use super::AlarmsError;
use super::firing::Firing;
use super::webhook::{self, Target, WebhookSettings, WebhookTask, Webhooks};
use super::window::SlidingWindow;
use crate::duration;
use crate::outcome::Exception;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_ATTEMPTS: u32 = 4;
/// Retries past this only delay the firings queued behind a dead receiver.
const MAX_ATTEMPTS: u32 = 10;
const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
const MAX_WINDOW_SECS: u64 = 86_400;
/// Principals (or principal/key pairs) with live state, per rule. Past this, newcomers share
/// one overflow slot, so a flood of distinct principals still alarms but cannot grow memory.
const MAX_TRACKED: usize = 100_000;
/// pending_deletion_key_use reports a (principal, key) pair at most once per this.
const PENDING_DELETION_INTERVAL_MS: i64 = 60_000;

const GET_SECRET_VALUE: &str = "secretsmanager:GetSecretValue";
const BATCH_GET_SECRET_VALUE: &str = "secretsmanager:BatchGetSecretValue";
const DECRYPT: &str = "kms:Decrypt";
const INVALID_CIPHERTEXT: Exception = Exception::InvalidCiphertext;

/// The `[alarms]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// `http://` URLs each firing is POSTed to.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Per attempt: connect, send and the response status together.
    #[serde(
        rename = "webhook_timeout_ms",
        default = "default_timeout",
        deserialize_with = "duration::millis"
    )]
    pub webhook_timeout: Duration,
    /// Attempts in total per firing and URL, the first included.
    #[serde(default = "default_attempts")]
    pub webhook_attempts: u32,
    /// Wait before the second attempt, doubling after each. Not read from the file (the
    /// documented 0.5 s is the contract); tests shorten it.
    #[serde(skip, default = "default_backoff")]
    pub webhook_backoff: Duration,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_attempts() -> u32 {
    DEFAULT_ATTEMPTS
}

fn default_backoff() -> Duration {
    DEFAULT_BACKOFF
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            webhook_timeout: DEFAULT_TIMEOUT,
            webhook_attempts: DEFAULT_ATTEMPTS,
            webhook_backoff: DEFAULT_BACKOFF,
            rules: Vec::new(),
        }
    }
}

/// One `[[alarms.rule]]`: its name and what it watches, with the settings that kind takes and
/// no others. The file keeps its flat form (`kind`, `threshold`, `window_secs`); a setting the
/// kind does not take, or one it needs and lacks, is refused as the file is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct RuleConfig {
    pub name: String,
    pub condition: Condition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// More than `threshold` denied requests by one principal within `window`.
    DeniedRequests(Limit),
    /// A principal successfully read a secret it had never read before.
    FirstRead,
    /// More than `threshold` Decrypt calls failing with InvalidCiphertextException, from
    /// anyone, within `window`.
    DecryptFailures(Limit),
    /// A request used or tried a key pending deletion.
    PendingDeletionKeyUse,
    /// A replication peer site has been unreachable for more than `after`; once per outage.
    ReplicationPeerUnreachable { after: Duration },
    /// A cluster node has not reached the store (etcd) for more than `after`; once per outage.
    StoreUnreachable { after: Duration },
    /// A cluster duty (rotation, purge, a replication sender) has had no holder for more than
    /// `after`; once per duty and outage.
    DutyWithoutHolder { after: Duration },
}

/// A threshold rule's settings: `threshold` and `window_secs` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub threshold: u64,
    pub window: Duration,
}

impl Condition {
    pub fn kind(&self) -> RuleKind {
        match self {
            Self::DeniedRequests(_) => RuleKind::DeniedRequests,
            Self::FirstRead => RuleKind::FirstRead,
            Self::DecryptFailures(_) => RuleKind::DecryptFailures,
            Self::PendingDeletionKeyUse => RuleKind::PendingDeletionKeyUse,
            Self::ReplicationPeerUnreachable { .. } => RuleKind::ReplicationPeerUnreachable,
            Self::StoreUnreachable { .. } => RuleKind::StoreUnreachable,
            Self::DutyWithoutHolder { .. } => RuleKind::DutyWithoutHolder,
        }
    }
}

/// A rule as the file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    kind: RuleKind,
    #[serde(default)]
    threshold: Option<u64>,
    #[serde(default, deserialize_with = "duration::optional_secs")]
    window_secs: Option<Duration>,
}

impl TryFrom<RawRule> for RuleConfig {
    type Error = AlarmsError;

    fn try_from(raw: RawRule) -> Result<Self, AlarmsError> {
        use RuleKind::*;
        let kind = raw.kind.as_str();
        let invalid = |reason: String| AlarmsError::Rule {
            rule: raw.name.clone(),
            reason,
        };
        let condition = match (raw.kind, raw.threshold, raw.window_secs) {
            (DeniedRequests | DecryptFailures, None, _) => {
                return Err(invalid(format!("{kind} needs a threshold")));
            }
            (DeniedRequests | DecryptFailures, Some(_), None) => {
                return Err(invalid(format!("{kind} needs window_secs")));
            }
            (DeniedRequests, Some(threshold), Some(window)) => {
                Condition::DeniedRequests(Limit { threshold, window })
            }
            (DecryptFailures, Some(threshold), Some(window)) => {
                Condition::DecryptFailures(Limit { threshold, window })
            }
            (ReplicationPeerUnreachable | StoreUnreachable | DutyWithoutHolder, Some(_), _) => {
                return Err(invalid(format!("{kind} takes no threshold")));
            }
            (ReplicationPeerUnreachable | StoreUnreachable | DutyWithoutHolder, None, None) => {
                return Err(invalid(format!(
                    "{kind} needs window_secs: how long the outage may last before it fires"
                )));
            }
            (ReplicationPeerUnreachable, None, Some(after)) => {
                Condition::ReplicationPeerUnreachable { after }
            }
            (StoreUnreachable, None, Some(after)) => Condition::StoreUnreachable { after },
            (DutyWithoutHolder, None, Some(after)) => Condition::DutyWithoutHolder { after },
            (FirstRead | PendingDeletionKeyUse, Some(_), _)
            | (FirstRead | PendingDeletionKeyUse, _, Some(_)) => {
                return Err(invalid(format!("{kind} takes no threshold or window_secs")));
            }
            (FirstRead, None, None) => Condition::FirstRead,
            (PendingDeletionKeyUse, None, None) => Condition::PendingDeletionKeyUse,
        };
        Ok(Self {
            name: raw.name,
            condition,
        })
    }
}

/// The file's `kind`, and the `kind` a firing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    DeniedRequests,
    FirstRead,
    DecryptFailures,
    PendingDeletionKeyUse,
    ReplicationPeerUnreachable,
    StoreUnreachable,
    DutyWithoutHolder,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeniedRequests => "denied_requests",
            Self::FirstRead => "first_read",
            Self::DecryptFailures => "decrypt_failures",
            Self::PendingDeletionKeyUse => "pending_deletion_key_use",
            Self::ReplicationPeerUnreachable => "replication_peer_unreachable",
            Self::StoreUnreachable => "store_unreachable",
            Self::DutyWithoutHolder => "duty_without_holder",
        }
    }
}

impl AlarmsConfig {
    /// Checks the configuration without starting anything.
    pub fn validate(&self) -> Result<(), AlarmsError> {
        self.compile().map(drop)
    }

    fn compile(&self) -> Result<(Vec<Rule>, Vec<Target>, WebhookSettings), AlarmsError> {
        if self.webhook_timeout.is_zero() {
            return Err(AlarmsError::Setting(
                "webhook_timeout_ms must be greater than 0".into(),
            ));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.webhook_attempts) {
            return Err(AlarmsError::Setting(format!(
                "webhook_attempts must be between 1 and {MAX_ATTEMPTS}"
            )));
        }
        let targets = self
            .webhooks
            .iter()
            .map(|url| Target::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = HashSet::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        for (index, config) in self.rules.iter().enumerate() {
            if config.name.trim().is_empty() {
                return Err(AlarmsError::EmptyName { index });
            }
            if !names.insert(config.name.as_str()) {
                return Err(AlarmsError::DuplicateName(config.name.clone()));
            }
            rules.push(Rule::compile(config)?);
        }
        let settings = WebhookSettings {
            timeout: self.webhook_timeout,
            attempts: self.webhook_attempts,
            backoff: self.webhook_backoff,
            queue_capacity: webhook::QUEUE_CAPACITY,
        };
        Ok((rules, targets, settings))
    }
}

/// One observed request, from the audit stream. No secret values ever.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub principal: &'a str,
    /// `service:Operation`, e.g. `kms:Decrypt`.
    pub action: &'a str,
    /// The key or secret the request named; one observation per secret for batch reads.
    pub resource: &'a str,
    pub outcome: Outcome,
    /// Why the request failed, when it did.
    pub error: Option<Exception>,
    pub key_pending_deletion: bool,
}

pub use crate::outcome::Outcome;

/// A [`ReaderHistory`]'s answer. Boxed so that the history can be shared as a trait object.
pub type FirstRead<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;

pub trait ReaderHistory: Send + Sync {
    /// Records that principal read secret; true if it is the first time ever (persisted by
    /// the caller, e.g. in the store).
    fn first_read<'a>(&'a self, secret: &'a str, principal: &'a str) -> FirstRead<'a>;
}

/// The rule engine. Share it (it is `Sync`) and call [`Alarms::observe`] on every request.
pub struct Alarms {
    rules: Vec<Rule>,
    history: Arc<dyn ReaderHistory>,
    webhooks: Webhooks,
}

impl Alarms {
    /// Validates `config`; the returned task delivers webhooks and must be spawned for any to
    /// be sent. It ends once the `Alarms` is dropped and its queues are drained.
    pub fn new(
        config: AlarmsConfig,
        history: Arc<dyn ReaderHistory>,
    ) -> Result<(Alarms, WebhookTask), AlarmsError> {
        let (rules, targets, settings) = config.compile()?;
        let (webhooks, task) = webhook::start(targets, settings);
        Ok((
            Alarms {
                rules,
                history,
                webhooks,
            },
            task,
        ))
    }

    /// Evaluates every rule; returns what fired (also logged at WARN and queued to the
    /// webhooks). Cheap when nothing fires: called on every request.
    pub async fn observe(&self, o: &Observation<'_>) -> Vec<Firing> {
        // Asked once, before the rules, and only when a rule needs it: the history records the
        // read, so asking again would always hear "not the first time".
        let wants_history = is_successful_read(o)
            && self
                .rules
                .iter()
                .any(|rule| matches!(rule.check, Check::FirstRead));
        let first_read = match wants_history {
            true => Some(self.history.first_read(o.resource, o.principal).await),
            false => None,
        };
        let mut fired = Vec::new();
        for rule in &self.rules {
            if let Some(firing) = rule.evaluate(o, first_read) {
                rule.fired.fetch_add(1, Ordering::Relaxed);
                fired.push(firing);
            }
        }
        self.announce(&fired);
        fired
    }

    /// Logs each firing at WARN and queues it to the webhooks.
    fn announce(&self, fired: &[Firing]) {
        for firing in fired {
            tracing::warn!(
                alarm = %firing.alarm,
                kind = firing.kind,
                principal = firing.principal.as_deref(),
                resource = firing.resource.as_deref(),
                "{}",
                firing.message
            );
            self.webhooks.enqueue(firing);
        }
    }

    /// Told by a replication sender on each failed attempt: fires each
    /// `replication_peer_unreachable` rule once per outage, when `down_for` passes its window.
    pub fn peer_unreachable(&self, peer: &str, down_for: Duration, error: &str) -> Vec<Firing> {
        let message = format!(
            "replication peer {peer} has been unreachable for {}s: {error}",
            down_for.as_secs()
        );
        self.outage(
            RuleKind::ReplicationPeerUnreachable,
            peer,
            down_for,
            &message,
        )
    }

    /// The peer answered again: its next outage fires anew.
    pub fn peer_reachable(&self, peer: &str) {
        self.recovered(RuleKind::ReplicationPeerUnreachable, peer);
    }

    /// `subject` (a peer, "etcd", a duty) has been out for `down_for`: fires the rules of
    /// `kind` whose wait it passed, once per outage.
    pub fn outage(
        &self,
        kind: RuleKind,
        subject: &str,
        down_for: Duration,
        message: &str,
    ) -> Vec<Firing> {
        let mut fired = Vec::new();
        for rule in self.rules.iter().filter(|rule| rule.kind == kind) {
            let Check::Outage { after_secs, down } = &rule.check else {
                continue;
            };
            if down_for.as_secs() < *after_secs || !lock(down).insert(subject.to_owned()) {
                continue;
            }
            rule.fired.fetch_add(1, Ordering::Relaxed);
            fired.push(Firing {
                alarm: rule.name.clone(),
                kind: rule.kind.as_str(),
                time: rfc3339_ms(SystemClock.now_ms()),
                principal: None,
                resource: Some(subject.to_owned()),
                count: None,
                window_secs: Some(*after_secs),
                message: message.to_owned(),
            });
        }
        self.announce(&fired);
        fired
    }

    /// `subject` is back: its next outage fires anew.
    pub fn recovered(&self, kind: RuleKind, subject: &str) {
        for rule in self.rules.iter().filter(|rule| rule.kind == kind) {
            if let Check::Outage { down, .. } = &rule.check {
                lock(down).remove(subject);
            }
        }
    }

    /// Times each alarm fired since start, in configuration order.
    pub fn counters(&self) -> Vec<(String, u64)> {
        self.rules
            .iter()
            .map(|rule| (rule.name.clone(), rule.fired.load(Ordering::Relaxed)))
            .collect()
    }

    /// Webhook deliveries (one per firing and URL) that succeeded and that gave up.
    pub fn webhook_counters(&self) -> (u64, u64) {
        self.webhooks.stats.counters()
    }

    /// Webhook deliveries dropped because a URL's queue was full.
    pub fn webhook_dropped(&self) -> u64 {
        self.webhooks.stats.dropped()
    }

    #[cfg(test)]
    pub(crate) fn webhook_stats(&self) -> Arc<webhook::Stats> {
        Arc::clone(&self.webhooks.stats)
    }
}

struct Rule {
    name: String,
    kind: RuleKind,
    fired: AtomicU64,
    check: Check,
}

enum Check {
    Denied {
        limit: u64,
        window_secs: u64,
        state: Mutex<PerPrincipal>,
    },
    DecryptFailures {
        limit: u64,
        window_secs: u64,
        state: Mutex<Threshold>,
    },
    FirstRead,
    PendingDeletion(Mutex<RateLimit>),
    /// Something unreachable or missing for longer than `after_secs` (a peer, the store, a
    /// duty's holder): the subjects this rule has fired for in their current outage.
    Outage {
        after_secs: u64,
        down: Mutex<HashSet<String>>,
    },
}

impl Rule {
    fn compile(config: &RuleConfig) -> Result<Self, AlarmsError> {
        let invalid = |reason: String| AlarmsError::Rule {
            rule: config.name.clone(),
            reason,
        };
        let whole_secs = |window: Duration| {
            if window.subsec_nanos() != 0 {
                return Err(invalid("window_secs must be whole seconds".into()));
            }
            Ok(window.as_secs())
        };
        let threshold = |limit: &Limit| {
            if limit.threshold < 1 {
                return Err(invalid("threshold must be at least 1".into()));
            }
            let window_secs = whole_secs(limit.window)?;
            if !(1..=MAX_WINDOW_SECS).contains(&window_secs) {
                return Err(invalid(format!(
                    "window_secs must be between 1 and {MAX_WINDOW_SECS}"
                )));
            }
            // Bounded above by MAX_WINDOW_SECS, so this cannot overflow.
            Ok((limit.threshold, window_secs, window_secs as i64 * 1_000))
        };
        let check = match &config.condition {
            Condition::DeniedRequests(limit) => {
                let (limit, window_secs, window_ms) = threshold(limit)?;
                Check::Denied {
                    limit,
                    window_secs,
                    state: Mutex::new(PerPrincipal::new(window_ms, MAX_TRACKED)),
                }
            }
            Condition::DecryptFailures(limit) => {
                let (limit, window_secs, window_ms) = threshold(limit)?;
                Check::DecryptFailures {
                    limit,
                    window_secs,
                    state: Mutex::new(Threshold::new(window_ms)),
                }
            }
            Condition::ReplicationPeerUnreachable { after }
            | Condition::StoreUnreachable { after }
            | Condition::DutyWithoutHolder { after } => Check::Outage {
                after_secs: whole_secs(*after)?,
                down: Mutex::new(HashSet::new()),
            },
            Condition::FirstRead => Check::FirstRead,
            Condition::PendingDeletionKeyUse => {
                Check::PendingDeletion(Mutex::new(RateLimit::new(MAX_TRACKED)))
            }
        };
        Ok(Self {
            name: config.name.clone(),
            kind: config.condition.kind(),
            fired: AtomicU64::new(0),
            check,
        })
    }

    /// Returns the firing this observation causes, if any. `first_read` is the history's
    /// answer for a successful read, asked once for all rules.
    fn evaluate(&self, o: &Observation, first_read: Option<bool>) -> Option<Firing> {
        match &self.check {
            Check::Denied {
                limit,
                window_secs,
                state,
            } => {
                if o.outcome != Outcome::Denied {
                    return None;
                }
                let (count, overflow) = lock(state).record(o.principal, o.time_ms, *limit)?;
                let who = if overflow {
                    format!("principals beyond the {MAX_TRACKED} tracked one by one")
                } else {
                    format!("principal {}", o.principal)
                };
                let message = format!(
                    "{who} had {count} denied requests within {window_secs}s (threshold {limit})"
                );
                let principal = (!overflow).then_some(o.principal);
                Some(self.firing(o, principal, None, Some(count), Some(*window_secs), message))
            }
            Check::DecryptFailures {
                limit,
                window_secs,
                state,
            } => {
                if o.action != DECRYPT || o.error != Some(INVALID_CIPHERTEXT) {
                    return None;
                }
                let count = lock(state).record(o.time_ms, *limit)?;
                let message = format!(
                    "{count} Decrypt requests failed with {INVALID_CIPHERTEXT} within \
                     {window_secs}s (threshold {limit})"
                );
                Some(self.firing(o, None, None, Some(count), Some(*window_secs), message))
            }
            Check::FirstRead => {
                if !is_successful_read(o) || first_read != Some(true) {
                    return None;
                }
                let message = format!(
                    "principal {} read secret {} for the first time",
                    o.principal, o.resource
                );
                Some(self.firing(o, Some(o.principal), Some(o.resource), None, None, message))
            }
            Check::Outage { .. } => None,
            Check::PendingDeletion(state) => {
                if !o.key_pending_deletion {
                    return None;
                }
                let count = lock(state).record(o.principal, o.resource, o.time_ms)?;
                let message = format!(
                    "principal {} used key {} pending deletion ({}, {:?}); {count} use(s) since \
                     the last report",
                    o.principal, o.resource, o.action, o.outcome
                );
                Some(self.firing(
                    o,
                    Some(o.principal),
                    Some(o.resource),
                    Some(count),
                    None,
                    message,
                ))
            }
        }
    }

    fn firing(
        &self,
        o: &Observation,
        principal: Option<&str>,
        resource: Option<&str>,
        count: Option<u64>,
        window_secs: Option<u64>,
        message: String,
    ) -> Firing {
        Firing {
            alarm: self.name.clone(),
            kind: self.kind.as_str(),
            time: rfc3339_ms(o.time_ms),
            principal: principal.map(str::to_owned),
            resource: resource.map(str::to_owned),
            count,
            window_secs,
            message,
        }
    }
}

/// A poisoned lock only means another request panicked mid-update of some counters; the
/// alarms keep working on whatever it left.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A windowed count that fires once on crossing its limit and re-arms only after it has been
/// seen back at or below it, so a sustained burst is one firing, not one per request.
#[derive(Debug)]
struct Threshold {
    window: SlidingWindow,
    armed: bool,
}

impl Threshold {
    fn new(window_ms: i64) -> Self {
        Self {
            window: SlidingWindow::new(window_ms),
            armed: true,
        }
    }

    /// Counts one event; returns the count if this event fired.
    fn record(&mut self, now_ms: i64, limit: u64) -> Option<u64> {
        if self.window.advance(now_ms) <= limit {
            self.armed = true;
        }
        let count = self.window.add(now_ms);
        if count > limit && self.armed {
            self.armed = false;
            Some(count)
        } else {
            None
        }
    }
}

/// A [`Threshold`] per principal.
#[derive(Debug)]
struct PerPrincipal {
    window_ms: i64,
    cap: usize,
    principals: HashMap<String, Threshold>,
    /// Shared by principals that arrive while `cap` are tracked.
    overflow: Threshold,
    next_sweep_ms: i64,
}

impl PerPrincipal {
    fn new(window_ms: i64, cap: usize) -> Self {
        Self {
            window_ms,
            cap,
            principals: HashMap::new(),
            overflow: Threshold::new(window_ms),
            next_sweep_ms: i64::MIN,
        }
    }

    /// Counts one event; returns (count, whether it was the overflow slot) if it fired.
    fn record(&mut self, principal: &str, now_ms: i64, limit: u64) -> Option<(u64, bool)> {
        if now_ms >= self.next_sweep_ms {
            // A principal whose window emptied is re-armed anyway: dropping it loses nothing.
            self.principals
                .retain(|_, state| state.window.advance(now_ms) > 0);
            self.next_sweep_ms = now_ms.saturating_add(self.window_ms);
        }
        if let Some(state) = self.principals.get_mut(principal) {
            return state.record(now_ms, limit).map(|count| (count, false));
        }
        if self.principals.len() < self.cap {
            let mut state = Threshold::new(self.window_ms);
            let fired = state.record(now_ms, limit);
            self.principals.insert(principal.to_owned(), state);
            return fired.map(|count| (count, false));
        }
        self.overflow
            .record(now_ms, limit)
            .map(|count| (count, true))
    }
}

/// One report per (principal, key) per [`PENDING_DELETION_INTERVAL_MS`].
#[derive(Debug)]
struct RateLimit {
    cap: usize,
    slots: HashMap<(String, String), Slot>,
    /// Shared by pairs that arrive while `cap` are tracked.
    overflow: Option<Slot>,
    next_sweep_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    reported_ms: i64,
    last_use_ms: i64,
    /// Uses since the last report.
    unreported: u64,
}

impl Slot {
    fn new(now_ms: i64) -> Self {
        Self {
            reported_ms: now_ms,
            last_use_ms: now_ms,
            unreported: 0,
        }
    }

    /// Returns the uses this report covers, this one included, if it is time for one.
    fn use_at(&mut self, now_ms: i64) -> Option<u64> {
        self.unreported += 1;
        self.last_use_ms = self.last_use_ms.max(now_ms);
        if now_ms.saturating_sub(self.reported_ms) < PENDING_DELETION_INTERVAL_MS {
            return None;
        }
        let uses = self.unreported;
        *self = Self::new(now_ms);
        Some(uses)
    }
}

impl RateLimit {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            slots: HashMap::new(),
            overflow: None,
            next_sweep_ms: i64::MIN,
        }
    }

    fn record(&mut self, principal: &str, key: &str, now_ms: i64) -> Option<u64> {
        if now_ms >= self.next_sweep_ms {
            // A retry loop keeps its slot, so its next report counts every use. A pair quiet
            // for the interval is dropped with any uses left unreported: it was reported
            // within the minute before they happened.
            self.slots.retain(|_, slot| {
                now_ms.saturating_sub(slot.last_use_ms) < PENDING_DELETION_INTERVAL_MS
            });
            self.next_sweep_ms = now_ms.saturating_add(PENDING_DELETION_INTERVAL_MS);
        }
        // Rare (only keys pending deletion get here), so the allocation does not matter.
        let pair = (principal.to_owned(), key.to_owned());
        if let Some(slot) = self.slots.get_mut(&pair) {
            return slot.use_at(now_ms);
        }
        if self.slots.len() < self.cap {
            self.slots.insert(pair, Slot::new(now_ms));
            return Some(1);
        }
        match &mut self.overflow {
            Some(slot) => slot.use_at(now_ms),
            None => {
                self.overflow = Some(Slot::new(now_ms));
                Some(1)
            }
        }
    }
}

use crate::time::{Clock, SystemClock, rfc3339_ms};

/// Reads are what first-read rules watch.
fn is_successful_read(o: &Observation) -> bool {
    (o.action == GET_SECRET_VALUE || o.action == BATCH_GET_SECRET_VALUE)
        && o.outcome == Outcome::Success
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Default)]
    struct MemoryHistory(Mutex<HashSet<(String, String)>>);

    impl ReaderHistory for MemoryHistory {
        fn first_read<'a>(&'a self, secret: &'a str, principal: &'a str) -> FirstRead<'a> {
            let first = lock(&self.0).insert((secret.to_owned(), principal.to_owned()));
            Box::pin(std::future::ready(first))
        }
    }

    fn config(value: serde_json::Value) -> AlarmsConfig {
        serde_json::from_value(value).unwrap()
    }

    /// Read and validated: what loading a file does. The error either step gives.
    fn checked(value: serde_json::Value) -> Result<AlarmsConfig, String> {
        let config: AlarmsConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn alarms(rules: serde_json::Value) -> Alarms {
        let history = Arc::new(MemoryHistory::default());
        Alarms::new(config(json!({ "rule": rules })), history)
            .unwrap()
            .0
    }

    fn denied(time_ms: i64, principal: &str) -> Observation<'_> {
        Observation {
            time_ms,
            principal,
            action: "kms:Encrypt",
            resource: "key-1",
            outcome: Outcome::Denied,
            error: Some(Exception::AccessDenied),
            key_pending_deletion: false,
        }
    }

    fn decrypt_failure<'a>(time_ms: i64, principal: &'a str, error: Exception) -> Observation<'a> {
        Observation {
            time_ms,
            principal,
            action: DECRYPT,
            resource: "key-1",
            outcome: Outcome::Failed,
            error: Some(error),
            key_pending_deletion: false,
        }
    }

    fn read<'a>(principal: &'a str, secret: &'a str) -> Observation<'a> {
        Observation {
            time_ms: 0,
            principal,
            action: GET_SECRET_VALUE,
            resource: secret,
            outcome: Outcome::Success,
            error: None,
            key_pending_deletion: false,
        }
    }

    fn pending_use<'a>(time_ms: i64, principal: &'a str, key: &'a str) -> Observation<'a> {
        Observation {
            time_ms,
            principal,
            action: "kms:Decrypt",
            resource: key,
            outcome: Outcome::Failed,
            error: Some(Exception::KmsInvalidState),
            key_pending_deletion: true,
        }
    }

    fn denied_rule(threshold: u64, window_secs: u64) -> serde_json::Value {
        json!([{ "name": "denied-burst", "kind": "denied_requests",
                 "threshold": threshold, "window_secs": window_secs }])
    }

    async fn fired(alarms: &Alarms, o: Observation<'_>) -> usize {
        alarms.observe(&o).await.len()
    }

    #[tokio::test]
    async fn threshold_fires_once_per_burst_and_rearms_after_the_window_drains() {
        let alarms = alarms(denied_rule(5, 60));
        for t in 0..5 {
            assert!(alarms.observe(&denied(t * 100, "alice")).await.is_empty());
        }
        let firings = alarms.observe(&denied(500, "alice")).await;
        assert_eq!(firings.len(), 1);
        let firing = &firings[0];
        assert_eq!(firing.alarm, "denied-burst");
        assert_eq!(firing.kind, "denied_requests");
        assert_eq!(firing.principal.as_deref(), Some("alice"));
        assert_eq!(firing.resource, None);
        assert_eq!(firing.count, Some(6));
        assert_eq!(firing.window_secs, Some(60));
        assert_eq!(firing.time, "1970-01-01T00:00:00.500Z");

        // The rest of the burst is the same incident.
        for t in 6..40 {
            assert_eq!(fired(&alarms, denied(t * 100, "alice")).await, 0, "at {t}");
        }
        // Still above the threshold inside the window: not re-armed.
        assert_eq!(fired(&alarms, denied(30_000, "alice")).await, 0);

        // 70 s on, everything up to 10 s has left the window (the count is 1, then 2...).
        for t in 0..5 {
            assert_eq!(fired(&alarms, denied(95_000 + t, "alice")).await, 0);
        }
        assert_eq!(fired(&alarms, denied(95_005, "alice")).await, 1);
        assert_eq!(alarms.counters(), vec![("denied-burst".to_owned(), 2)]);
    }

    #[tokio::test]
    async fn an_unreachable_peer_fires_once_per_outage_after_its_window() {
        let alarms = alarms(json!([{ "name": "peer-down",
            "kind": "replication_peer_unreachable", "window_secs": 30 }]));
        let down = |secs| alarms.peer_unreachable("site-b", Duration::from_secs(secs), "refused");
        assert!(down(0).is_empty());
        assert!(down(29).is_empty());
        let firings = down(30);
        assert_eq!(firings.len(), 1);
        assert_eq!(firings[0].kind, "replication_peer_unreachable");
        assert_eq!(firings[0].resource.as_deref(), Some("site-b"));
        assert!(down(45).is_empty(), "one firing per outage");
        // Another peer is another outage.
        assert_eq!(
            alarms
                .peer_unreachable("site-c", Duration::from_secs(31), "x")
                .len(),
            1
        );
        alarms.peer_reachable("site-b");
        assert!(down(1).is_empty());
        assert_eq!(down(31).len(), 1, "re-armed once the peer answered");
        assert_eq!(alarms.counters(), vec![("peer-down".to_owned(), 3)]);
        // Requests never fire it.
        assert_eq!(fired(&alarms, denied(0, "alice")).await, 0);
    }

    #[tokio::test]
    async fn cluster_outages_fire_only_their_own_kind_once_per_subject() {
        let alarms = alarms(json!([
            { "name": "etcd-down", "kind": "store_unreachable", "window_secs": 5 },
            { "name": "orphan-duty", "kind": "duty_without_holder", "window_secs": 10 }
        ]));
        let secs = Duration::from_secs;
        assert!(
            alarms
                .outage(RuleKind::StoreUnreachable, "etcd", secs(4), "m")
                .is_empty()
        );
        let fired = alarms.outage(RuleKind::StoreUnreachable, "etcd", secs(5), "down");
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].alarm.as_str(), fired[0].kind),
            ("etcd-down", "store_unreachable")
        );
        assert!(
            alarms
                .outage(RuleKind::StoreUnreachable, "etcd", secs(50), "m")
                .is_empty()
        );
        // A duty's outage is another rule's, per duty.
        assert!(
            alarms
                .outage(RuleKind::DutyWithoutHolder, "rotation", secs(9), "m")
                .is_empty()
        );
        assert_eq!(
            alarms
                .outage(RuleKind::DutyWithoutHolder, "rotation", secs(10), "m")
                .len(),
            1
        );
        assert_eq!(
            alarms
                .outage(RuleKind::DutyWithoutHolder, "purge", secs(11), "m")
                .len(),
            1
        );
        alarms.recovered(RuleKind::StoreUnreachable, "etcd");
        assert_eq!(
            alarms
                .outage(RuleKind::StoreUnreachable, "etcd", secs(6), "m")
                .len(),
            1
        );
        assert_eq!(
            alarms.counters(),
            vec![("etcd-down".to_owned(), 2), ("orphan-duty".to_owned(), 2)]
        );
    }

    #[test]
    fn a_peer_alarm_needs_a_window_and_no_threshold() {
        let compile = |rule| checked(json!({ "rule": [rule] }));
        assert!(compile(json!({"name": "p", "kind": "replication_peer_unreachable"})).is_err());
        assert!(
            compile(json!({"name": "p", "kind": "replication_peer_unreachable",
                "window_secs": 5, "threshold": 1}))
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_sustained_rate_above_the_threshold_fires_once() {
        let alarms = alarms(denied_rule(5, 10));
        let mut total = 0;
        for s in 0..300 {
            total += fired(&alarms, denied(s * 1_000, "alice")).await;
        }
        assert_eq!(total, 1);
    }

    #[tokio::test]
    async fn rearms_when_the_count_drops_back_to_the_threshold() {
        let alarms = alarms(denied_rule(2, 10));
        assert_eq!(fired(&alarms, denied(0, "alice")).await, 0);
        assert_eq!(fired(&alarms, denied(5_000, "alice")).await, 0);
        assert_eq!(fired(&alarms, denied(6_000, "alice")).await, 1);
        // At 10 s the event at 0 s is gone: the count is 2, at the threshold, so re-armed.
        assert_eq!(fired(&alarms, denied(10_000, "alice")).await, 1);
    }

    #[tokio::test]
    async fn denied_requests_are_counted_per_principal() {
        let alarms = alarms(denied_rule(5, 60));
        for t in 0..5 {
            assert_eq!(fired(&alarms, denied(t, "alice")).await, 0);
            assert_eq!(fired(&alarms, denied(t, "bob")).await, 0);
        }
        let firings = alarms.observe(&denied(10, "alice")).await;
        assert_eq!(firings.len(), 1);
        assert_eq!(firings[0].principal.as_deref(), Some("alice"));
        let firings = alarms.observe(&denied(11, "bob")).await;
        assert_eq!(firings.len(), 1);
        assert_eq!(firings[0].principal.as_deref(), Some("bob"));
    }

    #[tokio::test]
    async fn only_denied_outcomes_count_as_denied() {
        let alarms = alarms(denied_rule(1, 60));
        for outcome in [Outcome::Success, Outcome::Failed, Outcome::Success] {
            let o = Observation {
                outcome,
                ..denied(0, "alice")
            };
            assert_eq!(fired(&alarms, o).await, 0);
        }
        assert_eq!(fired(&alarms, denied(1, "alice")).await, 0);
        assert_eq!(fired(&alarms, denied(2, "alice")).await, 1);
    }

    #[tokio::test]
    async fn decrypt_failures_count_only_invalid_ciphertext_on_decrypt_from_anyone() {
        let alarms = alarms(
            json!([{ "name": "bad-ciphertext", "kind": "decrypt_failures",
                                     "threshold": 3, "window_secs": 60 }]),
        );
        let noise = [
            decrypt_failure(0, "alice", Exception::AccessDenied),
            decrypt_failure(0, "alice", Exception::KmsInvalidState),
            Observation {
                action: "kms:ReEncrypt",
                ..decrypt_failure(0, "alice", INVALID_CIPHERTEXT)
            },
            Observation {
                action: "kms:Encrypt",
                ..decrypt_failure(0, "alice", INVALID_CIPHERTEXT)
            },
            Observation {
                outcome: Outcome::Success,
                error: None,
                ..decrypt_failure(0, "alice", INVALID_CIPHERTEXT)
            },
        ];
        for o in noise.iter().cycle().take(20) {
            assert_eq!(fired(&alarms, *o).await, 0);
        }
        for (t, who) in ["alice", "bob", "carol"].into_iter().enumerate() {
            assert_eq!(
                fired(&alarms, decrypt_failure(t as i64, who, INVALID_CIPHERTEXT)).await,
                0
            );
        }
        let firings = alarms
            .observe(&decrypt_failure(5, "dave", INVALID_CIPHERTEXT))
            .await;
        assert_eq!(firings.len(), 1);
        assert_eq!(firings[0].kind, "decrypt_failures");
        assert_eq!(firings[0].principal, None);
        assert_eq!(firings[0].count, Some(4));
    }

    #[tokio::test]
    async fn first_read_fires_once_per_principal_and_secret() {
        let alarms = alarms(json!([
            { "name": "new-reader", "kind": "first_read" },
            { "name": "new-reader-too", "kind": "first_read" }
        ]));
        let firings = alarms.observe(&read("alice", "db-password")).await;
        // Both rules fire: the history is asked once per observation, not once per rule.
        assert_eq!(firings.len(), 2);
        assert_eq!(firings[0].principal.as_deref(), Some("alice"));
        assert_eq!(firings[0].resource.as_deref(), Some("db-password"));
        assert_eq!(fired(&alarms, read("alice", "db-password")).await, 0);
        assert_eq!(fired(&alarms, read("bob", "db-password")).await, 2);
        assert_eq!(fired(&alarms, read("alice", "api-token")).await, 2);

        let batch = Observation {
            action: BATCH_GET_SECRET_VALUE,
            ..read("carol", "db-password")
        };
        assert_eq!(fired(&alarms, batch).await, 2);
        assert_eq!(fired(&alarms, batch).await, 0);

        let not_a_read = Observation {
            action: "secretsmanager:DescribeSecret",
            ..read("dave", "db-password")
        };
        let denied = Observation {
            outcome: Outcome::Denied,
            ..read("dave", "db-password")
        };
        assert_eq!(fired(&alarms, not_a_read).await, 0);
        assert_eq!(fired(&alarms, denied).await, 0);
        // Neither was recorded as a read: dave's first real read still fires.
        assert_eq!(fired(&alarms, read("dave", "db-password")).await, 2);
    }

    #[tokio::test]
    async fn pending_deletion_use_fires_at_most_once_a_minute_per_principal_and_key() {
        let alarms = alarms(json!([{ "name": "pending", "kind": "pending_deletion_key_use" }]));
        let firings = alarms.observe(&pending_use(0, "alice", "key-1")).await;
        assert_eq!(firings.len(), 1);
        assert_eq!(firings[0].principal.as_deref(), Some("alice"));
        assert_eq!(firings[0].resource.as_deref(), Some("key-1"));
        assert_eq!(firings[0].count, Some(1));

        for t in 1..100 {
            assert_eq!(
                fired(&alarms, pending_use(t * 500, "alice", "key-1")).await,
                0
            );
        }
        assert_eq!(fired(&alarms, pending_use(100, "bob", "key-1")).await, 1);
        assert_eq!(fired(&alarms, pending_use(100, "alice", "key-2")).await, 1);
        let not_pending = Observation {
            key_pending_deletion: false,
            ..pending_use(0, "carol", "key-1")
        };
        assert_eq!(fired(&alarms, not_pending).await, 0);

        let firings = alarms.observe(&pending_use(60_000, "alice", "key-1")).await;
        assert_eq!(firings.len(), 1);
        assert_eq!(
            firings[0].count,
            Some(100),
            "the 99 suppressed uses and this one"
        );
        assert_eq!(
            fired(&alarms, pending_use(60_001, "alice", "key-1")).await,
            0
        );
        assert_eq!(alarms.counters(), vec![("pending".to_owned(), 4)]);
    }

    #[test]
    fn idle_principals_are_forgotten_once_their_window_passes() {
        let mut state = PerPrincipal::new(60_000, MAX_TRACKED);
        for i in 0..1_000 {
            state.record(&format!("p{i}"), 0, 5);
        }
        assert_eq!(state.principals.len(), 1_000);
        state.record("p0", 30_000, 5);
        assert_eq!(state.principals.len(), 1_000);
        state.record("late", 61_000, 5);
        assert_eq!(state.principals.len(), 2, "p0 (seen at 30 s) and late");
    }

    #[test]
    fn principals_beyond_the_cap_share_one_counter() {
        let mut state = PerPrincipal::new(60_000, 2);
        assert_eq!(state.record("alice", 0, 1), None);
        assert_eq!(state.record("bob", 0, 1), None);
        assert_eq!(state.record("carol", 1, 1), None);
        assert_eq!(state.record("dave", 2, 1), Some((2, true)));
        assert_eq!(state.principals.len(), 2);
        // Tracked principals keep their own counts.
        assert_eq!(state.record("alice", 3, 1), Some((2, false)));
    }

    #[test]
    fn pending_deletion_pairs_beyond_the_cap_share_one_rate_limit() {
        let mut state = RateLimit::new(1);
        assert_eq!(state.record("alice", "key-1", 0), Some(1));
        assert_eq!(state.record("bob", "key-1", 0), Some(1));
        assert_eq!(state.record("carol", "key-1", 1), None);
        assert_eq!(state.slots.len(), 1);
        // After the interval the sweep frees the slot for whoever comes next.
        assert_eq!(state.record("carol", "key-1", 60_000), Some(1));
        assert!(state.slots.contains_key(&("carol".into(), "key-1".into())));
    }

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let config = config(json!({
            "webhooks": ["http://127.0.0.1:9000/hook"],
            "rule": [
                { "name": "denied-burst", "kind": "denied_requests", "threshold": 5, "window_secs": 60 },
                { "name": "new-reader", "kind": "first_read" },
                { "name": "bad-ciphertext", "kind": "decrypt_failures", "threshold": 10, "window_secs": 60 },
                { "name": "pending-deletion-use", "kind": "pending_deletion_key_use" }
            ]
        }));
        assert_eq!(config.webhook_timeout, Duration::from_secs(5));
        assert_eq!(config.webhook_attempts, 4);
        assert_eq!(config.webhook_backoff, Duration::from_millis(500));
        assert_eq!(
            config.rules[3].condition.kind(),
            RuleKind::PendingDeletionKeyUse
        );
        config.validate().unwrap();
        let (alarms, _task) = Alarms::new(config, Arc::new(MemoryHistory::default())).unwrap();
        let names: Vec<_> = alarms.counters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "denied-burst",
                "new-reader",
                "bad-ciphertext",
                "pending-deletion-use"
            ]
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        let unknown_field = json!({ "webhook": [] });
        assert!(serde_json::from_value::<AlarmsConfig>(unknown_field).is_err());
        let unknown_rule_field =
            json!({ "rule": [{ "name": "a", "kind": "first_read", "treshold": 1 }] });
        assert!(serde_json::from_value::<AlarmsConfig>(unknown_rule_field).is_err());
        let unknown_kind = json!({ "rule": [{ "name": "a", "kind": "everything" }] });
        assert!(serde_json::from_value::<AlarmsConfig>(unknown_kind).is_err());
        let backoff_is_not_configurable = json!({ "webhook_backoff": 1 });
        assert!(serde_json::from_value::<AlarmsConfig>(backoff_is_not_configurable).is_err());
    }

    #[test]
    fn invalid_configurations_are_explained() {
        let error = |value: serde_json::Value| config(value).validate().unwrap_err();
        let rule_error =
            |rule: serde_json::Value| checked(json!({ "rule": [rule] })).map(drop).unwrap_err();

        assert_eq!(
            error(json!({ "rule": [{ "name": " ", "kind": "first_read" }] })),
            AlarmsError::EmptyName { index: 0 }
        );
        assert_eq!(
            error(json!({ "rule": [
                { "name": "a", "kind": "first_read" },
                { "name": "a", "kind": "pending_deletion_key_use" }
            ] })),
            AlarmsError::DuplicateName("a".into())
        );
        let threshold = |threshold: u64, window_secs: u64| {
            json!({ "name": "t", "kind": "denied_requests",
                    "threshold": threshold, "window_secs": window_secs })
        };
        assert!(rule_error(threshold(0, 60)).contains("threshold must be at least 1"));
        assert!(rule_error(threshold(1, 0)).contains("window_secs must be between 1 and 86400"));
        assert!(rule_error(threshold(1, 86_401)).contains("window_secs"));
        assert!(
            config(json!({ "rule": [threshold(1, 86_400)] }))
                .validate()
                .is_ok()
        );
        assert!(
            rule_error(json!({ "name": "t", "kind": "decrypt_failures", "window_secs": 60 }))
                .contains("decrypt_failures needs a threshold")
        );
        assert!(
            rule_error(json!({ "name": "t", "kind": "decrypt_failures", "threshold": 2 }))
                .contains("needs window_secs")
        );
        assert!(
            rule_error(json!({ "name": "f", "kind": "first_read", "threshold": 2 }))
                .contains("first_read takes no threshold")
        );

        let https = error(json!({ "webhooks": ["https://hooks.example/x"] }));
        assert_eq!(
            https,
            AlarmsError::HttpsWebhook {
                url: "https://hooks.example/x".into()
            }
        );
        assert!(
            https
                .to_string()
                .contains("https webhooks are not supported yet")
        );
        for url in [
            "ftp://host/x",
            "/relative",
            "http://user:pw@host/x",
            "not a url",
        ] {
            assert!(
                matches!(
                    error(json!({ "webhooks": [url] })),
                    AlarmsError::Webhook { .. }
                ),
                "{url}"
            );
        }
        assert!(
            error(json!({ "webhook_timeout_ms": 0 }))
                .to_string()
                .contains("webhook_timeout_ms must be greater than 0")
        );
        assert!(
            error(json!({ "webhook_attempts": 0 }))
                .to_string()
                .contains("webhook_attempts")
        );
        assert!(
            error(json!({ "webhook_attempts": 11 }))
                .to_string()
                .contains("webhook_attempts")
        );
    }

    #[test]
    fn the_engine_is_shared_across_request_tasks_and_the_task_is_spawnable() {
        fn shared<T: Send + Sync + 'static>() {}
        fn spawnable<T: std::future::Future<Output = ()> + Send + 'static>() {}
        shared::<Alarms>();
        spawnable::<WebhookTask>();
    }

    #[test]
    fn times_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_796_083_199_999), "2026-11-30T23:59:59.999Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
