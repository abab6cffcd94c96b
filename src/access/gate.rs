//! The one place requests are admitted: authentication's outcome, the policy decision (before
//! any hardware call: resolving a resource reads only the store) and the audit record of every
//! request, allowed or not. Front doors (gRPC today) describe a request as an [`Access`] and
//! hold the returned [`Pass`] until the request is answered.

use super::grants::StepGrants;
use super::identity::{self, AuthFailure, Credentials, DEVELOPMENT_ADMIN, Tokens};
use crate::alarms::{Alarms, Observation};
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::config::AuthConfig;
use crate::crypto::envelope::Ciphertext;
use crate::outcome::Exception;
use crate::policy::{self, Decision, DenyReason, Policy, PolicyKind};
use crate::service::KmsService;
use crate::service::kms::names::Arns;
use crate::service::rotation::StepCredentials;
use crate::service::secrets::SecretsService;
use crate::store::KeyState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// UnrecognizedClientException.
    #[error("{0}")]
    Unauthenticated(AuthFailure),
    /// AccessDeniedException. The message names the principal, action and resource, as AWS's
    /// does; never why (which policy) — that goes to the audit record.
    #[error("{principal} is not authorized to perform {action} on resource {resource}")]
    Denied {
        principal: String,
        action: &'static str,
        resource: String,
    },
    /// The audit record could not be written: the request fails (fail closed).
    #[error("the audit log cannot be written; requests are refused until it can")]
    AuditUnavailable,
}

/// What a request touches, as the client named it.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Not one resource (ListSecrets, CreateKey, GetRandomPassword, ...): `*`.
    All,
    /// An existing secret by name or ARN.
    Secret(&'a str),
    /// A key by id, ARN, alias or alias ARN.
    Key(&'a str),
    /// The key that made a KMS ciphertext (Decrypt, ReEncrypt's source).
    Ciphertext(&'a [u8]),
    /// An alias name itself (`alias/NAME`), so policies can reserve names: it has no policy.
    Alias(&'a str),
}

/// One request, described for the decision and the audit record.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub action: &'static str,
    pub target: Target<'a>,
    pub version_id: &'a str,
    pub version_stage: &'a str,
    pub encryption_context: Option<&'a HashMap<String, String>>,
    /// A second permission the request needs (ReEncrypt: kms:ReEncryptTo on the destination).
    pub also: Option<(&'static str, Target<'a>)>,
    /// The encryption context the second permission's conditions read (ReEncrypt: the
    /// destination context); the first one's is not reused.
    pub also_context: Option<&'a HashMap<String, String>>,
}

impl<'a> Access<'a> {
    pub fn new(action: &'static str, target: Target<'a>) -> Self {
        Self {
            action,
            target,
            version_id: "",
            version_stage: "",
            encryption_context: None,
            also: None,
            also_context: None,
        }
    }

    pub fn version(mut self, version_id: &'a str, version_stage: &'a str) -> Self {
        self.version_id = version_id;
        self.version_stage = version_stage;
        self
    }

    pub fn context(mut self, context: &'a HashMap<String, String>) -> Self {
        self.encryption_context = Some(context);
        self
    }

    pub fn also(mut self, action: &'static str, target: Target<'a>) -> Self {
        self.also = Some((action, target));
        self
    }

    pub fn also_context(mut self, context: &'a HashMap<String, String>) -> Self {
        self.also_context = Some(context);
        self
    }
}

/// The caller as authenticated at the front door.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Result<String, AuthFailure>,
    /// The peer address.
    pub source: String,
    /// "grpc" or "aws-json".
    pub api: &'static str,
}

struct IdentityPolicy {
    name: String,
    principals: Vec<String>,
    policy: Policy,
}

enum Mode {
    /// No [auth] section: one implicit admin, everything allowed, every request audited.
    Development,
    Enforced {
        tokens: Tokens,
        policies: Vec<IdentityPolicy>,
    },
}

#[derive(Default)]
pub struct GateCounters {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    pub unauthenticated: AtomicU64,
}

/// Parsed resource and key policies by their kind and text: a policy is parsed once, not per
/// request. Cleared when it grows past a bound, so replaced policies do not pile up.
#[derive(Default)]
struct PolicyCache(Mutex<HashMap<(PolicyKind, String), Arc<Policy>>>);

const POLICY_CACHE_LIMIT: usize = 4096;

impl PolicyCache {
    /// None when the text does not parse (stored policies were validated when put, so a parser
    /// grown stricter since, or a damaged record) or the cache is unusable: the caller denies.
    fn get(&self, kind: PolicyKind, text: &str) -> Option<Arc<Policy>> {
        let key = (kind, text.to_owned());
        if let Some(policy) = self.0.lock().ok()?.get(&key) {
            return Some(Arc::clone(policy));
        }
        let parsed = Arc::new(Policy::parse(text, kind).ok()?);
        let mut cache = self.0.lock().ok()?;
        if cache.len() >= POLICY_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&parsed));
        Some(parsed)
    }
}

