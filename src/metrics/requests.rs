//! Requests by RPC and gRPC code, and their latency, counted by a tower layer in front of
//! every service: one place, so no handler can forget it. The code is read from the response
//! headers, where tonic puts `grpc-status` for every error (a trailers-only response); a
//! response without it is OK.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// One RPC's counters: lock-free, so counting costs a few atomic adds per request.
#[derive(Default)]
pub struct RpcStats {
    /// Requests by gRPC code (0-16).
    pub codes: [AtomicU64; 17],
    /// Requests at or under each bound of `BUCKETS` (not cumulative).
    pub buckets: [AtomicU64; BUCKETS.len()],
    pub count: AtomicU64,
    pub sum_micros: AtomicU64,
}

/// Every RPC seen, by name; the read lock is all a request takes once its RPC is known.
#[derive(Default)]
pub struct Requests {
    pub by_rpc: RwLock<HashMap<String, Arc<RpcStats>>>,
}

pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The gRPC code of a `grpc-status` header value (UNKNOWN for anything else).
fn code(status: &[u8]) -> usize {
    std::str::from_utf8(status)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&c| c < CODE_NAMES.len())
        .unwrap_or(2)
}

impl Requests {
    /// The counters of the RPC at `path`, made on its first request.
    fn stats(&self, path: &str) -> Arc<RpcStats> {
        let rpc = rpc_name(path);
        if let Ok(known) = self.by_rpc.read()
            && let Some(stats) = known.get(rpc)
        {
            return Arc::clone(stats);
        }
        match self.by_rpc.write() {
            Ok(mut known) => Arc::clone(known.entry(rpc.to_owned()).or_default()),
            Err(_) => Arc::default(),
        }
    }
}

impl Requests {
    /// Counts a request another front door answered (the AWS endpoint), under its operation.
    pub fn record(&self, rpc: &str, code: tonic::Code, seconds: f64) {
        self.stats(rpc).record(code as usize, seconds);
    }
}

impl RpcStats {
    fn record(&self, code: usize, seconds: f64) {
        self.codes[code.min(CODE_NAMES.len() - 1)].fetch_add(1, Relaxed);
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Relaxed);
    }
}

/// `/keyward.v1.KeyManagementService/GenerateDataKey` → `GenerateDataKey`.
fn rpc_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Clone)]
pub struct CountLayer(pub Arc<Requests>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            requests: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
pub struct Count<S> {
    inner: S,
    requests: Arc<Requests>,
}

impl<S, Req, Res> tower::Service<http::Request<Req>> for Count<S>
where
    S: tower::Service<http::Request<Req>, Response = http::Response<Res>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Req>) -> Self::Future {
        let stats = self.requests.stats(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            if let Ok(r) = &response {
                let code = r
                    .headers()
                    .get("grpc-status")
                    .map_or(0, |status| code(status.as_bytes()));
                stats.record(code, started.elapsed().as_secs_f64());
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_rpc_and_code_with_buckets() {
        let requests = Requests::default();
        let decrypt = requests.stats("/keyward.v1.KeyManagementService/Decrypt");
        decrypt.record(code(b"0"), 0.0007);
        requests.stats("/x/Decrypt").record(code(b"3"), 3.0);
        requests.stats("/x/Decrypt").record(code(b"junk"), 0.1);
        assert_eq!(decrypt.codes[0].load(Relaxed), 1);
        assert_eq!(decrypt.codes[3].load(Relaxed), 1, "INVALID_ARGUMENT");
        assert_eq!(decrypt.codes[2].load(Relaxed), 1, "UNKNOWN");
        assert_eq!(decrypt.count.load(Relaxed), 3);
        assert_eq!(
            decrypt.buckets[1].load(Relaxed),
            1,
            "0.7 ms is in the 1 ms bucket"
        );
        assert_eq!(
            decrypt.buckets[11].load(Relaxed),
            1,
            "3 s is in the 5 s bucket"
        );
        assert_eq!(requests.by_rpc.read().unwrap().len(), 1);
    }
}
