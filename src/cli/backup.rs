//! `keyward backup` and `keyward restore`: point-in-time backups of the store and their
//! restore (see the `backup` module for what a backup holds and how it is sealed).
//!
//! - `keyward backup --to FILE`: online, from the running server (`--endpoint`), authorised
//!   and audited as `keyward:CreateBackup`.
//! - `keyward backup --to FILE --data-dir DIR [--config F]`: from a stopped server's store.
//! - `keyward backup verify FILE`: offline, that the file is whole and unchanged (its digest);
//!   with `--data-dir`/`--config`, also its MAC, by the deployment's root of trust.
//! - `keyward restore --from FILE --data-dir DIR [--config F] [--force]`: checks the MAC with
//!   the configured root of trust, then writes every entry into the (empty) store.

use crate::api::pb::{CreateBackupRequest, backup_service_client::BackupServiceClient};
use crate::backend::Hardware;
use crate::backup::{self, format};
use crate::config::{Config, StoreConfig};
use crate::store::Store;
use crate::time::Clock;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// Write the backup to this file (refused if it exists).
    #[arg(long)]
    to: Option<PathBuf>,
    #[command(flatten)]
    stopped: Stopped,
    #[command(flatten)]
    connect: super::client::Connect,
}

/// A stopped server's store and root of trust, as `keyward serve` would open them.
#[derive(Debug, Clone, Args)]
pub(super) struct Stopped {
    /// The stopped server's data directory: back up (or check against) its store and root of
    /// trust instead of asking a running server.
    #[arg(long)]
    pub(super) data_dir: Option<PathBuf>,
    /// The server's configuration file (root of trust, store); without it, the development
    /// default under --data-dir.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Check a backup file: whole and unchanged (offline); with --data-dir or --config, also
    /// sealed by that deployment's root of trust.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        stopped: Stopped,
    },
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to restore into (its store must be empty, or --force).
    #[arg(long)]
    data_dir: PathBuf,
    /// The configuration of the server that will run on it (root of trust, store); without
    /// it, the development default under --data-dir.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Delete whatever the target store holds first.
    #[arg(long)]
    force: bool,
}

pub fn main(args: BackupArgs) -> ExitCode {
    match args.command {
        Some(BackupCommand::Verify { file, stopped }) => {
            let deployment = match opened(&stopped) {
                Ok(deployment) => deployment,
                Err(e) => return failed(&e),
            };
            super::client::run_client(|| verify(file, deployment))
        }
        None => {
            let Some(to) = args.to else {
                return failed("give --to FILE (or `keyward backup verify FILE`)");
            };
            if args.stopped.data_dir.is_some() || args.stopped.config.is_some() {
                let config = match prepared(&args.stopped) {
                    Ok(config) => config,
                    Err(e) => return failed(&e),
                };
                super::client::run_client(|| offline(to, config))
            } else {
                super::client::run_client(|| online(to, args.connect))
            }
        }
    }
}

pub fn restore_main(args: RestoreArgs) -> ExitCode {
    let stopped = Stopped {
        data_dir: Some(args.data_dir),
        config: args.config,
    };
    let config = match prepared(&stopped) {
        Ok(config) => config,
        Err(e) => return failed(&e),
    };
    super::client::run_client(|| restore(args.from, config, args.force))
}

pub(super) fn failed(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// `Some` config when the command names a deployment to check against.
fn opened(stopped: &Stopped) -> Result<Option<Config>, String> {
    if stopped.data_dir.is_none() && stopped.config.is_none() {
        return Ok(None);
    }
    prepared(stopped).map(Some)
}

/// The configuration `keyward serve` would run with, its environment set. Called before the
/// runtime starts: SoftHSM reads its environment once, and nothing else runs yet.
pub(super) fn prepared(stopped: &Stopped) -> Result<Config, String> {
    let prepared = super::serve::prepare(super::serve::ServeArgs {
        config: stopped.config.clone(),
        listen: None,
        data_dir: stopped.data_dir.clone(),
        metrics_listen: None,
        aws_listen: None,
        node_id: None,
    })
    .map_err(|e| e.to_string())?;
    super::serve::set_env(&prepared.env);
    Ok(prepared.config)
}

pub(super) async fn hardware(config: &Config) -> Result<Hardware, String> {
    let config = config.clone();
    let (root, sessions) =
        tokio::task::spawn_blocking(move || crate::server::connect_root_of_trust(&config))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot open the root of trust: {e}"))?;
    Ok(Hardware::new(root, sessions))
}

pub(super) async fn store(config: &Config) -> Result<Store, String> {
    match &config.store {
        StoreConfig::Sled => {
            let dir = config.data_dir.join("store");
            Store::open(&dir).map_err(|e| {
                format!(
                    "cannot open {}: {e} (is its server running? stop it, or back up online without --data-dir)",
                    dir.display()
                )
            })
        }
        StoreConfig::Etcd(etcd) => {
            let options = etcd.options().map_err(|e| e.to_string())?;
            Store::connect_etcd(options)
                .await
                .map_err(|e| format!("cannot reach etcd: {e}"))
        }
    }
}

/// The configured escrow key, if any.
pub(super) fn escrow_key(config: &Config) -> Result<Option<crate::escrow::EscrowKey>, String> {
    config
        .escrow
        .as_ref()
        .map(|e| crate::escrow::EscrowKey::load(&e.public_key_file).map_err(|e| e.to_string()))
        .transpose()
}

pub(super) fn read(file: &Path) -> Result<format::Backup, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    format::decode(&bytes).map_err(|e| format!("{}: {e}", file.display()))
}

