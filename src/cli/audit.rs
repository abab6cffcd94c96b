//! `keyward audit verify FILE...`: checks an audit log's hash chain, asks the server's root of
//! trust to check every checkpoint's MAC, and compares the log's end with the newest record
//! the server has written. Prints each problem with its line and record number.
//!
//! A cluster's nodes each keep their own log: give every node's log and every node's endpoint
//! (`--endpoint A,B,C`) and each log is checked against the node that writes it (the one whose
//! log path it is), all in one command.

use crate::api::pb::{
    AuditCheckpoint, GetAuditHeadRequest, VerifyAuditCheckpointsRequest,
    audit_service_client::AuditServiceClient,
};
use crate::audit::{Head, scan};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
    #[command(flatten)]
    pub connect: super::client::Connect,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit log: chain, checkpoint MACs (by the server's root of trust) and, for
    /// the server's own log, that nothing was cut from its end. Exit status 1 on any problem.
    Verify {
        /// The audit log(s) (JSON lines): on a cluster, one per node.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Check the hash chain only, without the server: checkpoints are NOT verified, so a
        /// log rewritten from scratch would pass.
        #[arg(long)]
        offline: bool,
        /// Accept records after the last checkpoint (a live log's newest records wait for the
        /// next one) with a warning. Without it, a log with no checkpoint or with records after
        /// its last one fails: those records could be cut off unnoticed.
        #[arg(long)]
        allow_unsealed_tail: bool,
    },
}

/// Checkpoints per VerifyAuditCheckpoints call.
const BATCH: usize = crate::api::audit::MAX_CHECKPOINTS;

pub fn main(args: AuditArgs) -> ExitCode {
    match args.command {
        AuditCommand::Verify {
            files,
            offline,
            allow_unsealed_tail,
        } => super::client::run_client(|| async move {
            let several = files.len() > 1;
            let mut failed = Vec::new();
            for file in files {
                if several {
                    println!("== {}", file.display());
                }
                let connect = if offline {
                    args.connect.clone()
                } else {
                    writer_of(&file, &args.connect).await
                };
                if let Err(e) = verify(file, offline, allow_unsealed_tail, connect).await {
                    if !several {
                        return Err(e);
                    }
                    println!("error: {e}");
                    failed.push(e);
                }
            }
            match failed.len() {
                0 => Ok(()),
                n => Err(format!("{n} log(s) failed verification")),
            }
        }),
    }
}

/// Of the endpoints given, the one whose server writes `file` (so that its end is compared
/// with that server's newest record); the whole list when none does or there is one.
async fn writer_of(file: &Path, connect: &super::client::Connect) -> super::client::Connect {
    let endpoints: Vec<&str> = connect.endpoint.split(',').map(str::trim).collect();
    if endpoints.len() < 2 {
        return connect.clone();
    }
    for endpoint in endpoints {
        let mut one = connect.clone();
        one.endpoint = endpoint.to_owned();
        let Ok(conn) = super::client::connect(&one).await else {
            continue;
        };
        let head = AuditServiceClient::new(conn)
            .get_audit_head(GetAuditHeadRequest {})
            .await;
        if let Ok(head) = head
            && same_file(file, Path::new(&head.into_inner().path))
        {
            return one;
        }
    }
    connect.clone()
}

async fn verify(
    file: PathBuf,
    offline: bool,
    allow_unsealed_tail: bool,
    connect: super::client::Connect,
) -> Result<(), String> {
    let reader = std::fs::File::open(&file)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let mut report = scan(reader).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut notes = Vec::new();
    if offline {
        notes.push(format!(
            "offline: {} checkpoint MAC(s) NOT verified; a log rewritten from scratch would pass",
            report.checkpoints.len()
        ));
    } else {
        let mut client = AuditServiceClient::new(super::client::connect(&connect).await?);
        // The head first: records the server writes while we read only extend the file.
        let head = client
            .get_audit_head(GetAuditHeadRequest {})
            .await
            .map_err(super::client::describe)?
            .into_inner();
        let mut bad = Vec::new();
        for (chunk_index, chunk) in report.checkpoints.chunks(BATCH).enumerate() {
            let request = VerifyAuditCheckpointsRequest {
                checkpoints: chunk
                    .iter()
                    .map(|c| AuditCheckpoint {
                        message: c.message.clone(),
                        mac: c.mac.clone(),
                        key_id: c.key_id.clone(),
                    })
                    .collect(),
            };
            let valid = client
                .verify_audit_checkpoints(request)
                .await
                .map_err(super::client::describe)?
                .into_inner()
                .valid;
            if valid.len() != chunk.len() {
                return Err("the server answered for a different number of checkpoints".into());
            }
            bad.extend(
                valid
                    .iter()
                    .enumerate()
                    .filter(|(_, ok)| !**ok)
                    .map(|(i, _)| chunk_index * BATCH + i),
            );
        }
        for index in bad {
            report.mark_bad_mac(index);
        }
        notes.push(format!(
            "{} checkpoint MAC(s) checked by the server's root of trust",
            report.checkpoints.len()
        ));
        if same_file(&file, Path::new(&head.path)) {
            report.check_head(&Head {
                seq: head.seq,
                hash: head.hash,
            });
            notes.push(format!(
                "end of log compared with the server's newest record ({})",
                head.seq
            ));
        } else {
            notes.push(format!(
                "not the server's log ({}): its end was not compared with the server's newest record",
                head.path
            ));
        }
    }
    let sealed = report.sealed();
    if !sealed && allow_unsealed_tail {
        notes.push(
            "warning: records after the last checkpoint (or a log without one) are accepted \
             (--allow-unsealed-tail); no MAC covers them"
                .into(),
        );
    }
    for finding in &report.findings {
        println!("{finding}");
    }
    for note in &notes {
        println!("note: {note}");
    }
    if !report.ok() {
        Err(format!("{} failed verification", file.display()))
    } else if !sealed && !allow_unsealed_tail {
        Err(format!(
            "{} failed verification: {}, so records could be cut off unnoticed. Stop the server \
             cleanly (it seals the log), or pass --allow-unsealed-tail to accept a live log's \
             unsealed tail",
            file.display(),
            if report.checkpoints.is_empty() {
                "no checkpoint seals the log"
            } else {
                "records after the last checkpoint are not sealed"
            }
        ))
    } else {
        println!(
            "OK: {} lines, {} request records, chain intact",
            report.lines, report.records
        );
        Ok(())
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
