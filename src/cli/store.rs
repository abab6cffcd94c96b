//! `keyward store copy`: moves a stopped single-node store (sled) into a site's etcd, so the
//! site can run as a cluster. The target prefix must be empty; every entry is copied as it is
//! (wrapped data keys and metadata: the store never holds plaintext), then both sides are
//! compared per keyspace entry, by count and by a SHA-256 over keys and values in key order.

use crate::config::{Config, StoreConfig};
use crate::store::{Backend, EtcdStore, Expect, Op, SledStore, keyspace};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Copy a stopped server's store into etcd (the target prefix must be empty).
    Copy {
        /// The stopped server's data directory (its store is `DIR/store`).
        #[arg(long)]
        from_data_dir: PathBuf,
        /// A cluster node's configuration: its `[store]` section names etcd and the prefix.
        #[arg(long)]
        to_config: PathBuf,
    },
}

/// Bytes of values per commit: etcd refuses requests over 1.5 MiB by default.
const BATCH_BYTES: usize = 1024 * 1024;

pub fn run(args: StoreArgs) -> ExitCode {
    match args.command {
        StoreCommand::Copy {
            from_data_dir,
            to_config,
        } => super::client::run_client(|| copy(from_data_dir, to_config)),
    }
}

/// One keyspace entry's contents, as compared after the copy.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    count: usize,
    digest: [u8; 32],
}

fn summarise<'a>(entries: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Summary {
    let mut hash = Sha256::new();
    let mut count = 0;
    for (key, value) in entries {
        // Lengths first, so that no two different entry lists hash alike.
        hash.update((key.len() as u64).to_be_bytes());
        hash.update(key);
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value);
        count += 1;
    }
    Summary {
        count,
        digest: hash.finalize().into(),
    }
}

async fn copy(from: PathBuf, to: PathBuf) -> Result<(), String> {
    let config = Config::load(&to).map_err(|e| e.to_string())?;
    let StoreConfig::Etcd(etcd) = &config.store else {
        return Err(format!("{}: its store is not etcd", to.display()));
    };
    let store_dir = from.join("store");
    if !store_dir.is_dir() {
        return Err(format!(
            "{} has no store (expected {})",
            from.display(),
            store_dir.display()
        ));
    }
    let source = SledStore::open(&store_dir).map_err(|e| {
        format!(
            "cannot open {}: {e} (is its server still running? stop it first)",
            store_dir.display()
        )
    })?;
    let target = EtcdStore::connect(etcd.options().map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    if !target
        .scan(b"", None, 1)
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Err(format!(
            "etcd already holds data under the prefix {:?}: refusing to copy over it (give an empty prefix)",
            etcd.prefix
        ));
    }
    let entries = source
        .scan(b"", None, usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let total = entries.len();
    eprintln!(
        "copying {total} entries from {} to etcd {}",
        store_dir.display(),
        etcd.prefix
    );
    let mut batch = Vec::new();
    let (mut bytes, mut copied) = (0, 0);
    for (key, found) in &entries {
        bytes += key.len() + found.value.len();
        batch.push(Op::Put {
            key: key.clone(),
            value: found.value.clone(),
            expect: Expect::Absent,
        });
        if batch.len() >= etcd.max_txn_ops || bytes >= BATCH_BYTES {
            copied += batch.len();
            target
                .commit(std::mem::take(&mut batch))
                .await
                .map_err(|e| format!("after {} of {total} entries: {e}", copied))?;
            bytes = 0;
            eprintln!("  {copied}/{total}");
        }
    }
    if !batch.is_empty() {
        copied += batch.len();
        target.commit(batch).await.map_err(|e| e.to_string())?;
    }
    eprintln!("copied {copied}/{total}; comparing");
    let copied_entries = target
        .scan(b"", None, usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let mut report = serde_json::Map::new();
    let mut sections: Vec<(&str, Option<&[u8]>)> = keyspace::ALL
        .iter()
        .map(|entry| (entry.name, Some(entry.bytes)))
        .collect();
    sections.push(("OTHER", None));
    for (name, prefix) in sections {
        let within = |entries: &'_ [(Vec<u8>, crate::store::Versioned)]| {
            summarise(
                entries
                    .iter()
                    .filter(|(key, _)| match prefix {
                        Some(prefix) => key.starts_with(prefix),
                        None => !keyspace::ALL.iter().any(|e| key.starts_with(e.bytes)),
                    })
                    .map(|(key, found)| (key.as_slice(), found.value.as_slice())),
            )
        };
        let (before, after) = (within(&entries), within(&copied_entries));
        if before != after {
            return Err(format!(
                "{name}: the copy differs ({} entries in sled, {} in etcd)",
                before.count, after.count
            ));
        }
        if before.count > 0 {
            report.insert(
                name.to_owned(),
                serde_json::json!({
                    "entries": before.count,
                    "sha256": crate::crypto::hex::encode(&before.digest),
                }),
            );
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "copied": copied, "verified": report }))
            .map_err(|e| e.to_string())?
    );
    Ok(())
}
