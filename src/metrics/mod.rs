//! Prometheus text exposition on a listener of its own (`--metrics-listen`): root-of-trust
//! calls, the data-key cache, the store's size, memory and start-up time. HTTP/1.1 through
//! hyper: one request per connection, `GET /metrics` answered, anything else a 404.

pub mod requests;

use crate::service::KmsService;
use crate::store::Store;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::TcpListener;

/// The most of a request head read (hyper's smallest buffer): a scrape needs a few hundred
/// bytes, and a larger head is answered 431 without being parsed further.
const MAX_REQUEST: usize = 8192;
/// A request head must arrive within this long of the connection opening, or the connection is
/// closed unanswered; `fetch` waits as long for an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

pub struct Source {
    pub kms: Arc<KmsService>,
    pub store: Store,
    /// From the start of `Keyward::open` to ready: store, root of trust, indexes.
    pub start_seconds: f64,
    pub requests: Arc<requests::Requests>,
    pub gate: Arc<crate::access::Gate>,
    /// The replication log, when this site has peers.
    pub outbox: Option<Arc<crate::service::secrets::replica::outbox::Outbox>>,
    /// What this node sees of its cluster, when the store is etcd.
    pub cluster: Option<Arc<crate::cluster::Health>>,
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
            "Size of the store on disk (on etcd: its database, as last reported).",
            self.store.size_on_disk().unwrap_or(0),
        );
        if let Some(cluster) = &self.cluster {
            metric(
                &mut out,
                "keyward_cluster_etcd_reachable",
                "gauge",
                "1 when this node's last look at etcd was answered, else 0.",
                u8::from(cluster.etcd_reachable.load(Relaxed)),
            );
            metric(
                &mut out,
                "keyward_cluster_duties_without_holder",
                "gauge",
                "Background duties no node held at this node's last look.",
                cluster.duties_without_holder.load(Relaxed),
            );
            metric(
                &mut out,
                "keyward_cluster_duties_held",
                "gauge",
                "Background duties this node held at its last look.",
                cluster.duties_held_here.load(Relaxed),
            );
        }
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
    serve_with(listener, READ_TIMEOUT, move || source.render()).await
}

