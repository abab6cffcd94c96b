//! Delivers firings to the configured webhooks as JSON POSTs over HTTP/1.1.
//!
//! Each URL has its own bounded queue and worker, so a dead receiver (retrying, timing out)
//! delays only its own deliveries. [`Webhooks::enqueue`] never waits: when a queue is full the
//! firing is dropped for that URL and counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::AlarmsError;
use super::firing::Firing;

/// Firings waiting per URL; alarms are rare, so reaching this means the receiver is down.
pub(crate) const QUEUE_CAPACITY: usize = 1_024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where to POST, parsed once at configuration time.
#[derive(Debug)]
pub(crate) struct Target {
    /// For logs: without the query, which may carry a token.
    display: String,
    authority: String,
    host: String,
    port: u16,
    path_and_query: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, AlarmsError> {
        let invalid = |reason: &str| AlarmsError::Webhook {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(AlarmsError::HttpsWebhook {
                    url: url.to_owned(),
                });
            }
            _ => return Err(invalid("only http:// URLs are supported")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        // Credentials would end up in logs and in the Host header.
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(Self {
            display: format!("http://{authority}{}", uri.path()),
            authority: authority.as_str().to_owned(),
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct WebhookSettings {
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) queue_capacity: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    attempts: AtomicU64,
    /// Woken on every change, so tests can wait for a count instead of sleeping.
    changed: Notify,
}

impl Stats {
    pub(crate) fn counters(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    #[cfg(test)]
    pub(crate) async fn wait_until(&self, done: impl Fn(&Self) -> bool) {
        loop {
            // Created before the check, so a change in between still wakes it.
            let changed = self.changed.notified();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

/// The sending half, held by the engine.
pub(crate) struct Webhooks {
    queues: Vec<mpsc::Sender<Arc<Firing>>>,
    pub(crate) stats: Arc<Stats>,
}

impl Webhooks {
    pub(crate) fn enqueue(&self, firing: &Firing) {
        if self.queues.is_empty() {
            return;
        }
        let firing = Arc::new(firing.clone());
        for queue in &self.queues {
            if queue.try_send(Arc::clone(&firing)).is_err() {
                // Full, or the task is gone (never spawned, or ended): either way not sent.
                self.stats.bump(&self.stats.dropped);
            }
        }
    }
}

/// Delivers queued firings to the webhooks; spawn it (`tokio::spawn(task)`). It completes
/// once the [`Alarms`](super::Alarms) that queues to it is dropped and every queue is drained.
pub struct WebhookTask {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Future for WebhookTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for WebhookTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookTask")
    }
}

pub(crate) fn start(targets: Vec<Target>, settings: WebhookSettings) -> (Webhooks, WebhookTask) {
    let stats = Arc::new(Stats::default());
    let mut queues = Vec::with_capacity(targets.len());
    let mut workers = Vec::with_capacity(targets.len());
    for target in targets {
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        queues.push(sender);
        workers.push((target, receiver));
    }
    let task_stats = Arc::clone(&stats);
    let inner = Box::pin(async move {
        // Dropping the task (e.g. aborting it at shutdown) drops the set, which aborts them.
        let mut running = JoinSet::new();
        for (target, queue) in workers {
            running.spawn(worker(target, queue, settings, Arc::clone(&task_stats)));
        }
        while running.join_next().await.is_some() {}
    });
    (Webhooks { queues, stats }, WebhookTask { inner })
}

async fn worker(
    target: Target,
    mut queue: mpsc::Receiver<Arc<Firing>>,
    settings: WebhookSettings,
    stats: Arc<Stats>,
) {
    while let Some(firing) = queue.recv().await {
        if deliver(&target, &firing, settings, &stats).await {
            stats.bump(&stats.delivered);
        } else {
            stats.bump(&stats.failed);
        }
    }
}

/// Returns whether the receiver accepted the firing within the allowed attempts.
async fn deliver(
    target: &Target,
    firing: &Firing,
    settings: WebhookSettings,
    stats: &Stats,
) -> bool {
    let body = match serde_json::to_vec(firing) {
        Ok(body) => Bytes::from(body),
        Err(error) => {
            tracing::warn!(url = %target.display, alarm = %firing.alarm, %error, "webhook body could not be encoded");
            return false;
        }
    };
    let mut delay = settings.backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        stats.bump(&stats.attempts);
        let (reason, retryable) =
            match tokio::time::timeout(settings.timeout, post(target, body.clone())).await {
                Ok(Ok(status)) if status.is_success() => return true,
                // A 4xx will not change on retry; a redirect is not followed.
                Ok(Ok(status)) => (format!("HTTP {status}"), status.is_server_error()),
                Ok(Err(error)) => (error.to_string(), true),
                Err(_) => (format!("timed out after {:?}", settings.timeout), true),
            };
        if !retryable || attempt >= settings.attempts {
            tracing::warn!(
                url = %target.display,
                alarm = %firing.alarm,
                attempts = attempt,
                %reason,
                "webhook delivery failed"
            );
            return false;
        }
        tracing::debug!(url = %target.display, alarm = %firing.alarm, attempt, %reason, "webhook attempt failed; retrying");
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
}

/// One POST on a fresh connection; returns the response status.
async fn post(target: &Target, body: Bytes) -> Result<StatusCode, BoxError> {
    let stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let request = Request::post(target.path_and_query.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "keyward-alarms")
        .body(Full::new(body))?;
    let exchange = sender.send_request(request);
    tokio::pin!(connection, exchange);
    // The connection must be driven for the exchange to progress. It may also finish first
    // (the server closed after answering): the response, if any, is then already waiting.
    let response = tokio::select! {
        biased;
        response = &mut exchange => response?,
        closed = &mut connection => {
            closed?;
            exchange.await?
        }
    };
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::rules::FirstRead;
    use crate::alarms::{Alarms, AlarmsConfig, Observation, Outcome, ReaderHistory};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::time::{Instant, timeout};

    /// Generous: only reached when a test is about to fail anyway.
    const PATIENCE: Duration = Duration::from_secs(10);
    const BACKOFF: Duration = Duration::from_millis(10);

    #[derive(Debug)]
    struct Received {
        head: String,
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim())
            })
        }

        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// A minimal HTTP/1.1 receiver: answers the nth request with `statuses[n]` (the last one
    /// repeating) and reports each request before answering it.
    async fn receiver(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hook?token=t0ps3cret",
            listener.local_addr().unwrap()
        );
        let (report, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                let status = statuses[n.min(statuses.len() - 1)];
                if report.send(request).is_err() {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        (url, requests)
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Received> {
        let mut buffer = Vec::new();
        let mut chunk = [0; 4096];
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..read]);
        };
        let mut request = Received {
            head: String::from_utf8_lossy(&buffer[..head_end]).into_owned(),
            body: Vec::new(),
        };
        let length: usize = request.header("content-length")?.parse().ok()?;
        while buffer.len() < head_end + length {
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
        request.body = buffer[head_end..head_end + length].to_vec();
        Some(request)
    }

    fn settings(attempts: u32, timeout: Duration) -> WebhookSettings {
        WebhookSettings {
            timeout,
            attempts,
            backoff: BACKOFF,
            queue_capacity: QUEUE_CAPACITY,
        }
    }

    fn firing(alarm: &str) -> Firing {
        Firing {
            alarm: alarm.to_owned(),
            kind: "first_read",
            time: "1970-01-01T00:00:00.000Z".to_owned(),
            principal: Some("alice".to_owned()),
            resource: Some("db-password".to_owned()),
            count: None,
            window_secs: None,
            message: "principal alice read secret db-password for the first time".to_owned(),
        }
    }

    /// Starts the sender for one URL and queues one firing to it.
    fn send_one(url: &str, settings: WebhookSettings) -> Arc<Stats> {
        let (webhooks, task) = start(vec![Target::parse(url).unwrap()], settings);
        tokio::spawn(task);
        webhooks.enqueue(&firing("a"));
        Arc::clone(&webhooks.stats)
    }

    async fn wait(stats: &Stats, done: impl Fn(&Stats) -> bool) {
        timeout(PATIENCE, stats.wait_until(done))
            .await
            .expect("webhook counters never reached the expected state");
    }

    fn attempts(stats: &Stats) -> u64 {
        stats.attempts.load(Ordering::Relaxed)
    }

    struct AlwaysFirst;

    impl ReaderHistory for AlwaysFirst {
        fn first_read<'a>(&'a self, _: &'a str, _: &'a str) -> FirstRead<'a> {
            Box::pin(std::future::ready(true))
        }
    }

    fn read(principal: &str) -> Observation<'_> {
        Observation {
            time_ms: 1_000,
            principal,
            action: "secretsmanager:GetSecretValue",
            resource: "db-password",
            outcome: Outcome::Success,
            error: None,
            key_pending_deletion: false,
        }
    }

    #[tokio::test]
    async fn each_firing_is_posted_once_to_each_url_as_json() {
        let (first_url, mut first) = receiver(vec![200]).await;
        let (second_url, mut second) = receiver(vec![204]).await;
        let config = AlarmsConfig {
            webhooks: vec![first_url, second_url],
            webhook_backoff: BACKOFF,
            rules: vec![
                serde_json::from_value(
                    serde_json::json!({ "name": "new-reader", "kind": "first_read" }),
                )
                .unwrap(),
            ],
            ..AlarmsConfig::default()
        };
        let (alarms, task) = Alarms::new(config, Arc::new(AlwaysFirst)).unwrap();
        let task = tokio::spawn(task);

        let principals = ["alice", "bob", "carol"];
        for principal in principals {
            assert_eq!(alarms.observe(&read(principal)).await.len(), 1);
        }
        let stats = alarms.webhook_stats();
        wait(&stats, |s| s.counters() == (6, 0)).await;
        assert_eq!(attempts(&stats), 6);

        for requests in [&mut first, &mut second] {
            for principal in principals {
                let request = requests.try_recv().unwrap();
                assert!(
                    request
                        .head
                        .starts_with("POST /hook?token=t0ps3cret HTTP/1.1\r\n")
                );
                assert_eq!(request.header("content-type"), Some("application/json"));
                let body = request.json();
                assert_eq!(body["alarm"], "new-reader");
                assert_eq!(body["kind"], "first_read");
                assert_eq!(body["principal"], principal);
                assert_eq!(body["resource"], "db-password");
                assert_eq!(body["time"], "1970-01-01T00:00:01.000Z");
                assert!(body["count"].is_null());
            }
            assert!(requests.try_recv().is_err(), "one POST per firing");
        }
        assert_eq!(alarms.webhook_counters(), (6, 0));
        assert_eq!(alarms.webhook_dropped(), 0);

        // Dropping the engine closes the queues; the task drains them and ends.
        drop(alarms);
        timeout(PATIENCE, task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_success() {
        let (url, mut requests) = receiver(vec![500, 500, 200]).await;
        let stats = send_one(&url, settings(4, PATIENCE));
        wait(&stats, |s| s.counters() == (1, 0)).await;
        assert_eq!(attempts(&stats), 3);
        for _ in 0..3 {
            assert_eq!(requests.try_recv().unwrap().json()["alarm"], "a");
        }
        assert!(requests.try_recv().is_err());
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (url, mut requests) = receiver(vec![400, 200]).await;
        let stats = send_one(&url, settings(4, PATIENCE));
        wait(&stats, |s| s.counters() == (0, 1)).await;
        assert_eq!(attempts(&stats), 1);
        assert!(requests.try_recv().is_ok());
        assert!(requests.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_unreachable_url_gets_bounded_attempts_then_counts_a_failure() {
        // Bound but not listening: connections are refused, and no other test can take the
        // port while it is held.
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        let started = Instant::now();
        let stats = send_one(&url, settings(3, PATIENCE));
        wait(&stats, |s| s.counters() == (0, 1)).await;
        assert_eq!(attempts(&stats), 3);
        // Two backoffs: 10 ms, then 20 ms.
        assert!(started.elapsed() >= BACKOFF * 3);
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out_each_attempt() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (accepted, mut connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Held open, never answered.
                if accepted.send(stream).is_err() {
                    return;
                }
            }
        });
        let stats = send_one(&url, settings(2, Duration::from_millis(100)));
        wait(&stats, |s| s.counters() == (0, 1)).await;
        assert_eq!(attempts(&stats), 2);
        assert!(connections.try_recv().is_ok());
        assert!(connections.try_recv().is_ok());
        assert!(connections.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let target = Target::parse("http://127.0.0.1:9/hook").unwrap();
        let settings = WebhookSettings {
            queue_capacity: 2,
            ..settings(1, PATIENCE)
        };
        // The task is never spawned, so nothing drains the queue.
        let (webhooks, _task) = start(vec![target], settings);
        for n in 0..5 {
            webhooks.enqueue(&firing(&format!("a{n}")));
        }
        assert_eq!(webhooks.stats.dropped(), 3);
        assert_eq!(webhooks.stats.counters(), (0, 0));
    }

    #[test]
    fn targets_keep_what_the_request_needs_and_log_no_query() {
        let target = Target::parse("http://hooks.internal:9000/a/b?token=secret").unwrap();
        assert_eq!(target.host, "hooks.internal");
        assert_eq!(target.port, 9000);
        assert_eq!(target.authority, "hooks.internal:9000");
        assert_eq!(target.path_and_query, "/a/b?token=secret");
        assert_eq!(target.display, "http://hooks.internal:9000/a/b");

        let target = Target::parse("http://[::1]/").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 80));
        let target = Target::parse("http://localhost").unwrap();
        assert_eq!(target.path_and_query, "/");
    }
}
