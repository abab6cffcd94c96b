//! `AuditService` handlers: the log's head and checkpoint verification, for
//! `keyward audit verify`.

use super::guard::guarded;
use super::pb::{self, audit_service_server::AuditService};
use crate::access::Gate;
use crate::audit::RootMac;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// More than this many checkpoints per call is refused: each costs a root-of-trust call, and
/// one request must not hold the hardware for long. `keyward audit verify` sends batches of
/// this size.
pub const MAX_CHECKPOINTS: usize = 1000;

pub struct AuditApi {
    gate: Arc<Gate>,
    mac: Arc<RootMac>,
    /// The log file the server writes, as configured.
    path: PathBuf,
}

impl AuditApi {
    pub fn new(gate: Arc<Gate>, mac: Arc<RootMac>, path: PathBuf) -> Self {
        Self { gate, mac, path }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn get_audit_head(
        &self,
        request: Request<pb::GetAuditHeadRequest>,
    ) -> Reply<pb::GetAuditHeadResponse> {
        guarded(&self.gate, request, |_r| async move {
            let head = self.gate.audit().head();
            Ok(Response::new(pb::GetAuditHeadResponse {
                seq: head.seq,
                hash: head.hash,
                path: self.path.display().to_string(),
            }))
        })
        .await
    }

    async fn verify_audit_checkpoints(
        &self,
        request: Request<pb::VerifyAuditCheckpointsRequest>,
    ) -> Reply<pb::VerifyAuditCheckpointsResponse> {
        guarded(&self.gate, request, |r| async move {
            if r.checkpoints.len() > MAX_CHECKPOINTS {
                return Err(crate::service::KmsError::validation(
                    "checkpoints",
                    format!("at most {MAX_CHECKPOINTS} per call"),
                )
                .into());
            }
            let mut valid = Vec::with_capacity(r.checkpoints.len());
            for checkpoint in r.checkpoints {
                let ok = checkpoint.key_id == self.mac.id()
                    && crate::audit::is_checkpoint_message(&checkpoint.message)
                    && self
                        .mac
                        .verify(checkpoint.message, &checkpoint.mac)
                        .await
                        .map_err(|e| {
                            Status::unavailable(format!(
                                "the root of trust cannot compute the MAC: {e}"
                            ))
                        })?;
                valid.push(ok);
            }
            Ok(Response::new(pb::VerifyAuditCheckpointsResponse { valid }))
        })
        .await
    }
}
