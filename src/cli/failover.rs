//! The client's connection over several server addresses (`--endpoint a,b`): one channel per
//! address, connected on first use, and the rule for moving a request to the next address.
//!
//! A request moves on when no connection could be made to its address (refused, TLS
//! handshake, [`CONNECT_TIMEOUT`]: nothing was sent). After something was sent, only a request
//! that is safe to send twice moves on (when the server answers UNAVAILABLE or the transport
//! fails): reads, the KMS crypto operations, and the writes that carry a client request token.
//! The rule reads only the request path; this module never looks into a request's body, which
//! it holds only to send it again. The address that answered is kept for the next call.
//!
//! It must stay a transport detail: the command code sees a `Channel`-like service and nothing
//! else, and a note on stderr (once per address left) is all the user sees of it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long one address may take to connect (TCP, TLS and HTTP/2 handshakes) before the next
/// is tried, when there is a next one.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// With several addresses, how long a ping on an open connection may go unanswered before the
/// connection counts as broken (a loaded server still answers pings within milliseconds).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Paths of the RPCs that may be sent again to another server after one answered UNAVAILABLE
/// or the connection broke mid-call. Reads and the KMS crypto operations change nothing; the
/// writes listed carry a client request token, so a repeat is recognised as the same write
/// (the CLI always fills the token). Any other RPC is sent to a second address only when
/// nothing reached the first. An RPC missing here is the safe mistake: it is not repeated.
const REPEATABLE: &[&str] = &[
    "/keyward.v1.KeyManagementService/DescribeKey",
    "/keyward.v1.KeyManagementService/ListKeys",
    "/keyward.v1.KeyManagementService/ListKeyRotations",
    "/keyward.v1.KeyManagementService/GetKeyRotationStatus",
    "/keyward.v1.KeyManagementService/ListAliases",
    "/keyward.v1.KeyManagementService/GetKeyPolicy",
    "/keyward.v1.KeyManagementService/ListKeyPolicies",
    "/keyward.v1.KeyManagementService/ListResourceTags",
    "/keyward.v1.KeyManagementService/GenerateDataKey",
    "/keyward.v1.KeyManagementService/GenerateDataKeyWithoutPlaintext",
    "/keyward.v1.KeyManagementService/Encrypt",
    "/keyward.v1.KeyManagementService/Decrypt",
    "/keyward.v1.KeyManagementService/ReEncrypt",
    "/keyward.v1.KeyManagementService/GenerateRandom",
    "/keyward.v1.SecretsManagerService/GetSecretValue",
    "/keyward.v1.SecretsManagerService/BatchGetSecretValue",
    "/keyward.v1.SecretsManagerService/DescribeSecret",
    "/keyward.v1.SecretsManagerService/ListSecrets",
    "/keyward.v1.SecretsManagerService/ListSecretVersionIds",
    "/keyward.v1.SecretsManagerService/GetRandomPassword",
    "/keyward.v1.SecretsManagerService/GetResourcePolicy",
    "/keyward.v1.SecretsManagerService/ValidateResourcePolicy",
    // Writes with a client request token.
    "/keyward.v1.SecretsManagerService/CreateSecret",
    "/keyward.v1.SecretsManagerService/PutSecretValue",
    "/keyward.v1.SecretsManagerService/UpdateSecret",
    "/keyward.v1.SecretsManagerService/RotateSecret",
    "/keyward.v1.AuditService/GetAuditHead",
    "/keyward.v1.AuditService/VerifyAuditCheckpoints",
    // `keyward bench --ceiling` measures the empty RPC with it.
    "/grpc.health.v1.Health/Check",
];

/// Whether the RPC at `path` may be sent again after the server may have seen it.
pub fn repeatable(path: &str) -> bool {
    REPEATABLE.contains(&path)
}

/// The addresses of one command line, from which connections are made.
pub struct Targets {
    addresses: Vec<(String, Endpoint)>,
    notes: Arc<Notes>,
}

/// Which addresses a note was printed for: one line per address left behind, however many
/// connections of one command line leave it.
struct Notes(Vec<AtomicBool>);

