//! `keyward escrow` and `keyward recover` (see the `escrow` module for what escrow is, and
//! `backup::recover` for the order recovery follows).
//!
//! - `keyward escrow init --shares N --threshold K --public-key FILE`: makes the escrow key pair,
//!   writes the public key (PEM) and prints the private key's shares once, on stdout. Nothing
//!   else keeps them.
//! - `keyward escrow install --config F [--so-pin-file F]`: puts the escrow public key into the
//!   PKCS#11 token as a trusted wrapping key, logged in as the security officer (once per token;
//!   nothing to do on a TPM).
//! - `keyward escrow add-existing --config F`: escrows the keys made before escrow was on,
//!   where the root of trust allows it, and reports those it cannot (stopped server); the next
//!   server start audits what it escrowed (`keyward:EscrowExistingKeys`).
//! - `keyward recover --backup FILE --shares S1,S2,S3 --config NEW`: a backup and k shares onto
//!   a new root of trust and an empty store. `--shares-file FILE` (or `-`, stdin) keeps shares
//!   out of the process list and the shell history.

use super::backup::{
    Stopped, escrow_key, failed, hardware, prepared, print, read, store, write_new,
};
use crate::backend::pkcs11::{Installed, TokenSelector, ensure_token, install_escrow_key};
use crate::backend::{Hardware, KeyKind};
use crate::backup::recover::{self, Options};
use crate::config::{Config, RootOfTrustConfig, Token, read_secret};
use crate::escrow::keypair::EscrowPrivateKey;
use crate::escrow::{EscrowKey, shares};
use crate::store::{Expect, KeyRecord, Op, Store, keyspace};
use crate::time::Clock;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EscrowArgs {
    #[command(subcommand)]
    command: EscrowCommand,
}

#[derive(Debug, Subcommand)]
enum EscrowCommand {
    /// Make the escrow key pair: write its public key, print its private key as k-of-n shares.
    Init {
        /// How many shares to make.
        #[arg(long, default_value_t = 5)]
        shares: usize,
        /// How many shares rebuild the key.
        #[arg(long, default_value_t = 3)]
        threshold: usize,
        /// Where to write the public key (PEM; refused if it exists). Point
        /// `[escrow] public_key_file` at it.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Install the configured escrow public key in the PKCS#11 token as a trusted key (needs
    /// the token's SO PIN; once per token).
    Install {
        #[command(flatten)]
        stopped: Stopped,
        /// File holding the token's SO PIN; without it, the development default's.
        #[arg(long)]
        so_pin_file: Option<PathBuf>,
    },
    /// Escrow the keys made before escrow was on, where the root of trust allows it, and
    /// report those it does not (run with the server stopped).
    AddExisting {
        #[command(flatten)]
        stopped: Stopped,
    },
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The backup file.
    #[arg(long)]
    backup: PathBuf,
    /// At least the threshold of shares, separated by commas.
    #[arg(
        long,
        conflicts_with = "shares_file",
        required_unless_present = "shares_file"
    )]
    shares: Option<String>,
    /// A file with one share per line (`-`: standard input).
    #[arg(long)]
    shares_file: Option<PathBuf>,
    #[command(flatten)]
    stopped: Stopped,
    /// Delete whatever the target store holds first.
    #[arg(long)]
    force: bool,
    /// Recover although some key versions are not escrowed (they will not decrypt).
    #[arg(long)]
    skip_unescrowed: bool,
    /// Recover although the backup's MAC key is not escrowed (the backup is not authenticated).
    #[arg(long)]
    without_mac_check: bool,
}

pub fn main(args: EscrowArgs) -> ExitCode {
    match args.command {
        EscrowCommand::Init {
            shares,
            threshold,
            public_key,
        } => match init(shares, threshold, &public_key) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failed(&e),
        },
        EscrowCommand::Install {
            stopped,
            so_pin_file,
        } => match prepared(&stopped).and_then(|config| install(&config, so_pin_file)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failed(&e),
        },
        EscrowCommand::AddExisting { stopped } => match prepared(&stopped) {
            Ok(config) => super::client::run_client(|| add_existing(config)),
            Err(e) => failed(&e),
        },
    }
}

fn warn_unprotected() {
    for missing in crate::crypto::locked::protect_process() {
        eprintln!("warning: {missing}");
    }
}