/// The policy attached to a resource, and how it is read.
#[derive(Debug, Clone, Copy)]
enum Attached<'a> {
    None,
    /// A secret's resource policy, or a key policy put before key policies could restrict use:
    /// AWS same-account evaluation (identity policies or this one may allow).
    Resource(&'a str),
    /// A key policy evaluated as written: identity policies count only if it delegates to the
    /// account ([`policy::decide_key`]).
    Key(&'a str),
}

/// The decision over the caller's identity policies and the resource's policy. A policy that
/// is attached but does not parse denies everyone: ignoring it would drop its restrictions.
fn judge(
    cache: &PolicyCache,
    identity: &[(&str, &Policy)],
    attached: Attached,
    account_root: &str,
    request: &policy::Request,
) -> Decision {
    let (kind, text, name) = match attached {
        Attached::None => return policy::decide(identity, None, request),
        Attached::Resource(text) => (PolicyKind::Resource, text, "resource policy"),
        Attached::Key(text) => (PolicyKind::Key, text, "key policy"),
    };
    let Some(parsed) = cache.get(kind, text) else {
        return Decision::Deny(DenyReason::Unparseable {
            policy: name.to_owned(),
        });
    };
    match kind {
        PolicyKind::Key => policy::decide_key(identity, (name, &parsed), account_root, request),
        PolicyKind::Identity | PolicyKind::Resource => {
            policy::decide(identity, Some((name, &parsed)), request)
        }
    }
}

/// Request ids: unique across restarts (a random prefix per process) without a trip to the
/// OS random generator per request.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut bytes = [0u8; 8];
        // A failed generator leaves the prefix zero: ids stay unique within the process.
        let _ = getrandom::fill(&mut bytes);
        Self {
            prefix: u64::from_le_bytes(bytes),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        uuid::Uuid::from_u64_pair(self.prefix, self.next.fetch_add(1, Relaxed)).to_string()
    }
}

pub struct Gate {
    mode: Mode,
    request_ids: RequestIds,
    arns: Arns,
    kms: Arc<KmsService>,
    secrets: Arc<SecretsService>,
    audit: AuditLog,
    alarms: Option<Arc<Alarms>>,
    resource_policies: PolicyCache,
    /// `arn:keyward:iam::ACCOUNT:root`: whom a key policy names to delegate to identity
    /// policies.
    account_root: String,
    counters: GateCounters,
    /// Exec rotators' step credentials: principals decided by their grant alone.
    grants: Arc<StepGrants>,
}

/// A resolved resource: its ARN and the policy attached to it.
struct Resolved {
    arn: String,
    policy: Option<String>,
    /// A key policy evaluated as written (put since key policies can restrict use).
    key_policy_as_written: bool,
    key_pending_deletion: bool,
}

impl Resolved {
    fn attached(&self) -> Attached<'_> {
        match (&self.policy, self.key_policy_as_written) {
            (None, _) => Attached::None,
            (Some(text), false) => Attached::Resource(text),
            (Some(text), true) => Attached::Key(text),
        }
    }
}

