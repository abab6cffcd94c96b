//! What a bench run reports: throughput, latency percentiles and errors by exception name.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Report {
    pub op: String,
    pub concurrency: usize,
    pub requests: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    /// Failed requests by AWS exception name (or gRPC code when none).
    pub errors: BTreeMap<String, u64>,
    /// Set with --ceiling: what this figure is compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Compared>,
    /// Set with --metrics: what the server did meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSide>,
}

/// From the server's metrics, over the measured part of the run.
#[derive(Debug, Serialize, PartialEq)]
pub struct ServerSide {
    pub root_of_trust_calls_per_request: f64,
    /// Of secret reads; None when the run read no secret.
    pub data_key_cache_hit_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Compared {
    pub name: String,
    pub ops_per_sec: f64,
    /// The operation's throughput divided by the ceiling.
    pub ratio: f64,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    /// Percentiles of `samples` (microseconds), which it sorts.
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1],
        }
    }
}

impl Report {
    pub fn new(
        op: &str,
        concurrency: usize,
        elapsed: Duration,
        mut samples: Vec<u64>,
        errors: BTreeMap<String, u64>,
    ) -> Self {
        let requests = samples.len() as u64 + errors.values().sum::<u64>();
        let seconds = elapsed.as_secs_f64();
        Self {
            op: op.to_owned(),
            concurrency,
            requests,
            seconds,
            ops_per_sec: if seconds > 0.0 {
                samples.len() as f64 / seconds
            } else {
                0.0
            },
            latency_us: Latency::of(&mut samples),
            errors,
            ceiling: None,
            server: None,
        }
    }

    pub fn compare(&mut self, name: &str, ceiling_ops: f64) {
        self.ceiling = Some(Compared {
            name: name.to_owned(),
            ops_per_sec: ceiling_ops,
            ratio: if ceiling_ops > 0.0 {
                self.ops_per_sec / ceiling_ops
            } else {
                0.0
            },
        });
    }

    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let mut out = format!(
            "{op}: {req} requests in {s:.2} s with {c} in flight\n  throughput  {ops:.0} ops/s\n  latency     p50 {p50} µs  p90 {p90} µs  p99 {p99} µs  p99.9 {p999} µs  max {max} µs\n",
            op = self.op,
            req = self.requests,
            s = self.seconds,
            c = self.concurrency,
            ops = self.ops_per_sec,
            p50 = l.p50,
            p90 = l.p90,
            p99 = l.p99,
            p999 = l.p999,
            max = l.max,
        );
        if self.errors.is_empty() {
            out.push_str("  errors      none\n");
        }
        for (name, count) in &self.errors {
            out.push_str(&format!("  errors      {count} {name}\n"));
        }
        if let Some(c) = &self.ceiling {
            out.push_str(&format!(
                "  ceiling     {:.0} ops/s ({}); ratio {:.2}\n",
                c.ops_per_sec, c.name, c.ratio
            ));
        }
        if let Some(server) = &self.server {
            out.push_str(&format!(
                "  server      {:.2} root-of-trust calls per request",
                server.root_of_trust_calls_per_request
            ));
            if let Some(rate) = server.data_key_cache_hit_rate {
                out.push_str(&format!("; data-key cache hit rate {:.1} %", rate * 100.0));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).rev().collect();
        let l = Latency::of(&mut samples);
        assert_eq!(
            l,
            Latency {
                p50: 500,
                p90: 900,
                p99: 990,
                p999: 999,
                max: 1000
            }
        );
        assert_eq!(
            Latency::of(&mut [7]),
            Latency {
                p50: 7,
                p90: 7,
                p99: 7,
                p999: 7,
                max: 7
            }
        );
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn requests_count_failures_too() {
        let errors = BTreeMap::from([("KeyUnavailableException".to_string(), 2)]);
        let report = Report::new(
            "decrypt",
            4,
            Duration::from_secs(2),
            vec![10, 20, 30, 40],
            errors,
        );
        assert_eq!(report.requests, 6);
        assert_eq!(report.ops_per_sec, 2.0);
        assert!(report.text().contains("2 KeyUnavailableException"));
    }
}