fn init(shares: usize, threshold: usize, public_key: &std::path::Path) -> Result<(), String> {
    if public_key.exists() {
        return Err(format!(
            "{} exists; not overwriting it",
            public_key.display()
        ));
    }
    warn_unprotected();
    eprintln!(
        "generating an RSA-{} escrow key pair...",
        crate::escrow::keypair::BITS
    );
    let private = EscrowPrivateKey::generate().map_err(|e| e.to_string())?;
    let public = private.public().map_err(|e| e.to_string())?;
    let prime = private.shared_prime().map_err(|e| e.to_string())?;
    let lines =
        shares::split(&prime, &public.id(), threshold, shares).map_err(|e| e.to_string())?;
    drop((prime, private));
    write_new(public_key, public.pem().as_bytes())?;
    eprintln!(
        "Give each share to a different custodian. They are printed this once and kept nowhere \
         else; any {threshold} of them rebuild the escrow private key."
    );
    // Not through the CLI's output path (a JSON value): the shares are written straight from
    // zeroizing buffers, and the text holding them is zeroized too.
    #[derive(serde::Serialize)]
    struct Initialised<'a> {
        escrow_key: String,
        public_key_file: String,
        threshold: usize,
        shares: Vec<&'a str>,
    }
    let text = zeroize::Zeroizing::new(
        serde_json::to_string_pretty(&Initialised {
            escrow_key: public.id(),
            public_key_file: public_key.display().to_string(),
            threshold,
            shares: lines.iter().map(|line| line.as_str()).collect(),
        })
        .map_err(|e| e.to_string())?,
    );
    println!("{}", text.as_str());
    Ok(())
}

fn install(config: &Config, so_pin_file: Option<PathBuf>) -> Result<(), String> {
    let escrow = escrow_key(config)?.ok_or("the configuration has no [escrow] public_key_file")?;
    let RootOfTrustConfig::Pkcs11(p) = &config.root_of_trust else {
        return print(serde_json::json!({
            "escrow_key": escrow.id(),
            "installed": false,
            "why": "nothing to install: a TPM root of trust wraps sealed-kek keys to the escrow key in software",
        }));
    };
    let so_pin_file = so_pin_file
        .or_else(|| p.initialize_token_so_pin_file.clone())
        .ok_or("give --so-pin-file (the token's security officer PIN)")?;
    let so_pin = read_secret(None, Some(&so_pin_file)).map_err(|e| e.to_string())?;
    let token = match &p.token {
        Token::Label(label) => {
            if p.initialize_token_so_pin_file.is_some() {
                // The development token may not exist before the first start.
                let ctx = crate::backend::pkcs11::context(&p.module).map_err(|e| e.to_string())?;
                let pin = p.pin().map_err(|e| e.to_string())?;
                ensure_token(&ctx, label, &so_pin, &pin).map_err(|e| e.to_string())?;
            }
            TokenSelector::Label(label.clone())
        }
        Token::Serial(serial) => TokenSelector::Serial(serial.clone()),
    };
    let installed = install_escrow_key(&p.module, &token, &so_pin, escrow.target())
        .map_err(|e| format!("cannot install the escrow key: {e}"))?;
    let (now, protected) = match installed {
        Installed::Now {
            protected_from_deletion,
        } => (true, Some(protected_from_deletion)),
        Installed::Already => (false, None),
    };
    if protected == Some(false) {
        eprintln!(
            "warning: the token does not take CKA_DESTROYABLE=false: a user session can delete \
             the escrow key (the server then refuses to make keys until it is installed again)"
        );
    }
    print(serde_json::json!({
        "escrow_key": escrow.id(),
        "token": token.to_string(),
        "installed": now,
        "already_installed": !now,
    }))
}

/// Escrows every key the store names that is not escrowed yet; reports the rest.
async fn add_existing(config: Config) -> Result<(), String> {
    let escrow = escrow_key(&config)?.ok_or("the configuration has no [escrow] public_key_file")?;
    let store = store(&config).await?;
    let hw = hardware(&config).await?;
    let entry = [keyspace::ESCROW_KEYS, escrow.id().as_bytes()].concat();
    store
        .commit(vec![Op::Put {
            key: entry,
            value: escrow.der().to_vec(),
            expect: Expect::Any,
        }])
        .await
        .map_err(|e| e.to_string())?;
    let (mut escrowed, mut already, mut cannot) = (Vec::new(), 0usize, Vec::new());
    let keys = crate::store::Table::<KeyRecord>::new(store.clone(), keyspace::KMS_KEYS);
    for (_, record, version) in keys.scan_all().await.map_err(|e| e.to_string())? {
        let mut changed = record.clone();
        for v in &mut changed.versions {
            let name = format!("{} v{}", record.key_id, v.version);
            if v.escrow
                .as_ref()
                .is_some_and(|e| e.escrow_key == escrow.id())
            {
                already += 1;
                continue;
            }
            match crate::escrow::escrow_existing(&hw, &escrow, KeyKind::Master, &v.material).await {
                Ok(blob) => {
                    v.escrow = Some(blob);
                    escrowed.push(name);
                }
                Err(e) => cannot.push(serde_json::json!({"key": name, "why": e.to_string()})),
            }
        }
        if changed != record {
            let op = keys.put(&record.key_id, &changed, Expect::Version(version));
            store.commit(vec![op]).await.map_err(|e| {
                format!(
                    "{}: {e} (is the server running? stop it first)",
                    record.key_id
                )
            })?;
        }
    }
    for entry in [keyspace::AUDIT_MAC_KEY, keyspace::BACKUP_MAC_KEY] {
        let name = String::from_utf8_lossy(entry).into_owned();
        match mac_key(&store, &hw, &escrow, entry).await {
            Ok(true) => escrowed.push(name),
            Ok(false) => already += 1,
            Err(e) => cannot.push(serde_json::json!({"key": name, "why": e})),
        }
    }
    if !escrowed.is_empty() {
        // No audit log here: the next server start records this mark in its log.
        let mark = serde_json::json!({
            "escrow_key": escrow.id(),
            "escrowed": escrowed,
            "at": crate::time::SystemClock.now().rfc3339().unwrap_or_default(),
        });
        store
            .commit(vec![Op::Put {
                key: keyspace::ESCROW_ADDED.to_vec(),
                value: mark.to_string().into_bytes(),
                expect: Expect::Any,
            }])
            .await
            .map_err(|e| e.to_string())?;
    }
    store.flush().map_err(|e| e.to_string())?;
    if !cannot.is_empty() {
        eprintln!(
            "warning: {} keys cannot be escrowed; they cannot be recovered onto new hardware",
            cannot.len()
        );
    }
    print(serde_json::json!({
        "escrow_key": escrow.id(),
        "escrowed": escrowed,
        "already_escrowed": already,
        "cannot_escrow": cannot,
    }))
}

