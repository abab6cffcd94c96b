//! `BackupService`: an online backup for `keyward backup`, authorised (`keyward:CreateBackup`)
//! and audited like every other action. The backup is snapshotted and sealed before the first
//! chunk leaves (writes wait only for the snapshot, never for a slow reader), then laid out a
//! chunk at a time: the file never exists whole in the server.

use super::guard::guarded;
use super::pb::{self, backup_service_server::BackupService};
use crate::access::Gate;
use crate::backend::Hardware;
use crate::store::Store;
use crate::time::Clock;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Bytes per chunk: well under gRPC's default 4 MiB message limit.
const CHUNK: usize = 1024 * 1024;

pub struct BackupApi {
    gate: Arc<Gate>,
    store: Store,
    hw: Hardware,
    clock: Arc<dyn Clock>,
    /// Escrows the backup key when a backup makes it.
    escrow: Option<crate::escrow::EscrowKey>,
}

impl BackupApi {
    pub fn new(
        gate: Arc<Gate>,
        store: Store,
        hw: Hardware,
        clock: Arc<dyn Clock>,
        escrow: Option<crate::escrow::EscrowKey>,
    ) -> Self {
        Self {
            gate,
            store,
            hw,
            clock,
            escrow,
        }
    }
}

type Chunks = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl BackupService for BackupApi {
    type CreateBackupStream = Chunks;

    async fn create_backup(
        &self,
        request: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<Chunks>, Status> {
        guarded(&self.gate, request, |_r| async move {
            let sealed = crate::backup::create(
                &self.store,
                self.hw.clone(),
                self.escrow.as_ref(),
                self.clock.now(),
            )
            .await?;
            let paused = sealed.writes_paused.as_millis() as u64;
            tracing::info!(
                entries = sealed.header.entries,
                writes_paused_ms = paused,
                "backup made"
            );
            // Laid out a chunk at a time as the client takes them.
            let chunks = sealed.into_chunks(CHUNK).enumerate().map(move |(i, data)| {
                Ok(pb::BackupChunk {
                    data: data.into(),
                    writes_paused_ms: if i == 0 { paused } else { 0 },
                })
            });
            Ok(Response::new(Box::pin(tokio_stream::iter(chunks)) as Chunks))
        })
        .await
    }
}