impl Gate {
    /// `auth` None: development mode. Identity policies are parsed here, so a bad one stops
    /// the server at start.
    pub fn new(
        auth: Option<&AuthConfig>,
        kms: Arc<KmsService>,
        secrets: Arc<SecretsService>,
        audit: AuditLog,
        alarms: Option<Arc<Alarms>>,
    ) -> Result<Self, String> {
        let mode = match auth {
            None => Mode::Development,
            Some(auth) => {
                let mut policies = Vec::new();
                for config in &auth.policies {
                    let text = config.text().map_err(|e| e.to_string())?;
                    let policy = Policy::parse(&text, PolicyKind::Identity).map_err(|errors| {
                        let messages: Vec<String> = errors.into_iter().map(|e| e.message).collect();
                        format!("auth.policies \"{}\": {}", config.name, messages.join("; "))
                    })?;
                    policies.push(IdentityPolicy {
                        name: config.name.clone(),
                        principals: config.principals.clone(),
                        policy,
                    });
                }
                Mode::Enforced {
                    tokens: Tokens::new(&auth.tokens),
                    policies,
                }
            }
        };
        let account_root = kms.arns().account_root();
        Ok(Self {
            mode,
            request_ids: RequestIds::new(),
            arns: kms.arns().clone(),
            kms,
            secrets,
            audit,
            alarms,
            resource_policies: PolicyCache::default(),
            account_root,
            counters: GateCounters::default(),
            grants: Arc::default(),
        })
    }

    /// Issues exec rotators' step credentials, which this gate then authenticates and decides.
    pub fn step_credentials(&self) -> Arc<dyn StepCredentials> {
        Arc::new(Arc::clone(&self.grants))
    }