/// Escrows the MAC key named at `entry` if it exists and is not escrowed: true when it did.
async fn mac_key(
    store: &Store,
    hw: &Hardware,
    escrow: &EscrowKey,
    entry: &[u8],
) -> Result<bool, String> {
    let Some(found) = store.get(entry).await.map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let blob_entry = crate::audit::escrowed_mac_entry(entry);
    if let Some(blob) = store.get(&blob_entry).await.map_err(|e| e.to_string())? {
        let blob: crate::escrow::Escrowed =
            serde_json::from_slice(&blob.value).map_err(|e| e.to_string())?;
        if blob.escrow_key == escrow.id() {
            return Ok(false);
        }
    }
    let key = crate::backend::KeyRef(String::from_utf8_lossy(&found.value).into_owned());
    let blob = crate::escrow::escrow_existing(hw, escrow, KeyKind::Mac, &key)
        .await
        .map_err(|e| e.to_string())?;
    store
        .commit(vec![Op::Put {
            key: blob_entry,
            value: serde_json::to_vec(&blob).map_err(|e| e.to_string())?,
            expect: Expect::Any,
        }])
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

pub fn recover_main(args: RecoverArgs) -> ExitCode {
    warn_unprotected();
    let texts = match share_texts(&args) {
        Ok(texts) => texts,
        Err(e) => return failed(&e),
    };
    let config = match prepared(&args.stopped) {
        Ok(config) => config,
        Err(e) => return failed(&e),
    };
    let options = Options {
        force: args.force,
        skip_unescrowed: args.skip_unescrowed,
        without_mac_check: args.without_mac_check,
    };
    super::client::run_client(|| run_recover(args.backup, texts, config, options))
}

fn share_texts(args: &RecoverArgs) -> Result<Vec<zeroize::Zeroizing<String>>, String> {
    let text = match (&args.shares, &args.shares_file) {
        (Some(list), _) => zeroize::Zeroizing::new(list.replace(',', "\n")),
        (None, Some(file)) if file.as_os_str() == "-" => {
            let mut text = zeroize::Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("reading shares from stdin: {e}"))?;
            text
        }
        (None, Some(file)) => zeroize::Zeroizing::new(
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?,
        ),
        (None, None) => return Err("give --shares or --shares-file".into()),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| zeroize::Zeroizing::new(line.to_owned()))
        .collect())
}

async fn run_recover(
    file: PathBuf,
    texts: Vec<zeroize::Zeroizing<String>>,
    config: Config,
    options: Options,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let backup = read(&file)?;
    let new_escrow = escrow_key(&config)?;
    let refused = |e: recover::RecoverError| format!("{e}; nothing was recovered");
    let shares: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    // Shares and backup first: a refusal here has not touched the new token or store.
    let prepared = recover::prepare(&backup, &shares, options).map_err(refused)?;
    let target = store(&config).await?;
    let hw = hardware(&config).await?;
    eprintln!(
        "recovering {} entries from {} ({}) onto the root of trust in the configuration",
        backup.header.entries,
        file.display(),
        backup.header.created_at
    );
    let recovered = recover::apply(
        prepared,
        &backup,
        &hw,
        &target,
        new_escrow.as_ref(),
        options,
        crate::time::SystemClock.now(),
    )
    .await
    .map_err(refused)?;
    target.flush().map_err(|e| e.to_string())?;
    if !recovered.skipped.is_empty() {
        eprintln!(
            "warning: {} key versions were not recovered: {}",
            recovered.skipped.len(),
            recovered.skipped.join(", ")
        );
    }
    if !recovered.mac_checked {
        eprintln!("warning: the backup's MAC was not checked (its key was not escrowed)");
    }
    print(serde_json::json!({
        "backup": file.display().to_string(),
        "escrow_key": recovered.escrow_id,
        "keys": recovered.keys,
        "key_versions": recovered.key_versions,
        "mac_keys": recovered.mac_keys,
        "skipped": recovered.skipped,
        "mac_checked": recovered.mac_checked,
        "entries": recovered.entries,
        "data_dir": config.data_dir.display().to_string(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
