//! The AWS JSON 1.1 listener: `POST /` with `X-Amz-Target`, a body no larger than
//! [`MAX_BODY`], SigV4 checked, then the operation's gRPC handler. HTTP/1.1 (what the AWS SDKs
//! and CLI speak to a custom endpoint).

use super::errors::{self, response_parts};
use super::operations::{self, Handlers};
use super::signing::AccessKeys;
use super::wipe::{Document, SecretBuf};
use crate::access::{Caller, Gate};
use crate::api::detach::InFlight;
use crate::api::status::{exception, status as named};
use crate::audit::Outcome;
use crate::config::AwsEndpointConfig;
use crate::metrics::requests::Requests;
use crate::outcome::Exception;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tonic::{Code, Status};
use zeroize::Zeroizing;

/// Larger bodies are refused before they are parsed. The largest legitimate request is a
/// 64 KiB binary secret in base64 with its fields.
pub const MAX_BODY: usize = 256 * 1024;

pub struct FrontDoor {
    pub handlers: Handlers,
    pub gate: Arc<Gate>,
    pub keys: AccessKeys,
    pub requests: Arc<Requests>,
    /// Each request runs in a task of its own, counted here (see `api::detach`).
    in_flight: Arc<InFlight>,
    limits: AwsEndpointConfig,
}

impl FrontDoor {
    pub fn new(
        handlers: Handlers,
        gate: Arc<Gate>,
        keys: AccessKeys,
        requests: Arc<Requests>,
        in_flight: Arc<InFlight>,
        limits: AwsEndpointConfig,
    ) -> Self {
        Self {
            handlers,
            gate,
            keys,
            requests,
            in_flight,
            limits,
        }
    }
}

/// Serves until the task is aborted. At most `max_connections` connections are open at once:
/// the next is accepted when one closes. A request's headers must arrive within the read
/// timeout of its first byte, and its body within the read timeout after them.
pub async fn serve(listener: TcpListener, door: Arc<FrontDoor>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(door.limits.max_connections));
    let read_timeout = door.limits.read_timeout;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "AWS endpoint: accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let door = Arc::clone(&door);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let door = Arc::clone(&door);
                // A closed connection drops this future, not the request's work: it finishes
                // and is audited in its own task.
                let in_flight = Arc::clone(&door.in_flight);
                let answer = in_flight.detach(async move { door.handle(request, peer).await });
                async move {
                    Ok::<_, std::convert::Infallible>(answer.await.unwrap_or_else(|| {
                        response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            SecretBuf::from(format!(
                                r#"{{"__type":"{}","message":"internal error"}}"#,
                                Exception::InternalFailure
                            )),
                        )
                    }))
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(read_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "AWS endpoint: connection ended");
            }
        });
    }
}

type HttpResponse = http::Response<Full<SecretBuf>>;

fn response(status: StatusCode, body: SecretBuf) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Full::new(body))
        .unwrap_or_else(|_| http::Response::new(Full::new(SecretBuf::default())))
}

impl FrontDoor {
    async fn handle(&self, request: http::Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (name, reply) = match operations::find(&target) {
            Some(op) if parts.method == Method::POST => {
                let reply = self.run(op, &parts, body, peer).await;
                (op.name, reply)
            }
            Some(_) => (
                "-",
                Err(named(
                    Code::InvalidArgument,
                    Exception::Validation,
                    "use POST",
                )),
            ),
            None => ("-", Err(errors::unknown_operation(&target))),
        };
        let code = match &reply {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.requests
            .record(name, code, started.elapsed().as_secs_f64());
        let (http_status, body) = match reply {
            Ok(json) => (StatusCode::OK, SecretBuf::json(&json)),
            Err(status) => {
                let (http_status, body) = response_parts(&status);
                (http_status, SecretBuf::from(body))
            }
        };
        response(http_status, body)
    }

    async fn run(
        &self,
        op: operations::Operation,
        parts: &http::request::Parts,
        body: Incoming,
        peer: SocketAddr,
    ) -> Result<Document, Status> {
        let source = peer.to_string();
        // Ours to zeroize; hyper's read buffer it came from is not.
        let read_timeout = self.limits.read_timeout;
        let collected =
            tokio::time::timeout(read_timeout, Limited::new(body, MAX_BODY).collect()).await;
        let body = match collected {
            Ok(Ok(collected)) => Zeroizing::new(Vec::from(collected.to_bytes())),
            Err(_) => {
                return Err(named(
                    Code::DeadlineExceeded,
                    Exception::RequestTimeout,
                    format!("the request body did not arrive within {read_timeout:?}"),
                ));
            }
            Ok(Err(_)) => {
                return Err(named(
                    Code::InvalidArgument,
                    Exception::Validation,
                    format!("the request body is larger than {MAX_BODY} bytes"),
                ));
            }
        };
        let service = match op.service {
            super::shapes::Service::SecretsManager => "secretsmanager",
            super::shapes::Service::Kms => "kms",
        };
        let principal = self.keys.verify(parts, &body, service);
        let caller = Caller {
            principal,
            source,
            api: "aws-json",
        };
        if let Err(failure) = &caller.principal {
            // Refused before anything is parsed; audited like every request.
            let status = Status::from(crate::access::GateError::Unauthenticated(failure.clone()));
            return Err(self.refused(&caller, op, status).await);
        }
        let json = match serde_json::from_slice(&body).map(Document::new) {
            Ok(json) if json.is_object() => json,
            Ok(_) => {
                let status = errors::serialization("expected a JSON object");
                return Err(self.refused(&caller, op, status).await);
            }
            Err(e) => {
                let status = errors::serialization(&e.to_string());
                return Err(self.refused(&caller, op, status).await);
            }
        };
        match self.handlers.run(op, json, caller.clone()).await {
            // Input that never became a request message: no handler saw it, so audit it here.
            Err(status) if exception(&status) == Exception::Serialization => {
                Err(self.refused(&caller, op, status).await)
            }
            other => other,
        }
    }

    /// Audits a request refused before its handler; the audit failing wins.
    async fn refused(&self, caller: &Caller, op: operations::Operation, status: Status) -> Status {
        let outcome = if caller.principal.is_err() {
            Outcome::Denied
        } else {
            Outcome::Failed
        };
        let exception = exception(&status);
        // A parser's message can quote the offending input, which may be a secret value in
        // the wrong member: the client sees it, the audit trail does not.
        let reason = if exception == Exception::Serialization {
            "the request body is not the operation's input"
        } else {
            status.message()
        };
        let recorded = self
            .gate
            .refuse(caller, op.action, exception, reason, outcome)
            .await;
        match recorded {
            Ok(()) => status,
            Err(e) => Status::from(e),
        }
    }
}