    pub fn counters(&self) -> &GateCounters {
        &self.counters
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn alarms(&self) -> Option<&Alarms> {
        self.alarms.as_deref()
    }

    /// The caller's principal, from what the front door saw.
    pub fn authenticate(
        &self,
        credentials: &Credentials,
        source: String,
        api: &'static str,
    ) -> Caller {
        let principal = match &self.mode {
            // A presented certificate still names the caller in the audit trail.
            Mode::Development => Ok(credentials
                .certificate
                .and_then(|der| identity::certificate_name(der).ok())
                .map_or_else(|| DEVELOPMENT_ADMIN.to_owned(), |n| identity::principal(&n))),
            Mode::Enforced { tokens, .. } => match identity::authenticate(tokens, credentials) {
                // Not a configured token: perhaps a rotation step's.
                Err(AuthFailure::BadToken) => credentials
                    .authorization
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .and_then(|token| self.grants.principal_for(token.trim()))
                    .ok_or(AuthFailure::BadToken),
                other => other,
            },
        };
        Caller {
            principal,
            source,
            api,
        }
    }

    /// Admits the request or refuses it; either way, refusals are audited here.
    pub async fn admit(&self, caller: &Caller, access: Access<'_>) -> Result<Pass<'_>, GateError> {
        let started = Instant::now();
        let mut event = AuditEvent {
            time_ms: SystemClock.now_ms(),
            request_id: self.request_ids.next(),
            api: caller.api,
            principal: "anonymous".into(),
            source: caller.source.clone(),
            action: access.action.into(),
            resource: "*".into(),
            version_id: non_empty(access.version_id),
            version_stage: non_empty(access.version_stage),
            ..AuditEvent::default()
        };
        if let Ok(principal) = &caller.principal {
            event.principal = principal.clone();
        }
        if !self.audit.healthy() {
            // Refused before any work, so nothing happens that the trail cannot show. The
            // refusal's own record is the probe: once it is written, the next request proceeds.
            event.outcome = Outcome::Denied;
            event.error = Some(Exception::InternalServiceError);
            event.reason = Some("the audit log was failing".into());
            self.record(event, started, false).await?;
            return Err(GateError::AuditUnavailable);
        }
        let principal = match &caller.principal {
            Ok(principal) => principal.clone(),
            Err(failure) => {
                self.counters.unauthenticated.fetch_add(1, Relaxed);
                event.outcome = Outcome::Denied;
                event.error = Some(failure.exception());
                event.reason = Some(failure.to_string());
                self.record(event, started, false).await?;
                return Err(GateError::Unauthenticated(failure.clone()));
            }
        };
        event.principal = principal.clone();
        // Only policies read conditions: the development mode skips building them.
        let conditions = match self.mode {
            Mode::Enforced { .. } => conditions(&access),
            Mode::Development => Vec::new(),
        };
        let resolved = self.resolve(access.target).await;
        event.resource = resolved.arn.clone();
        let mut key_pending_deletion = resolved.key_pending_deletion;
        let mut verdict = self.decide(&principal, access.action, &resolved, &conditions);
        if verdict.is_ok()
            && let Some((action, target)) = access.also
        {
            let second = self.resolve(target).await;
            key_pending_deletion |= second.key_pending_deletion;
            // Its own conditions: ReEncryptTo reads the destination context, not the source's.
            let second_conditions = match self.mode {
                Mode::Enforced { .. } => self::conditions(&Access {
                    encryption_context: access.also_context,
                    ..Access::new(action, target)
                }),
                Mode::Development => Vec::new(),
            };
            verdict = self.decide(&principal, action, &second, &second_conditions);
        }
        if let Err((action, resource, reason)) = verdict {
            self.counters.denied.fetch_add(1, Relaxed);
            event.outcome = Outcome::Denied;
            event.error = Some(Exception::AccessDenied);
            event.reason = Some(reason);
            self.record(event, started, key_pending_deletion).await?;
            return Err(GateError::Denied {
                principal,
                action,
                resource,
            });
        }
        self.counters.allowed.fetch_add(1, Relaxed);
        Ok(Pass {
            gate: self,
            event,
            started,
            key_pending_deletion,
        })
    }

    /// Audits a request a front door refused before it became an operation (a bad signature,
    /// a body that is not the operation's input).
    pub async fn refuse(
        &self,
        caller: &Caller,
        action: &str,
        error: Exception,
        reason: &str,
        outcome: Outcome,
    ) -> Result<(), GateError> {
        if caller.principal.is_err() {
            self.counters.unauthenticated.fetch_add(1, Relaxed);
        }
        let event = self.refusal(caller, action, error, reason, outcome);
        self.record(event, Instant::now(), false).await
    }

    /// The record of a request refused before admission, on `*`.
    fn refusal(
        &self,
        caller: &Caller,
        action: &str,
        error: Exception,
        reason: &str,
        outcome: Outcome,
    ) -> AuditEvent {
        AuditEvent {
            time_ms: SystemClock.now_ms(),
            request_id: self.request_ids.next(),
            api: caller.api,
            principal: caller
                .principal
                .clone()
                .unwrap_or_else(|_| "anonymous".into()),
            source: caller.source.clone(),
            action: action.to_owned(),
            resource: "*".into(),
            outcome,
            error: Some(error),
            reason: Some(reason.to_owned()),
            ..AuditEvent::default()
        }
    }

    /// Audits a request refused before admission because an identifier it names is longer
    /// than any valid one: nothing was looked up or matched. The record names what the client
    /// sent, capped by the audit log.
    pub async fn refuse_invalid(
        &self,
        caller: &Caller,
        access: Access<'_>,
        error: Exception,
        reason: &str,
    ) -> Result<(), GateError> {
        let resource = match access.target {
            Target::Secret(id) | Target::Key(id) | Target::Alias(id) => id,
            Target::All | Target::Ciphertext(_) => "*",
        };
        let event = AuditEvent {
            resource: resource.to_owned(),
            version_id: non_empty(access.version_id),
            version_stage: non_empty(access.version_stage),
            ..self.refusal(caller, access.action, error, reason, Outcome::Failed)
        };
        self.record(event, Instant::now(), false).await
    }

    /// Audits what a peer site asked of this one (replication), which does not pass the
    /// client policies: the site service authenticates peers by certificate itself.
    pub async fn record_site(&self, event: AuditEvent, started: Instant) -> Result<(), GateError> {
        let event = AuditEvent {
            time_ms: SystemClock.now_ms(),
            request_id: self.request_ids.next(),
            api: "site",
            ..event
        };
        self.record(event, started, false).await
    }

    /// Allowed, or the action and resource refused with the reason for the audit record.
    fn decide(
        &self,
        principal: &str,
        action: &'static str,
        resolved: &Resolved,
        conditions: &[(String, Vec<String>)],
    ) -> Result<(), (&'static str, String, String)> {
        let Mode::Enforced { policies, .. } = &self.mode else {
            return Ok(());
        };
        match self.evaluate(
            policies,
            principal,
            action,
            &resolved.arn,
            resolved.attached(),
            conditions,
        ) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err((action, resolved.arn.clone(), deny_reason(&reason))),
        }
    }

    fn evaluate(
        &self,
        policies: &[IdentityPolicy],
        principal: &str,
        action: &str,
        resource: &str,
        attached: Attached,
        conditions: &[(String, Vec<String>)],
    ) -> Decision {
        if let Some(allowed) = self.grants.decide(principal, action, resource) {
            return if allowed {
                Decision::Allow
            } else {
                Decision::Deny(DenyReason::NoAllow)
            };
        }
        let name = principal
            .strip_prefix(identity::PRINCIPAL_PREFIX)
            .unwrap_or(principal);
        let identity: Vec<(&str, &Policy)> = policies
            .iter()
            .filter(|p| {
                p.principals
                    .iter()
                    .any(|pattern| policy::wildcard_match(pattern, name, policy::Case::Sensitive))
            })
            .map(|p| (p.name.as_str(), &p.policy))
            .collect();
        let values: Vec<Vec<&str>> = conditions
            .iter()
            .map(|(_, vs)| vs.iter().map(String::as_str).collect())
            .collect();
        let borrowed: Vec<(&str, &[&str])> = conditions
            .iter()
            .zip(&values)
            .map(|((k, _), vs)| (k.as_str(), vs.as_slice()))
            .collect();
        let request = policy::Request {
            principal,
            action,
            resource,
            conditions: &borrowed,
        };
        judge(
            &self.resource_policies,
            &identity,
            attached,
            &self.account_root,
            &request,
        )
    }

    /// The ARN and policy of what `target` names. Reads the store only. A name that does not
    /// resolve gets the ARN it would have without the random suffix, so identity policies
    /// still decide and a denied caller learns nothing about existence.
    async fn resolve(&self, target: Target<'_>) -> Resolved {
        let (region, account) = (&self.arns.region, &self.arns.account_id);
        match target {
            Target::All => Resolved {
                arn: "*".into(),
                policy: None,
                key_policy_as_written: false,
                key_pending_deletion: false,
            },
            Target::Secret(id) => match self.secrets.describe_secret(id).await {
                Ok(record) => Resolved {
                    arn: record.arn,
                    policy: record.resource_policy,
                    key_policy_as_written: false,
                    key_pending_deletion: false,
                },
                Err(_) => Resolved {
                    arn: if id.starts_with("arn:") {
                        id.to_owned()
                    } else {
                        format!(
                            "arn:{}:secretsmanager:{region}:{account}:secret:{id}",
                            self.arns.partition
                        )
                    },
                    policy: None,
                    key_policy_as_written: false,
                    key_pending_deletion: false,
                },
            },
            Target::Key(id) => self.resolve_key(id).await,
            Target::Alias(name) => Resolved {
                arn: self.arns.alias(name),
                policy: None,
                key_policy_as_written: false,
                key_pending_deletion: false,
            },
            Target::Ciphertext(blob) => match Ciphertext::parse(blob) {
                Ok(parsed) => self.resolve_key(&parsed.header.key_id.to_string()).await,
                // Unparsable: the domain answers InvalidCiphertext if identity policies allow.
                Err(_) => Resolved {
                    arn: self.arns.key("*"),
                    policy: None,
                    key_policy_as_written: false,
                    key_pending_deletion: false,
                },
            },
        }
    }

    async fn resolve_key(&self, id: &str) -> Resolved {
        match self.kms.describe_key(id).await {
            Ok(record) => Resolved {
                arn: self.arns.key(&record.key_id),
                key_pending_deletion: record.state == KeyState::PendingDeletion,
                // Policies put before key policies could restrict use keep their meaning: read
                // as if they held the delegation statement (same-account evaluation).
                key_policy_as_written: record.policy_as_written,
                policy: record.policy,
            },
            Err(_) if id.starts_with("arn:") => Resolved {
                arn: id.to_owned(),
                policy: None,
                key_policy_as_written: false,
                key_pending_deletion: false,
            },
            Err(_) if id.starts_with("alias/") => Resolved {
                arn: self.arns.alias(id),
                policy: None,
                key_policy_as_written: false,
                key_pending_deletion: false,
            },
            Err(_) => Resolved {
                arn: self.arns.key(id),
                policy: None,
                key_policy_as_written: false,
                key_pending_deletion: false,
            },
        }
    }

    /// Writes the audit record (fail closed) and shows it to the alarms.
    async fn record(
        &self,
        mut event: AuditEvent,
        started: Instant,
        key_pending_deletion: bool,
    ) -> Result<(), GateError> {
        event.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(alarms) = &self.alarms {
            alarms
                .observe(&Observation {
                    time_ms: event.time_ms,
                    principal: &event.principal,
                    action: &event.action,
                    resource: &event.resource,
                    outcome: event.outcome,
                    error: event.error,
                    key_pending_deletion,
                })
                .await;
        }
        self.audit.append(event).await.map_err(|e| {
            tracing::error!(error = %e, "audit record not written; the request fails");
            GateError::AuditUnavailable
        })
    }
}

/// An admitted request. `finish` must be called with the outcome: it writes the audit record,
/// and its error (the record could not be written) replaces the answer.
pub struct Pass<'g> {
    gate: &'g Gate,
    event: AuditEvent,
    started: Instant,
    key_pending_deletion: bool,
}

