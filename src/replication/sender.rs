//! One sender per peer: ships the oldest entries of that peer's log in order, trims them once
//! the peer has answered, and backs off while the peer cannot be reached. Writes on the
//! primary never wait for it.
//!
//! On a cluster the sender is a duty (`replication-<region>`): it runs on one node at a time,
//! its commits fenced, and starts from what the store says (another node's sender may have
//! moved the log on). Entries appended on other nodes wake it through `Outbox::follow`.
//! An entry sent but not yet acknowledged when its node died is sent again by the next
//! holder; the peer answers it as a duplicate and applies nothing twice.

use crate::access::Gate;
use crate::alarms::Alarms;
use crate::api::convert::site as wire;
use crate::api::pb::{self, site_replication_service_client::SiteReplicationServiceClient};
use crate::audit::{AuditEvent, Outcome as AuditOutcome};
use crate::service::secrets::SecretsService;
use crate::service::secrets::replica::outbox::{Outbox, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Entries per call, and roughly the most value bytes one call carries. The peer applies a
/// call's entries in one commit: on an etcd peer that commit must stay under etcd's request
/// limit (1.5 MiB by default), so a call stops after the entry that passes 1 MiB.
const BATCH_ENTRIES: usize = 64;
const BATCH_BYTES: usize = 1 << 20;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// With nothing to send, a peer is still called this often, so its reachability (metrics,
/// alarm) stays current.
const HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Sender {
    pub region: String,
    /// The peer's principal (its certificate identity) and endpoint, for audit records.
    pub peer_principal: String,
    pub endpoint: String,
    pub outbox: Arc<Outbox>,
    pub secrets: Arc<SecretsService>,
    pub client: SiteReplicationServiceClient<Channel>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub alarms: Option<Arc<Alarms>>,
    pub gate: Arc<Gate>,
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Peer(String),
    #[error("{0}")]
    Local(String),
}

impl Sender {
    pub async fn run(mut self) {
        // Picks up where the store says the log is, whoever moved it last.
        if let Err(e) = self.outbox.refresh(&self.region).await {
            tracing::warn!(peer = %self.region, error = %e, "cannot read the replication log's state; sending from the log as it is");
        }
        let mut backoff = self.retry_initial;
        let mut down_since: Option<Instant> = None;
        loop {
            match self.send_once().await {
                Ok(sent) => {
                    if let Some(since) = down_since.take() {
                        tracing::info!(peer = %self.region, down_secs = since.elapsed().as_secs(),
                            "replication peer reachable again");
                        if let Some(alarms) = &self.alarms {
                            alarms.peer_reachable(&self.region);
                        }
                    }
                    self.outbox.set_reachable(&self.region, true).await;
                    backoff = self.retry_initial;
                    if sent == 0 {
                        tokio::select! {
                            () = self.outbox.appended(&self.region) => {}
                            () = tokio::time::sleep(HEARTBEAT) => {}
                        }
                    }
                }
                Err(SendError::Peer(e)) => {
                    let since = *down_since.get_or_insert_with(|| {
                        tracing::warn!(peer = %self.region, error = %e, "replication peer unreachable");
                        Instant::now()
                    });
                    self.outbox.set_reachable(&self.region, false).await;
                    if let Some(alarms) = &self.alarms {
                        alarms.peer_unreachable(&self.region, since.elapsed(), &e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry_max);
                }
                Err(SendError::Local(e)) => {
                    tracing::warn!(peer = %self.region, error = %e, "cannot prepare replication entries; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry_max);
                }
            }
        }
    }

    /// Sends the oldest entries (none: a heartbeat) and records the answers; returns how
    /// many entries were answered.
    async fn send_once(&mut self) -> Result<usize, SendError> {
        let region = self.region.clone();
        let entries = self
            .outbox
            .oldest(&region, BATCH_ENTRIES)
            .await
            .map_err(|e| SendError::Local(e.to_string()))?;
        let mut batch = Vec::with_capacity(entries.len());
        let mut bytes = 0;
        for (seq, entry) in &entries {
            let incoming = self
                .secrets
                .outgoing(entry, &region)
                .await
                .map_err(|e| SendError::Local(e.to_string()))?;
            let wire = wire::entry_out(*seq, entry.changed_at_ms, &entry.name, incoming);
            bytes += prost::Message::encoded_len(&wire);
            batch.push(wire);
            if bytes > BATCH_BYTES {
                break;
            }
        }
        let request = pb::ApplyRequest {
            entries: batch,
            log_id: self.outbox.log_id().to_owned(),
        };
        let reply = tokio::time::timeout(CALL_TIMEOUT, self.client.apply(request))
            .await
            .map_err(|_| SendError::Peer(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|status| SendError::Peer(format!("{}: {}", status.code(), status.message())))?
            .into_inner();
        let mut handled = Vec::with_capacity(reply.outcomes.len());
        // The peer answers a prefix of the batch, in order; anything else ends the prefix.
        for (answer, (seq, entry)) in reply.outcomes.iter().zip(&entries) {
            if answer.seq != *seq {
                break;
            }
            use pb::entry_outcome::Kind;
            let outcome = match Kind::try_from(answer.kind) {
                Ok(Kind::Applied | Kind::Duplicate) => Outcome::Applied,
                Ok(Kind::Refused) => {
                    tracing::warn!(peer = %region, secret = %entry.name, reason = %answer.message,
                        "the peer refused a replicated change");
                    self.audit_refusal(entry, &answer.message).await?;
                    Outcome::Refused(answer.message.clone())
                }
                Ok(Kind::Promoted) => {
                    self.secrets
                        .forget_replica(&entry.name, &region)
                        .await
                        .map_err(|e| SendError::Local(e.to_string()))?;
                    Outcome::Promoted
                }
                Err(_) => break,
            };
            handled.push((*seq, entry.name.clone(), outcome));
        }
        for name in &reply.promoted {
            self.secrets
                .forget_replica(name, &region)
                .await
                .map_err(|e| SendError::Local(e.to_string()))?;
        }
        self.outbox
            .acknowledge(&region, &handled)
            .await
            .map_err(|e| SendError::Local(e.to_string()))?;
        Ok(handled.len())
    }

    /// The peer's refusal, in this site's audit trail too: the secret did not reach it.
    async fn audit_refusal(
        &self,
        entry: &crate::service::secrets::replica::outbox::Entry,
        reason: &str,
    ) -> Result<(), SendError> {
        let resource = match &entry.change {
            crate::service::secrets::replica::outbox::Change::Upsert { record, .. } => {
                record.arn.clone()
            }
            crate::service::secrets::replica::outbox::Change::Remove => entry.name.clone(),
        };
        let event = AuditEvent {
            principal: self.peer_principal.clone(),
            source: self.endpoint.clone(),
            action: "keyward:ReplicateChange".into(),
            resource,
            outcome: AuditOutcome::Denied,
            error: Some(crate::outcome::Exception::AccessDenied),
            reason: Some(format!("refused by {}: {reason}", self.region)),
            ..AuditEvent::default()
        };
        // Not acknowledged until audited: a failed record means the answer is asked again.
        self.gate
            .record_site(event, Instant::now())
            .await
            .map_err(|e| SendError::Local(e.to_string()))
    }
}