impl Targets {
    /// `addresses`: each as the user wrote it (for messages) and its endpoint, TLS included.
    /// With several, each gets [`CONNECT_TIMEOUT`]; one alone connects as it always did.
    pub fn new(addresses: Vec<(String, Endpoint)>) -> Self {
        let several = addresses.len() > 1;
        let addresses: Vec<_> = addresses
            .into_iter()
            .map(|(label, endpoint)| {
                let endpoint = if several {
                    // A server that accepts but never answers (stopped, wedged) is found by
                    // its unanswered pings: the plaintext HTTP/2 handshake does not wait for it.
                    endpoint
                        .connect_timeout(CONNECT_TIMEOUT)
                        .http2_keep_alive_interval(CONNECT_TIMEOUT)
                        .keep_alive_timeout(PING_TIMEOUT)
                } else {
                    endpoint
                };
                (label, endpoint)
            })
            .collect();
        let notes = Arc::new(Notes(
            addresses.iter().map(|_| AtomicBool::new(false)).collect(),
        ));
        Self { addresses, notes }
    }

    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// A connection that tries address `first % len` first, then the ones after it.
    pub fn connection(&self, first: usize) -> Failover {
        let several = self.addresses.len() > 1;
        Failover {
            shared: Arc::new(Shared {
                addresses: self
                    .addresses
                    .iter()
                    .map(|(label, endpoint)| Address {
                        label: label.clone(),
                        endpoint: endpoint.clone(),
                        channel: tokio::sync::OnceCell::new(),
                    })
                    .collect(),
                current: AtomicUsize::new(first % self.addresses.len().max(1)),
                connect_timeout: several.then_some(CONNECT_TIMEOUT),
                notes: Arc::clone(&self.notes),
            }),
        }
    }
}

/// A `tower::Service` over the channels to every address; clones share them and the
/// remembered address.
#[derive(Clone)]
pub struct Failover {
    shared: Arc<Shared>,
}

struct Shared {
    addresses: Vec<Address>,
    /// The address that answered last: the first one tried.
    current: AtomicUsize,
    connect_timeout: Option<Duration>,
    notes: Arc<Notes>,
}

struct Address {
    label: String,
    endpoint: Endpoint,
    /// Empty until a connection was made; a failed attempt leaves it empty for the next call.
    channel: tokio::sync::OnceCell<Channel>,
}

/// Why an address was left.
struct Failure {
    at: usize,
    /// Short, for the note: "connection refused".
    reason: String,
    /// Every cause, for the error when no address is left.
    detail: String,
}

/// An attempt to connect that took longer than [`CONNECT_TIMEOUT`].
#[derive(Debug)]
struct TimedOut(Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no connection within {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

impl Failover {
    /// Connects to the first address that accepts, from the remembered one on: the CLI's
    /// "cannot connect" error comes before any request is built.
    pub async fn ready(&self) -> Result<(), String> {
        let shared = &self.shared;
        let start = shared.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for at in shared.order(start) {
            match shared.channel(at).await {
                Ok(_) => {
                    shared.settle(start, at, &failures);
                    return Ok(());
                }
                Err(e) => failures.push(Failure::of(at, e.as_ref())),
            }
        }
        Err(shared.none_left(&failures))
    }

    /// The address the next call goes to first, as the user wrote it.
    pub fn address(&self) -> &str {
        let shared = &self.shared;
        &shared.addresses[shared.current.load(Ordering::Relaxed)].label
    }
}

impl Shared {
    /// Every address once, from `start` on.
    fn order(&self, start: usize) -> impl Iterator<Item = usize> + use<> {
        let n = self.addresses.len();
        (0..n).map(move |k| (start + k) % n)
    }

    async fn channel(&self, at: usize) -> Result<Channel, BoxError> {
        let address = &self.addresses[at];
        let channel = address
            .channel
            .get_or_try_init(|| async {
                match self.connect_timeout {
                    Some(limit) => tokio::time::timeout(limit, address.endpoint.connect())
                        .await
                        .map_err(|_| BoxError::from(TimedOut(limit)))?
                        .map_err(BoxError::from),
                    None => address.endpoint.connect().await.map_err(BoxError::from),
                }
            })
            .await?;
        Ok(channel.clone())
    }

    async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        if self.addresses.len() == 1 {
            // Nowhere to move to: the request goes through untouched, not buffered.
            let mut channel = self.channel(0).await?;
            return call(&mut channel, request).await;
        }
        let repeatable = repeatable(request.uri().path());
        let (parts, body) = request.into_parts();
        // Unary requests only (all the CLI makes): the whole message, to send it again.
        let body: Bytes = body.collect().await?.to_bytes();
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut left = self.addresses.len();
        for at in self.order(start) {
            left -= 1;
            let mut channel = match self.channel(at).await {
                Ok(channel) => channel,
                Err(e) => {
                    failures.push(Failure::of(at, e.as_ref()));
                    continue;
                }
            };
            let attempt =
                http::Request::from_parts(parts.clone(), Body::new(Full::new(body.clone())));
            match call(&mut channel, attempt).await {
                Ok(response) if repeatable && left > 0 && unavailable(&response) => {
                    failures.push(Failure {
                        at,
                        reason: "answered UNAVAILABLE".into(),
                        detail: "the server answered UNAVAILABLE".into(),
                    });
                }
                Ok(response) => {
                    self.settle(start, at, &failures);
                    return Ok(response);
                }
                Err(e) if repeatable || nothing_sent(e.as_ref()) => {
                    failures.push(Failure::of(at, e.as_ref()));
                }
                Err(e) => return Err(e),
            }
        }
        Err(Box::new(tonic::Status::unavailable(
            self.none_left(&failures),
        )))
    }

    /// `at` answered: remember it, and say once which addresses were left for it and why.
    fn settle(&self, start: usize, at: usize, failures: &[Failure]) {
        if at != start {
            self.current.store(at, Ordering::Relaxed);
        }
        let using = &self.addresses[at].label;
        for failure in failures {
            if !self.notes.0[failure.at].swap(true, Ordering::Relaxed) {
                eprintln!(
                    "note: {} unavailable ({}); using {using}",
                    self.addresses[failure.at].label, failure.reason
                );
            }
        }
    }

    /// The error when every address failed, naming each.
    fn none_left(&self, failures: &[Failure]) -> String {
        let mut text = String::new();
        for (i, failure) in failures.iter().enumerate() {
            let label = &self.addresses[failure.at].label;
            let lead = if i == 0 {
                "cannot connect to"
            } else {
                "; nor to"
            };
            text.push_str(&format!("{lead} {label}: {}", failure.detail));
        }
        text
    }
}

impl Failure {
    fn of(at: usize, error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            at,
            reason: reason(error),
            detail: super::client::error_chain(error),
        }
    }
}