/// `serve` over any exposition, so the HTTP side is tested without a server behind it.
async fn serve_with(
    listener: TcpListener,
    read_timeout: Duration,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    let render = Arc::new(render);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = respond(&request, render.as_ref());
                async move { Ok::<_, Infallible>(answer) }
            });
            // One request per connection, as scrapers open one per scrape: nothing idles here.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .max_buf_size(MAX_REQUEST)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond<B>(request: &Request<B>, render: &dyn Fn() -> String) -> Response<Full<Bytes>> {
    // The request target exactly: no query, no absolute form.
    let (status, body) = if request.method() == Method::GET && request.uri() == "/metrics" {
        (StatusCode::OK, render())
    } else {
        (
            StatusCode::NOT_FOUND,
            "only GET /metrics is served here\n".to_owned(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// Fetches `http://ADDR/metrics` (for `keyward bench`). `addr` is `host:port`, with or
/// without `http://` and `/metrics`.
pub async fn fetch(addr: &str) -> Result<String, String> {
    let host = addr
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .trim_end_matches('/');
    let failed = |e: &dyn std::fmt::Display| format!("metrics at {host}: {e}");
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| failed(&e))?;
    let exchange = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Ends once the answer is read and `sender` dropped.
        tokio::spawn(connection);
        let request = Request::get("/metrics")
            .header(http::header::HOST, host)
            .header(http::header::CONNECTION, "close")
            .body(http_body_util::Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, body))
    };
    let (status, body) = tokio::time::timeout(READ_TIMEOUT, exchange)
        .await
        .map_err(|_| failed(&"no answer"))?
        .map_err(|e| failed(&e))?;
    if status != StatusCode::OK {
        return Err(failed(&"unexpected answer"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The value of an unlabelled metric in a text exposition (for `keyward bench`).
pub fn value_of(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::{READ_TIMEOUT, fetch, serve_with};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const EXPOSITION: &str = "# HELP a_total x\na_total 12\n";
    const NOT_FOUND: &str = "only GET /metrics is served here\n";

    async fn listen(render: impl Fn() -> String + Send + Sync + 'static) -> String {
        listen_with(READ_TIMEOUT, render).await
    }

    async fn listen_with(
        read_timeout: Duration,
        render: impl Fn() -> String + Send + Sync + 'static,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve_with(listener, read_timeout, render));
        addr
    }

    /// Sends `request` as is and reads until the server closes.
    async fn exchange(addr: &str, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(2 * READ_TIMEOUT, stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(answer).unwrap()
    }

    fn head_and_body(answer: &str) -> (String, &str) {
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        (head.to_ascii_lowercase(), body)
    }

    #[tokio::test]
    async fn get_metrics_is_answered_with_the_exposition_and_closed() {
        let addr = listen(|| EXPOSITION.to_owned()).await;
        for target in [
            addr.clone(),
            format!("http://{addr}/metrics"),
            format!("{addr}/"),
        ] {
            assert_eq!(fetch(&target).await.unwrap(), EXPOSITION);
        }
        for version in ["1.1", "1.0"] {
            let request = format!("GET /metrics HTTP/{version}\r\nHost: x\r\n\r\n");
            let answer = exchange(&addr, request.as_bytes()).await;
            let (head, body) = head_and_body(&answer);
            assert!(
                head.starts_with(&format!("http/{version} 200 ok\r\n")),
                "{head}"
            );
            assert!(
                head.contains("\r\ncontent-type: text/plain; version=0.0.4"),
                "{head}"
            );
            assert!(head.contains(&format!("\r\ncontent-length: {}", EXPOSITION.len())));
            assert_eq!(body, EXPOSITION);
        }
        let answer = exchange(&addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            head_and_body(&answer).0.contains("\r\nconnection: close"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_not_found() {
        let addr = listen(|| EXPOSITION.to_owned()).await;
        for line in [
            "GET / HTTP/1.1",
            "GET /metricsx HTTP/1.1",
            "GET /metrics/ HTTP/1.1",
            "GET /metrics?x=1 HTTP/1.1",
            "GET http://x/metrics HTTP/1.1",
            "POST /metrics HTTP/1.1",
            "PUT /metrics HTTP/1.1",
            "DELETE /metrics HTTP/1.1",
        ] {
            let answer = exchange(&addr, format!("{line}\r\nHost: x\r\n\r\n").as_bytes()).await;
            let (head, body) = head_and_body(&answer);
            assert!(
                head.starts_with("http/1.1 404 not found\r\n"),
                "{line}: {head}"
            );
            assert!(
                head.contains("\r\ncontent-type: text/plain; version=0.0.4"),
                "{line}"
            );
            assert_eq!(body, NOT_FOUND, "{line}");
        }
        // HEAD is not GET; its answer has no body.
        let answer = exchange(&addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = head_and_body(&answer);
        assert!(head.starts_with("http/1.1 404 not found\r\n"), "{head}");
        assert_eq!(body, "");
    }

    #[tokio::test]
    async fn fetch_refuses_anything_but_200() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n")
                .await
                .unwrap();
        });
        assert_eq!(
            fetch(&addr).await.unwrap_err(),
            format!("metrics at {addr}: unexpected answer")
        );
    }

    #[tokio::test]
    async fn a_large_exposition_arrives_whole() {
        let big: String = (0..100_000).map(|i| format!("m_{i} {i}\n")).collect();
        let expected = big.clone();
        let addr = listen(move || big.clone()).await;
        assert_eq!(fetch(&addr).await.unwrap(), expected);
    }

    #[tokio::test]
    async fn a_request_head_beyond_the_limit_is_refused_unrendered() {
        let addr = listen(|| panic!("rendered for an oversized request")).await;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(super::MAX_REQUEST)
        );
        let answer = exchange(&addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    #[tokio::test]
    async fn a_request_head_that_never_completes_is_closed_unanswered() {
        let timeout = Duration::from_millis(200);
        let addr = listen_with(timeout, || EXPOSITION.to_owned()).await;
        let started = std::time::Instant::now();
        let answer = exchange(&addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        assert_eq!(answer, "");
        assert!(started.elapsed() >= timeout);
    }

    #[test]
    fn values_are_found_by_exact_name() {
        let text = "# HELP a_total x\na_total 12\na_total_more 3\nb 1.5\n";
        assert_eq!(super::value_of(text, "a_total"), Some(12.0));
        assert_eq!(super::value_of(text, "b"), Some(1.5));
        assert_eq!(super::value_of(text, "a"), None);
    }
}
