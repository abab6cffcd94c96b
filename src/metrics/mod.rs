//! Prometheus text exposition on a listener of its own (`--metrics-listen`): root-of-trust
//! calls, the data-key cache, the store's size, memory and start-up time. A deliberately small
//! HTTP/1.1 responder: one GET per connection, nothing else to parse.

pub mod requests;

use crate::service::KmsService;
use crate::store::Store;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MAX_REQUEST: usize = 8192;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Source {
    pub kms: Arc<KmsService>,
    pub store: Store,
    /// From the start of `Keyward::open` to ready: store, root of trust, indexes.
    pub start_seconds: f64,
    pub requests: Arc<requests::Requests>,
    pub gate: Arc<crate::access::Gate>,
    /// The replication log, when this site has peers.
    pub outbox: Option<Arc<crate::service::secrets::replica::outbox::Outbox>>,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Resident set size from /proc (Linux); 0 elsewhere.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl Source {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let hw = self.kms.hardware_counters();
        metric(
            &mut out,
            "keyward_root_of_trust_calls_total",
            "counter",
            "Calls into the root of trust made for requests (health probes excluded).",
            hw.calls.load(Relaxed),
        );
        metric(
            &mut out,
            "keyward_root_of_trust_errors_total",
            "counter",
            "Root-of-trust calls that failed.",
            hw.errors.load(Relaxed),
        );
        metric(
            &mut out,
            "keyward_root_of_trust_call_seconds_total",
            "counter",
            "Time spent waiting for root-of-trust calls, summed.",
            hw.busy_micros.load(Relaxed) as f64 / 1e6,
        );
        metric(
            &mut out,
            "keyward_root_of_trust_sessions",
            "gauge",
            "Root-of-trust sessions (one hardware thread each); calls beyond these queue.",
            hw.sessions,
        );
        metric(
            &mut out,
            "keyward_root_of_trust_calls_in_flight",
            "gauge",
            "Root-of-trust calls queued or running now (session pool use).",
            hw.in_flight.load(Relaxed),
        );
        let (hits, misses) = self.kms.data_key_cache_stats();
        metric(
            &mut out,
            "keyward_data_key_cache_hits_total",
            "counter",
            "Secret reads whose data key was cached.",
            hits,
        );
        metric(
            &mut out,
            "keyward_data_key_cache_misses_total",
            "counter",
            "Secret reads that unwrapped their data key in the root of trust.",
            misses,
        );
        metric(
            &mut out,
            "keyward_data_key_cache_entries",
            "gauge",
            "Unwrapped data keys held in memory now.",
            self.kms.data_key_cache_len(),
        );
        metric(
            &mut out,
            "keyward_store_size_bytes",
            "gauge",
            "Size of the store on disk.",
            self.store.size_on_disk().unwrap_or(0),
        );
        metric(
            &mut out,
            "keyward_start_seconds",
            "gauge",
            "Time the server took to open its store and root of trust at start.",
            self.start_seconds,
        );
        self.render_requests(&mut out);
        self.render_access(&mut out);
        self.render_replication(&mut out);
        metric(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the server process.",
            resident_bytes(),
        );
        out
    }
}

