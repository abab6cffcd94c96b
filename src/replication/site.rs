//! The site-to-site service: peers deliver their log entries here. Served on its own
//! listener with mutual TLS required; the caller's site is the peer whose configured
//! identity (a DNS name) its certificate carries, and nothing else is served.

use crate::access::Gate;
use crate::access::identity::{self, certificate_dns_names, certificate_name};
use crate::api::convert::site as wire;
use crate::api::pb::{self, site_replication_service_server::SiteReplicationService};
use crate::audit::{AuditEvent, Outcome};
use crate::config::ReplicationConfig;
use crate::outcome::Exception;
use crate::service::secrets::{Applied, Delivered, SecretsService};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// A batch may carry every value of a 100-version secret; tonic's default 4 MiB is too small.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

pub struct SiteApi {
    secrets: Arc<SecretsService>,
    gate: Arc<Gate>,
    /// (certificate DNS name, region, may overwrite local secrets) of each configured peer.
    peers: Vec<(String, String, bool)>,
}

/// Who called: the certificate's name, and the peer region it is configured as.
struct Peer {
    principal: String,
    region: Option<String>,
    may_overwrite_local: bool,
    source: String,
}

const APPLY_CHANGE: &str = "keyward:ApplyReplicatedChange";

impl SiteApi {
    pub fn new(secrets: Arc<SecretsService>, gate: Arc<Gate>, config: &ReplicationConfig) -> Self {
        let peers = config
            .peers
            .iter()
            .map(|p| {
                (
                    p.identity.clone(),
                    p.region.clone(),
                    p.allow_overwrite_local,
                )
            })
            .collect();
        Self {
            secrets,
            gate,
            peers,
        }
    }

    fn peer<T>(&self, request: &Request<T>) -> Result<Peer, Status> {
        let certificates = request.peer_certs();
        let der = certificates
            .as_deref()
            .and_then(|c| c.first())
            .ok_or_else(|| Status::unauthenticated("a site certificate is required"))?;
        let names = certificate_dns_names(der.as_ref()).map_err(Status::unauthenticated)?;
        let source = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let known = self
            .peers
            .iter()
            .find(|(identity, _, _)| names.contains(identity));
        Ok(match known {
            Some((identity, region, may_overwrite_local)) => Peer {
                principal: identity::principal(identity),
                region: Some(region.clone()),
                may_overwrite_local: *may_overwrite_local,
                source,
            },
            None => Peer {
                // For the audit record: what the certificate calls its holder.
                principal: identity::principal(
                    &certificate_name(der.as_ref()).unwrap_or_else(|_| "unnamed".into()),
                ),
                region: None,
                may_overwrite_local: false,
                source,
            },
        })
    }

    /// One audit record per entry, and one for a caller that is not a peer.
    async fn audit(
        &self,
        peer: &Peer,
        resource: &str,
        outcome: Result<&Applied, &str>,
        started: Instant,
    ) -> Result<(), Status> {
        let (outcome, error, reason) = match outcome {
            Ok(Applied::Applied | Applied::Duplicate | Applied::Promoted) => {
                (Outcome::Success, None, None)
            }
            Ok(Applied::Refused(why)) => (
                Outcome::Denied,
                Some(Exception::AccessDenied),
                Some(why.as_str()),
            ),
            Err(why) => (
                Outcome::Failed,
                Some(Exception::InternalServiceError),
                Some(why),
            ),
        };
        let event = AuditEvent {
            principal: peer.principal.clone(),
            source: peer.source.clone(),
            action: APPLY_CHANGE.into(),
            resource: resource.to_owned(),
            outcome,
            error,
            reason: reason.map(str::to_owned),
            ..AuditEvent::default()
        };
        self.gate
            .record_site(event, started)
            .await
            .map_err(|_| Status::unavailable("the audit log cannot be written; retry"))
    }
}

#[tonic::async_trait]
impl SiteReplicationService for SiteApi {
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        // As for clients: nothing is done while it could not be audited.
        if !self.gate.audit().healthy() {
            return Err(Status::unavailable(
                "the audit log cannot be written; retry",
            ));
        }
        let started = Instant::now();
        let peer = self.peer(&request)?;
        let Some(from) = peer.region.clone() else {
            let why = format!("{} is not a peer site of this one", peer.principal);
            tracing::warn!(caller = %peer.principal, "replication call from a site that is not a configured peer");
            let refused = Applied::Refused(why.clone());
            self.audit(&peer, "*", Ok(&refused), started).await?;
            return Err(Status::permission_denied(why));
        };
        let batch = request.into_inner();
        let mut resources = HashMap::new();
        let delivered: Vec<Delivered> = batch
            .entries
            .into_iter()
            .map(|entry| {
                if let Some(pb::replication_entry::Change::Upsert(state)) = &entry.change {
                    resources.insert(entry.seq, state.primary_arn.clone());
                }
                Delivered {
                    seq: entry.seq,
                    name: entry.name,
                    change: wire::incoming(entry.change),
                }
            })
            .collect();
        let (applied, failure) = self
            .secrets
            .apply_replicated(&from, &batch.log_id, delivered, peer.may_overwrite_local)
            .await;
        let mut outcomes = Vec::with_capacity(applied.len());
        for (seq, name, applied) in applied {
            if let Applied::Refused(why) = &applied {
                tracing::warn!(secret = %name, primary = %from, reason = %why,
                    "refused a replicated change");
            }
            let resource = resources.remove(&seq).unwrap_or(name);
            self.audit(&peer, &resource, Ok(&applied), started).await?;
            outcomes.push(wire::outcome_out(seq, applied));
        }
        if let Some(e) = failure {
            // Retryable: answer what was done; the primary sends the rest again.
            tracing::warn!(primary = %from, error = %e, "cannot apply replicated changes now");
            self.audit(&peer, "*", Err(&e.to_string()), started).await?;
            if outcomes.is_empty() {
                return Err(Status::unavailable(format!(
                    "cannot apply changes now: {e}"
                )));
            }
        }
        // Best effort: an entry the old primary sends later is answered PROMOTED anyway.
        let promoted = match self.secrets.take_promotions(&from).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(primary = %from, error = %e, "cannot read pending promotion notices");
                Vec::new()
            }
        };
        Ok(Response::new(pb::ApplyResponse { outcomes, promoted }))
    }
}

/// This site's certificate and key, and the sites' CA.
struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

fn read_pems(config: &ReplicationConfig) -> Result<Pems, String> {
    use crate::access::tls::read_pem;
    Ok(Pems {
        cert: read_pem(&config.cert_file, "replication.cert_file", "CERTIFICATE")?,
        key: read_pem(&config.key_file, "replication.key_file", "PRIVATE KEY")?,
        ca: read_pem(&config.ca_file, "replication.ca_file", "CERTIFICATE")?,
    })
}

/// Server TLS for the replication listener: this site's certificate, peers' required.
pub fn server_tls(config: &ReplicationConfig) -> Result<ServerTlsConfig, String> {
    crate::access::tls::use_ring();
    let pems = read_pems(config)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(pems.cert, pems.key))
        .client_ca_root(Certificate::from_pem(pems.ca)))
}

/// Client TLS towards peers: this site's certificate, and only the sites' CA trusted.
pub fn client_tls(config: &ReplicationConfig) -> Result<tonic::transport::ClientTlsConfig, String> {
    crate::access::tls::use_ring();
    let pems = read_pems(config)?;
    Ok(tonic::transport::ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pems.ca))
        .identity(Identity::from_pem(pems.cert, pems.key)))
}