/// Writes `bytes` to `to` whole or not at all: a new file beside it, synced, then renamed.
pub(super) fn write_new(to: &Path, bytes: &[u8]) -> Result<(), String> {
    if to.exists() {
        return Err(format!(
            "{} exists: refusing to overwrite a backup (choose another name)",
            to.display()
        ));
    }
    let partial = to.with_extension("partial");
    let written = std::fs::File::create(&partial).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&partial, to))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            format!("cannot write {}: {e}", to.display())
        })
}

pub(super) fn summary(file: &Path, backup: &format::Backup) -> serde_json::Value {
    serde_json::json!({
        "file": file.display().to_string(),
        "created_at": backup.header.created_at,
        "source": backup.header.source,
        "entries": backup.header.entries,
        "sha256": crate::crypto::hex::encode(&backup.digest),
    })
}

pub(super) fn print(value: serde_json::Value) -> Result<(), String> {
    super::output::print(super::output::Format::Json, &value).map_err(|e| e.to_string())
}

async fn online(to: PathBuf, connect: super::client::Connect) -> Result<(), String> {
    if to.exists() {
        return Err(format!(
            "{} exists: refusing to overwrite a backup",
            to.display()
        ));
    }
    let mut client = BackupServiceClient::new(super::client::connect(&connect).await?);
    let mut chunks = client
        .create_backup(CreateBackupRequest {})
        .await
        .map_err(super::client::describe)?
        .into_inner();
    let mut bytes = Vec::new();
    let mut paused = 0;
    while let Some(chunk) = chunks.message().await.map_err(super::client::describe)? {
        if bytes.is_empty() {
            paused = chunk.writes_paused_ms;
        }
        bytes.extend_from_slice(&chunk.data);
    }
    // What arrived is checked before it is kept: a backup cut off in transit is no backup.
    let backup = format::decode(&bytes).map_err(|e| format!("the server's backup: {e}"))?;
    write_new(&to, &bytes)?;
    let mut out = summary(&to, &backup);
    out["bytes"] = bytes.len().into();
    out["writes_paused_ms"] = paused.into();
    print(out)
}

async fn offline(to: PathBuf, config: Config) -> Result<(), String> {
    if to.exists() {
        return Err(format!(
            "{} exists: refusing to overwrite a backup",
            to.display()
        ));
    }
    let store = store(&config).await?;
    let hw = hardware(&config).await?;
    let escrow = escrow_key(&config)?;
    let sealed = backup::create(&store, hw, escrow.as_ref(), crate::time::SystemClock.now())
        .await
        .map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    let file = sealed.file();
    let backup = format::decode(&file).map_err(|e| e.to_string())?;
    write_new(&to, &file)?;
    let mut out = summary(&to, &backup);
    out["bytes"] = file.len().into();
    print(out)
}

async fn verify(file: PathBuf, deployment: Option<Config>) -> Result<(), String> {
    let backup = read(&file)?;
    let mut out = summary(&file, &backup);
    out["whole_and_unchanged"] = true.into();
    match deployment {
        Some(config) => {
            let hw = hardware(&config).await?;
            backup::check_seal(&backup, hw)
                .await
                .map_err(|e| format!("{}: {e}", file.display()))?;
            out["sealed_by_this_deployment"] = true.into();
        }
        None => {
            eprintln!(
                "note: the MAC was not checked (it needs the root of trust: give --data-dir or --config)"
            );
        }
    }
    print(out)
}

async fn restore(from: PathBuf, config: Config, force: bool) -> Result<(), String> {
    let backup = read(&from)?;
    let hw = hardware(&config).await?;
    backup::check_seal(&backup, hw)
        .await
        .map_err(|e| format!("{}: {e}; nothing was restored", from.display()))?;
    let target = store(&config).await?;
    eprintln!(
        "restoring {} entries from {} ({})",
        backup.header.entries,
        from.display(),
        backup.header.created_at
    );
    let written = backup::restore(&backup, &target, force, crate::time::SystemClock.now())
        .await
        .map_err(|e| match e {
            backup::BackupError::NotEmpty(_) => format!("{e}; give --force to replace it"),
            other => other.to_string(),
        })?;
    let mut out = summary(&from, &backup);
    out["restored"] = written.into();
    out["data_dir"] = config.data_dir.display().to_string().into();
    print(out)
}
