//! `keyward bench`: runs a load against a server and prints the report.

use crate::bench::{self, Op, Options};
use clap::Args;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub connect: super::client::Connect,
    /// Operation to load the server with.
    #[arg(long, value_enum, default_value = "generate-data-key")]
    pub op: Op,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections the requests share; at least one per --endpoint address, connection
    /// i going to address i % n (and moving on if that one fails).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// How long to measure (`10s`, `500ms`, `2m`), unless --requests is given.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many requests instead of after --duration (no warm-up).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Warm-up before measuring, with --duration.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Size of secret values and Encrypt plaintexts, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// The server's metrics endpoint (its --metrics-listen address): adds root-of-trust calls
    /// per request and the data-key cache hit rate to the report.
    #[arg(long, env = "KEYWARD_METRICS")]
    pub metrics: Option<String>,
    /// Scale mode: load this many secrets (3 versions each; reused by later runs), then
    /// report load time, ListSecrets pagination, reads at that size, and with --metrics the
    /// store's size, the server's RSS and start-up time. --op is ignored.
    #[arg(long)]
    pub scale: Option<usize>,
    /// Replicate the secrets the run creates (put-secret-value, create-secret) to this site
    /// (repeatable): the metrics' keyward_replication_lag_* then show replication under load.
    #[arg(long = "replica-region")]
    pub replica_regions: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also measure the ceilings on the server's own token (raw seal/unseal with as many
    /// threads as it has sessions) and the empty-RPC rate, and report the ratio.
    #[arg(long)]
    pub ceiling: bool,
    /// With --ceiling: the server's configuration file (else the development default).
    #[arg(long, env = "KEYWARD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// With --ceiling: the server's data directory.
    #[arg(long, env = "KEYWARD_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// With --ceiling: how long each ceiling is measured.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub ceiling_duration: Duration,
}

/// `250ms`, `10s`, `2m`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {text:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// `config`: the server's configuration, when ceilings are to be measured on its token (the
/// caller has set the environment its module needs).
pub fn main(args: BenchArgs, config: Option<crate::config::Config>) -> ExitCode {
    super::client::run_client(|| async move {
        let ceilings = match config {
            Some(config) => Some(measure_ceilings(&args, config).await?),
            None => None,
        };
        if let Some(secrets) = args.scale {
            let report = bench::scale::run(
                &args.connect,
                bench::scale::Options {
                    secrets,
                    concurrency: args.concurrency.max(1),
                    connections: args.connections.max(1),
                    duration: args.duration,
                    value_size: args.value_size,
                    metrics: args.metrics.clone(),
                },
            )
            .await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", report.text());
            }
            return Ok(());
        }
        let options = Options {
            op: args.op,
            concurrency: args.concurrency.max(1),
            connections: args.connections.max(1),
            requests: args.requests,
            duration: args.duration,
            warmup: args.warmup,
            value_size: args.value_size,
            metrics: args.metrics.clone(),
            replica_regions: args.replica_regions.clone(),
        };
        let mut report = bench::run(&args.connect, options).await?;
        // Reads whose data key is mostly not cached are bound by the unseal, not the transport.
        let uncached = report
            .server
            .as_ref()
            .and_then(|s| s.data_key_cache_hit_rate)
            .is_some_and(|rate| rate < 0.5);
        let ceiling = match (&ceilings, args.op) {
            (Some(c), bench::Op::GetSecretValue) if uncached => {
                Some(("root-of-trust unseal", c.root_unseal_ops))
            }
            (Some(c), op) => op.ceiling(c),
            (None, _) => None,
        };
        if let Some((name, ops)) = ceiling {
            report.compare(name, ops);
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
        } else {
            print!("{}", report.text());
        }
        Ok(())
    })
}

async fn measure_ceilings(
    args: &BenchArgs,
    config: crate::config::Config,
) -> Result<bench::ceiling::Ceilings, String> {
    let duration = args.ceiling_duration;
    let (sessions, root_seal_ops, root_unseal_ops) =
        tokio::task::spawn_blocking(move || bench::ceiling::root_of_trust(&config, duration))
            .await
            .map_err(|e| e.to_string())??;
    let empty_rpc_ops =
        bench::ceiling::empty_rpc(&args.connect, args.concurrency, args.connections, duration)
            .await?;
    let ceilings = bench::ceiling::Ceilings {
        sessions,
        root_seal_ops,
        root_unseal_ops,
        empty_rpc_ops,
    };
    eprintln!(
        "ceilings: root-of-trust seal {root_seal_ops:.0} ops/s, unseal {root_unseal_ops:.0} ops/s ({sessions} threads); empty RPC {empty_rpc_ops:.0} ops/s"
    );
    Ok(ceilings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