async fn call(
    channel: &mut Channel,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, BoxError> {
    std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
    Ok(channel.call(request).await?)
}

/// The response is a gRPC UNAVAILABLE before any message: in its headers (a trailers-only
/// response), or an HTTP status tonic reads as UNAVAILABLE (a proxy's 503, say).
fn unavailable(response: &http::Response<Body>) -> bool {
    match response.headers().get("grpc-status") {
        Some(code) => code.as_bytes() == b"14",
        None => matches!(response.status().as_u16(), 429 | 502 | 503 | 504),
    }
}

/// The error says no connection was made, so the request never left: tonic's connect error,
/// or our own timeout on the connection.
fn nothing_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    causes(error).any(|e| e.is::<tonic::ConnectError>() || e.is::<TimedOut>())
}

fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// A few words for the note: the kind of a refused or timed-out connection, else the
/// innermost cause (a TLS alert, say).
fn reason(error: &(dyn std::error::Error + 'static)) -> String {
    for cause in causes(error) {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                _ => {}
            }
        }
        if cause.is::<TimedOut>() {
            return "timed out".into();
        }
    }
    causes(error)
        .last()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

impl Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: each call waits for its own channel.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.send(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pb::{self, secrets_manager_service_client::SecretsManagerServiceClient};
    use crate::cli::client::{Connect, connect};
    use std::sync::Mutex;

    /// Every other RPC of the protos: sent to a second address only if nothing was sent.
    const NOT_REPEATABLE: &[&str] = &[
        "/keyward.v1.KeyManagementService/CreateKey",
        "/keyward.v1.KeyManagementService/EnableKey",
        "/keyward.v1.KeyManagementService/DisableKey",
        "/keyward.v1.KeyManagementService/ScheduleKeyDeletion",
        "/keyward.v1.KeyManagementService/CancelKeyDeletion",
        "/keyward.v1.KeyManagementService/RotateKeyOnDemand",
        "/keyward.v1.KeyManagementService/EnableKeyRotation",
        "/keyward.v1.KeyManagementService/DisableKeyRotation",
        "/keyward.v1.KeyManagementService/CreateAlias",
        "/keyward.v1.KeyManagementService/DeleteAlias",
        "/keyward.v1.KeyManagementService/UpdateAlias",
        "/keyward.v1.KeyManagementService/TagResource",
        "/keyward.v1.KeyManagementService/UntagResource",
        "/keyward.v1.KeyManagementService/UpdateKeyDescription",
        "/keyward.v1.KeyManagementService/PutKeyPolicy",
        // A repeated import finds its token used; parameters and deletions are rare enough to
        // be sent to one address.
        "/keyward.v1.KeyManagementService/GetParametersForImport",
        "/keyward.v1.KeyManagementService/ImportKeyMaterial",
        "/keyward.v1.KeyManagementService/DeleteImportedKeyMaterial",
        "/keyward.v1.SecretsManagerService/UpdateSecretVersionStage",
        "/keyward.v1.SecretsManagerService/DeleteSecret",
        "/keyward.v1.SecretsManagerService/RestoreSecret",
        "/keyward.v1.SecretsManagerService/TagResource",
        "/keyward.v1.SecretsManagerService/UntagResource",
        "/keyward.v1.SecretsManagerService/CancelRotateSecret",
        "/keyward.v1.SecretsManagerService/PutResourcePolicy",
        "/keyward.v1.SecretsManagerService/DeleteResourcePolicy",
        "/keyward.v1.SecretsManagerService/ReplicateSecretToRegions",
        "/keyward.v1.SecretsManagerService/RemoveRegionsFromReplication",
        "/keyward.v1.SecretsManagerService/StopReplicationToReplica",
        "/keyward.v1.SiteReplicationService/Apply",
    ];

    /// `/keyward.v1.Service/Method` for every rpc in the proto files.
    fn proto_paths() -> Vec<String> {
        let mut paths = Vec::new();
        for text in [
            include_str!("../../proto/keyward/v1/kms.proto"),
            include_str!("../../proto/keyward/v1/secrets.proto"),
            include_str!("../../proto/keyward/v1/audit.proto"),
            include_str!("../../proto/keyward/v1/replication.proto"),
        ] {
            let mut service = "";
            for line in text.lines().map(str::trim) {
                let name = |rest: &'static str| -> &'static str {
                    rest.split(|c: char| !c.is_alphanumeric()).next().unwrap()
                };
                if let Some(rest) = line.strip_prefix("service ") {
                    service = name(rest);
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    paths.push(format!("/keyward.v1.{service}/{}", name(rest)));
                }
            }
        }
        paths
    }

    #[test]
    fn every_rpc_is_classified_once_by_its_real_path() {
        let paths = proto_paths();
        assert!(paths.len() > 40, "{paths:?}");
        for path in &paths {
            let listed = [REPEATABLE, NOT_REPEATABLE]
                .iter()
                .filter(|list| list.contains(&path.as_str()))
                .count();
            assert_eq!(listed, 1, "{path} must be in exactly one list");
        }
        for path in REPEATABLE.iter().chain(NOT_REPEATABLE) {
            assert!(
                paths.iter().any(|p| p == path) || path.starts_with("/grpc.health.v1."),
                "{path} is no rpc of the protos"
            );
        }
    }

    #[test]
    fn reads_crypto_and_token_writes_repeat_the_rest_does_not() {
        for path in [
            "/keyward.v1.SecretsManagerService/GetSecretValue",
            "/keyward.v1.SecretsManagerService/ListSecrets",
            "/keyward.v1.SecretsManagerService/DescribeSecret",
            "/keyward.v1.KeyManagementService/Decrypt",
            "/keyward.v1.KeyManagementService/ReEncrypt",
            "/keyward.v1.KeyManagementService/GenerateDataKeyWithoutPlaintext",
            "/keyward.v1.KeyManagementService/GenerateRandom",
            "/keyward.v1.SecretsManagerService/CreateSecret",
            "/keyward.v1.SecretsManagerService/PutSecretValue",
            "/keyward.v1.SecretsManagerService/RotateSecret",
            "/keyward.v1.SecretsManagerService/UpdateSecret",
            "/keyward.v1.AuditService/VerifyAuditCheckpoints",
        ] {
            assert!(repeatable(path), "{path}");
        }
        for path in [
            "/keyward.v1.SecretsManagerService/DeleteSecret",
            "/keyward.v1.KeyManagementService/CreateKey",
            "/keyward.v1.KeyManagementService/ScheduleKeyDeletion",
            "/keyward.v1.SecretsManagerService/PutResourcePolicy",
            "/keyward.v1.SecretsManagerService/TagResource",
            // Only exact paths: no prefix, case or other package matches.
            "/keyward.v1.SecretsManagerService/GetSecretValueX",
            "/keyward.v1.secretsmanagerservice/getsecretvalue",
            "/other.v1.SecretsManagerService/GetSecretValue",
            "",
        ] {
            assert!(!repeatable(path), "{path}");
        }
    }

    #[test]
    fn connection_i_tries_address_i_mod_n_first() {
        let targets = Targets::new(
            ["http://a:1", "http://b:1", "http://c:1"]
                .iter()
                .map(|a| (a.to_string(), Endpoint::from_static(a)))
                .collect(),
        );
        let firsts: Vec<String> = (0..5)
            .map(|i| targets.connection(i).address().to_owned())
            .collect();
        assert_eq!(
            firsts,
            [
                "http://a:1",
                "http://b:1",
                "http://c:1",
                "http://a:1",
                "http://b:1"
            ]
        );
    }

    /// What a fake server received: the path, the message and the authorization header.
    type Seen = Arc<Mutex<Vec<(String, Bytes, Option<String>)>>>;

    /// A server that answers every request of the secrets service with `grpc_status` in a
    /// trailers-only response, and keeps what it received.
    #[derive(Clone)]
    struct Fake {
        grpc_status: &'static str,
        seen: Seen,
    }

    impl tonic::server::NamedService for Fake {
        const NAME: &'static str = "keyward.v1.SecretsManagerService";
    }

    impl Service<http::Request<Body>> for Fake {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                let path = request.uri().path().to_owned();
                let bearer = request
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = request.into_body().collect().await.unwrap().to_bytes();
                this.seen.lock().unwrap().push((path, body, bearer));
                Ok(http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", this.grpc_status)
                    .body(Body::empty())
                    .unwrap())
            })
        }
    }

    async fn fake(grpc_status: &'static str) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let seen = Seen::default();
        let service = Fake {
            grpc_status,
            seen: Arc::clone(&seen),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (address, seen)
    }

    /// A client over `a,b` with a bearer token, as the CLI makes it.
    async fn client(a: &str, b: &str) -> SecretsManagerServiceClient<super::super::client::Conn> {
        let mut to = Connect::plain(&format!("{a}, {b}"));
        to.token = Some("t0ken".into());
        SecretsManagerServiceClient::new(connect(&to).await.unwrap())
    }

    fn paths(seen: &Seen) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(p, ..)| p.clone())
            .collect()
    }

    const GET: &str = "/keyward.v1.SecretsManagerService/GetSecretValue";
    const DELETE: &str = "/keyward.v1.SecretsManagerService/DeleteSecret";

    #[tokio::test]
    async fn a_read_answered_unavailable_is_sent_again_to_the_next_address_which_stays() {
        let (a, at_a) = fake("14").await; // UNAVAILABLE
        let (b, at_b) = fake("5").await; // NOT_FOUND
        let mut sm = client(&a, &b).await;
        let request = pb::GetSecretValueRequest {
            secret_id: "db/password".into(),
            ..Default::default()
        };
        let status = sm.get_secret_value(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        assert_eq!(paths(&at_a), [GET]);
        assert_eq!(paths(&at_b), [GET]);
        let (sent_a, sent_b) = (
            at_a.lock().unwrap()[0].clone(),
            at_b.lock().unwrap()[0].clone(),
        );
        assert!(!sent_b.1.is_empty());
        assert_eq!(sent_a.1, sent_b.1, "the same message, sent again");
        assert_eq!(sent_b.2.as_deref(), Some("Bearer t0ken"), "with the token");

        // The next call goes straight to the address that answered.
        sm.get_secret_value(request).await.unwrap_err();
        assert_eq!(paths(&at_a), [GET]);
        assert_eq!(paths(&at_b), [GET, GET]);
    }

    #[tokio::test]
    async fn a_delete_answered_unavailable_is_not_sent_again() {
        let (a, at_a) = fake("14").await;
        let (b, at_b) = fake("5").await;
        let mut sm = client(&a, &b).await;
        let status = sm
            .delete_secret(pb::DeleteSecretRequest {
                secret_id: "db/password".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(paths(&at_a), [DELETE]);
        assert!(paths(&at_b).is_empty(), "{:?}", paths(&at_b));
    }

    #[tokio::test]
    async fn with_every_address_unavailable_the_last_answer_is_returned() {
        let (a, at_a) = fake("14").await;
        let (b, at_b) = fake("14").await;
        let mut sm = client(&a, &b).await;
        let status = sm
            .get_secret_value(pb::GetSecretValueRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!((paths(&at_a).len(), paths(&at_b).len()), (1, 1));
    }
}