impl Pass<'_> {
    /// Whether the principal may read one secret of a batch: the decision GetSecretValue of
    /// `secret_id` with no version would get (a batch reads AWSCURRENT), so a batch is no way
    /// around a condition, and a secret that does not exist is refused alike.
    pub async fn allows_secret_read(&self, secret_id: &str) -> bool {
        let Mode::Enforced { policies, .. } = &self.gate.mode else {
            return true;
        };
        let access = Access::new("secretsmanager:GetSecretValue", Target::Secret(secret_id));
        let resolved = self.gate.resolve(access.target).await;
        self.gate
            .evaluate(
                policies,
                &self.event.principal,
                access.action,
                &resolved.arn,
                resolved.attached(),
                &conditions(&access),
            )
            .is_allowed()
    }

    /// Whether the principal could still change the key policy (kms:PutKeyPolicy on the key
    /// this request is about) were `key_policy` in force: PutKeyPolicy's lockout check.
    pub fn keeps_key_policy_access(&self, key_policy: &str) -> bool {
        let Mode::Enforced { policies, .. } = &self.gate.mode else {
            return true;
        };
        self.gate
            .evaluate(
                policies,
                &self.event.principal,
                "kms:PutKeyPolicy",
                &self.event.resource,
                Attached::Key(key_policy),
                &[],
            )
            .is_allowed()
    }

    /// Authorises one more resource the request touches on the caller's behalf (a secret a
    /// rotation will read with the server's authority) as if the caller had asked for it
    /// directly: its own decision with the conditions of `access`, and its own audit record
    /// under the request's id, allowed or denied.
    pub async fn on_behalf(&self, access: Access<'_>) -> Result<(), GateError> {
        let gate = self.gate;
        let started = Instant::now();
        let resolved = gate.resolve(access.target).await;
        let conditions = match gate.mode {
            Mode::Enforced { .. } => conditions(&access),
            Mode::Development => Vec::new(),
        };
        let verdict = gate.decide(&self.event.principal, access.action, &resolved, &conditions);
        let mut event = AuditEvent {
            time_ms: SystemClock.now_ms(),
            request_id: self.event.request_id.clone(),
            api: self.event.api,
            principal: self.event.principal.clone(),
            source: self.event.source.clone(),
            action: access.action.into(),
            resource: resolved.arn.clone(),
            version_id: non_empty(access.version_id),
            version_stage: non_empty(access.version_stage),
            reason: Some(format!("on behalf of {}", self.event.action)),
            ..AuditEvent::default()
        };
        match verdict {
            Ok(()) => {
                event.outcome = Outcome::Success;
                gate.record(event, started, false).await
            }
            Err((action, resource, reason)) => {
                gate.counters.denied.fetch_add(1, Relaxed);
                event.outcome = Outcome::Denied;
                event.error = Some(Exception::AccessDenied);
                event.reason = Some(format!("{reason}; on behalf of {}", self.event.action));
                gate.record(event, started, false).await?;
                Err(GateError::Denied {
                    principal: self.event.principal.clone(),
                    action,
                    resource,
                })
            }
        }
    }

    /// Audits the answer: `error` is why the request failed, when it did.
    pub async fn finish(mut self, error: Option<Exception>) -> Result<(), GateError> {
        self.event.outcome = if error.is_some() {
            Outcome::Failed
        } else {
            Outcome::Success
        };
        self.event.error = error;
        self.gate
            .record(self.event, self.started, self.key_pending_deletion)
            .await
    }
}