impl Source {
    /// Per peer: how far behind it is and whether the last call reached it.
    fn render_replication(&self, out: &mut String) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        type Read = fn(&crate::service::secrets::replica::outbox::Outbox, &str) -> f64;
        let families: [(&str, &str, Read); 3] = [
            (
                "keyward_replication_lag_entries",
                "Logged changes the peer site has not acknowledged.",
                |outbox, peer| outbox.lag(peer).entries as f64,
            ),
            (
                "keyward_replication_lag_seconds",
                "Age of the oldest change the peer site has not acknowledged.",
                |outbox, peer| outbox.lag(peer).seconds,
            ),
            (
                "keyward_replication_peer_up",
                "1 if the last call to the peer site succeeded.",
                |outbox, peer| f64::from(u8::from(outbox.reachable(peer))),
            ),
        ];
        for (name, help, read) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for peer in outbox.peers() {
                // Region names are letters, digits and '-': nothing to escape.
                let _ = writeln!(out, "{name}{{peer=\"{peer}\"}} {}", read(outbox, peer));
            }
        }
    }

    fn render_access(&self, out: &mut String) {
        let gate = self.gate.counters();
        metric(
            out,
            "keyward_requests_allowed_total",
            "counter",
            "Requests admitted by the access gate.",
            gate.allowed.load(Relaxed),
        );
        metric(
            out,
            "keyward_requests_denied_total",
            "counter",
            "Requests refused by policy (AccessDeniedException).",
            gate.denied.load(Relaxed),
        );
        metric(
            out,
            "keyward_requests_unauthenticated_total",
            "counter",
            "Requests without a valid certificate or token (UnrecognizedClientException).",
            gate.unauthenticated.load(Relaxed),
        );
        let audit = self.gate.audit().counters();
        metric(
            out,
            "keyward_audit_records_total",
            "counter",
            "Audit records written.",
            audit.records_written.load(Relaxed),
        );
        metric(
            out,
            "keyward_audit_write_failures_total",
            "counter",
            "Audit writes that failed (their requests failed too).",
            audit.write_failures.load(Relaxed),
        );
        metric(
            out,
            "keyward_audit_checkpoints_total",
            "counter",
            "Audit checkpoints sealed by the root of trust.",
            audit.checkpoints.load(Relaxed),
        );
        metric(
            out,
            "keyward_audit_checkpoint_failures_total",
            "counter",
            "Audit checkpoints the root of trust could not seal (retried).",
            audit.checkpoint_failures.load(Relaxed),
        );
        let Some(alarms) = self.gate.alarms() else {
            return;
        };
        let _ = writeln!(
            out,
            "# HELP keyward_alarms_fired_total Alarm firings by rule.\n# TYPE keyward_alarms_fired_total counter"
        );
        for (name, fired) in alarms.counters() {
            let name = name
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = writeln!(
                out,
                "keyward_alarms_fired_total{{alarm=\"{name}\"}} {fired}"
            );
        }
        let (delivered, failed) = alarms.webhook_counters();
        metric(
            out,
            "keyward_alarm_webhooks_delivered_total",
            "counter",
            "Alarm webhook POSTs answered with 2xx.",
            delivered,
        );
        metric(
            out,
            "keyward_alarm_webhooks_failed_total",
            "counter",
            "Alarm webhook deliveries given up after their attempts.",
            failed,
        );
        metric(
            out,
            "keyward_alarm_webhooks_dropped_total",
            "counter",
            "Alarm webhook deliveries dropped because a receiver's queue was full.",
            alarms.webhook_dropped(),
        );
    }

    fn render_requests(&self, out: &mut String) {
        use requests::{BUCKETS, CODE_NAMES};
        let Ok(by_rpc) = self.requests.by_rpc.read() else {
            return;
        };
        let mut rpcs: Vec<_> = by_rpc.iter().collect();
        rpcs.sort_by(|a, b| a.0.cmp(b.0));
        let _ = writeln!(
            out,
            "# HELP keyward_requests_total gRPC requests by RPC and status code.\n# TYPE keyward_requests_total counter"
        );
        for (rpc, stats) in &rpcs {
            for (code, count) in CODE_NAMES.iter().zip(&stats.codes) {
                let count = count.load(Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "keyward_requests_total{{rpc=\"{rpc}\",code=\"{code}\"}} {count}"
                    );
                }
            }
        }
        let name = "keyward_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request to response headers, by RPC.\n# TYPE {name} histogram"
        );
        for (rpc, stats) in &rpcs {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += count.load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{rpc=\"{rpc}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = stats.count.load(Relaxed);
            let sum = stats.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{rpc=\"{rpc}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{rpc=\"{rpc}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{rpc=\"{rpc}\"}} {count}");
        }
    }
}

/// Serves `GET /metrics` until the task is aborted.
pub async fn serve(listener: TcpListener, source: Arc<Source>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(512);
            let mut chunk = [0u8; 1024];
            let complete = tokio::time::timeout(READ_TIMEOUT, async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            })
            .await
            .unwrap_or(false);
            if !complete {
                return;
            }
            let (status, body) = if request.starts_with(b"GET /metrics ") {
                ("200 OK", source.render())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_owned(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Fetches `http://ADDR/metrics` (for `keyward bench`). `addr` is `host:port`, with or
/// without `http://` and `/metrics`.
pub async fn fetch(addr: &str) -> Result<String, String> {
    let host = addr
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .trim_end_matches('/');
    let failed = |e: std::io::Error| format!("metrics at {host}: {e}");
    let mut stream = tokio::net::TcpStream::connect(host).await.map_err(failed)?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(failed)?;
    let mut response = Vec::new();
    tokio::time::timeout(READ_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .map_err(|_| format!("metrics at {host}: no answer"))?
        .map_err(failed)?;
    let text = String::from_utf8_lossy(&response);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(format!("metrics at {host}: unexpected answer")),
    }
}

/// The value of an unlabelled metric in a text exposition (for `keyward bench`).
pub fn value_of(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_found_by_exact_name() {
        let text = "# HELP a_total x\na_total 12\na_total_more 3\nb 1.5\n";
        assert_eq!(super::value_of(text, "a_total"), Some(12.0));
        assert_eq!(super::value_of(text, "b"), Some(1.5));
        assert_eq!(super::value_of(text, "a"), None);
    }
}
