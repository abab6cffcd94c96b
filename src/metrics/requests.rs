//! Requests by RPC and gRPC code, and their latency, counted by a tower layer in front of
//! every service: one place, so no handler can forget it. The code is read from the response
//! headers, where tonic puts `grpc-status` for every error (a trailers-only response); a
//! response without it is OK.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

#[derive(Default)]
pub struct Latency {
    /// Requests at or under each bound of `BUCKETS` (not cumulative).
    pub buckets: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

#[derive(Default)]
pub struct Requests {
    /// (rpc, gRPC code name) → requests.
    pub by_code: Mutex<BTreeMap<(String, &'static str), u64>>,
    pub latency: Mutex<BTreeMap<String, Latency>>,
}

fn code_name(status: &[u8]) -> &'static str {
    match status {
        b"0" => "OK",
        b"1" => "CANCELLED",
        b"2" => "UNKNOWN",
        b"3" => "INVALID_ARGUMENT",
        b"4" => "DEADLINE_EXCEEDED",
        b"5" => "NOT_FOUND",
        b"6" => "ALREADY_EXISTS",
        b"7" => "PERMISSION_DENIED",
        b"8" => "RESOURCE_EXHAUSTED",
        b"9" => "FAILED_PRECONDITION",
        b"10" => "ABORTED",
        b"11" => "OUT_OF_RANGE",
        b"12" => "UNIMPLEMENTED",
        b"13" => "INTERNAL",
        b"14" => "UNAVAILABLE",
        b"15" => "DATA_LOSS",
        b"16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

impl Requests {
    fn record(&self, rpc: String, code: &'static str, seconds: f64) {
        if let Ok(mut by_code) = self.by_code.lock() {
            *by_code.entry((rpc.clone(), code)).or_default() += 1;
        }
        if let Ok(mut latency) = self.latency.lock() {
            let entry = latency.entry(rpc).or_default();
            if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
                entry.buckets[bucket] += 1;
            }
            entry.count += 1;
            entry.sum_seconds += seconds;
        }
    }
}

/// `/keyward.v1.KeyManagementService/GenerateDataKey` → `GenerateDataKey`.
fn rpc_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
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
        let rpc = rpc_name(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        let requests = Arc::clone(&self.requests);
        Box::pin(async move {
            let response = response.await;
            if let Ok(r) = &response {
                let code = r
                    .headers()
                    .get("grpc-status")
                    .map_or("OK", |status| code_name(status.as_bytes()));
                requests.record(rpc, code, started.elapsed().as_secs_f64());
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
        requests.record(
            rpc_name("/keyward.v1.KeyManagementService/Decrypt"),
            "OK",
            0.0007,
        );
        requests.record("Decrypt".into(), code_name(b"3"), 3.0);
        let by_code = requests.by_code.lock().unwrap();
        assert_eq!(by_code[&("Decrypt".to_string(), "OK")], 1);
        assert_eq!(by_code[&("Decrypt".to_string(), "INVALID_ARGUMENT")], 1);
        let latency = requests.latency.lock().unwrap();
        let decrypt = &latency["Decrypt"];
        assert_eq!(decrypt.count, 2);
        assert_eq!(decrypt.buckets[1], 1, "0.7 ms is in the 1 ms bucket");
        assert_eq!(decrypt.buckets[11], 1, "3 s is in the 5 s bucket");
    }
}