/// Condition keys the request supplies, lower-case as the policy engine expects. Policies may
/// name no other key: keep in step with `policy::document::supplied_condition_key`.
fn conditions(access: &Access) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if !access.version_stage.is_empty() {
        out.push((
            "secretsmanager:versionstage".into(),
            vec![access.version_stage.to_owned()],
        ));
    } else if matches!(access.action, "secretsmanager:GetSecretValue")
        && access.version_id.is_empty()
    {
        // Neither given: the read is of AWSCURRENT.
        out.push((
            "secretsmanager:versionstage".into(),
            vec!["AWSCURRENT".into()],
        ));
    }
    if !access.version_id.is_empty() {
        out.push((
            "secretsmanager:versionid".into(),
            vec![access.version_id.to_owned()],
        ));
    }
    if let Some(context) = access.encryption_context {
        let mut keys: Vec<String> = context.keys().cloned().collect();
        keys.sort();
        for (key, value) in context {
            out.push((
                format!("kms:encryptioncontext:{}", key.to_lowercase()),
                vec![value.clone()],
            ));
        }
        out.push(("kms:encryptioncontextkeys".into(), keys));
    }
    out
}

fn deny_reason(reason: &DenyReason) -> String {
    match reason {
        DenyReason::Explicit { policy, sid } => match sid {
            Some(sid) => format!("explicit deny in {policy}, statement {sid}"),
            None => format!("explicit deny in {policy}"),
        },
        DenyReason::NoAllow => "no policy allows it".into(),
        DenyReason::Unparseable { policy } => {
            format!("the {policy} attached no longer parses: denied to everyone until replaced")
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

use crate::time::{Clock, SystemClock};

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "arn:keyward:iam::000000000000:root";
    const KEY: &str = "arn:keyward:kms:local:000000000000:key/k";

    fn allow_all() -> Policy {
        Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            PolicyKind::Identity,
        )
        .unwrap()
    }

    fn request() -> policy::Request<'static> {
        policy::Request {
            principal: "keyward:principal/admin",
            action: "kms:Decrypt",
            resource: KEY,
            conditions: &[],
        }
    }

    #[test]
    fn an_attached_policy_that_no_longer_parses_denies_everyone() {
        let cache = PolicyCache::default();
        let admin = allow_all();
        let identity = [("admin-all", &admin)];
        // Valid JSON, but an element the parser refuses (as a stricter parser would).
        let unparseable = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Bogus":1}]}"#;
        for attached in [Attached::Resource(unparseable), Attached::Key(unparseable)] {
            let decision = judge(&cache, &identity, attached, ROOT, &request());
            let Decision::Deny(reason) = decision else {
                panic!("{attached:?}: allowed");
            };
            assert!(
                deny_reason(&reason).contains("no longer parses"),
                "{reason:?}"
            );
        }
        // The identity policy alone still allows where nothing is attached.
        assert!(judge(&cache, &identity, Attached::None, ROOT, &request()).is_allowed());
    }

    #[test]
    fn a_key_policy_from_before_restriction_reads_as_delegating() {
        let cache = PolicyCache::default();
        let admin = allow_all();
        let identity = [("admin-all", &admin)];
        let names_other = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"keyward:principal/other"},"Action":"kms:Decrypt","Resource":"*"}]}"#;
        assert!(
            judge(
                &cache,
                &identity,
                Attached::Resource(names_other),
                ROOT,
                &request()
            )
            .is_allowed()
        );
        assert!(
            !judge(
                &cache,
                &identity,
                Attached::Key(names_other),
                ROOT,
                &request()
            )
            .is_allowed()
        );
        let record: crate::store::KeyRecord = serde_json::from_str(
            r#"{"key_id":"k","description":"","created_at":0,"state":"Enabled","deletion_date":null,"pending_window_days":null,"origin":"x","tags":[],"versions":[],"policy":"{}"}"#,
        )
        .unwrap();
        assert!(
            !record.policy_as_written,
            "stored before: read as delegating"
        );
    }
}
