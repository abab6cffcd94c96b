//! Roots of trust: the only code that touches hardware crates.
//!
//! A [`RootOfTrust`] holds master key versions that never leave it and performs the few
//! operations the service needs: create/destroy a key, seal/unseal bytes under a key with AAD,
//! and random bytes. Its methods block; [`Hardware`] is the single place that moves them off
//! the async executor and bounds how many run at once.

pub mod pkcs11;
pub mod tpm;

#[cfg(test)]
pub mod memory;

use crate::crypto::{SecretBytes, envelope::NONCE_LEN};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Opaque, non-secret name of a master key version inside the root of trust (for PKCS#11 the
/// object's CKA_ID in hex). Stored in the key record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyRef(pub String);

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The device, token or session is gone or refuses us (PIN, removal, I/O). Retryable: the
    /// backend reconnects on the next call.
    #[error("root of trust unavailable: {0}")]
    Unavailable(String),
    /// Authentication of sealed bytes failed: tampering, wrong AAD or wrong key.
    #[error("invalid ciphertext")]
    InvalidCiphertext,
    /// The key record names an object the root of trust does not hold.
    #[error("key material {0:?} not found in the root of trust")]
    KeyMissing(KeyRef),
    /// The key is bound to platform measurements (PCRs) that have changed since it was made.
    #[error("the platform state changed: {0}")]
    PlatformStateChanged(String),
    /// The request asks for something this root of trust does not offer.
    #[error("{0}")]
    Unsupported(String),
    #[error("root of trust error: {0}")]
    Internal(String),
}

/// How a key is protected where the root of trust offers a choice (a TPM's key modes and PCR
/// binding). Kept in the key record, so every version of a key is made the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProtection {
    /// "resident" or "sealed-kek" on a TPM; empty elsewhere.
    #[serde(default)]
    pub mode: String,
    /// PCR indices whose values at creation the key is bound to; empty: not bound.
    #[serde(default)]
    pub pcrs: Vec<u8>,
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;

/// A hardware root of trust. Implementations block and are called only through [`Hardware`].
pub trait RootOfTrust: Send + Sync + 'static {
    /// "PKCS11", "TPM", ...: reported as a key's origin.
    fn kind(&self) -> &'static str;
    /// A stable name of this device's key hierarchy (a TPM's SRK Name), recorded at the first
    /// start so a cleared or swapped device is noticed. None when there is nothing to check.
    fn identity(&self) -> Option<Vec<u8>> {
        None
    }
    /// The protection a new key gets when `requested` is asked for (defaults filled in), or
    /// `Unsupported`. Roots of trust without choices accept only the default.
    fn resolve_protection(&self, requested: &KeyProtection) -> Result<KeyProtection> {
        if *requested == KeyProtection::default() {
            Ok(KeyProtection::default())
        } else {
            Err(BackendError::Unsupported(format!(
                "key modes and PCR binding need a TPM root of trust; this one is {}",
                self.kind()
            )))
        }
    }
    /// Creates a new non-extractable master key version; `label` is for operators.
    fn create_key(&self, label: &str, protection: &KeyProtection) -> Result<KeyRef>;
    /// Destroys a master key version. Destroying a key that is already gone succeeds.
    fn destroy_key(&self, key: &KeyRef) -> Result<()>;
    /// AES-256-GCM inside the root of trust: returns ciphertext followed by the 16-byte tag.
    fn seal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>>;
    fn unseal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes>;
    /// Creates a non-extractable HMAC-SHA256 key (the audit log's checkpoint key).
    fn create_mac_key(&self, label: &str) -> Result<KeyRef>;
    /// HMAC-SHA256 of `message` under a key from `create_mac_key`, computed inside the device.
    fn mac(&self, key: &KeyRef, message: &[u8]) -> Result<[u8; MAC_LEN]>;
    /// Random bytes from the device's generator.
    fn random(&self, len: usize) -> Result<SecretBytes>;
    /// A cheap call that fails when the device or token is not usable.
    fn check(&self) -> Result<()>;
}

/// The async boundary in front of a root of trust: every hardware call goes through
/// [`Hardware::run`], which hands it to one of `concurrency` dedicated threads (as many as the
/// session pool) and awaits the answer. Dedicated threads, not tokio's blocking pool: the pool
/// has no bound that matches the sessions, and its hand-off costs more per call.
#[derive(Clone)]
pub struct Hardware {
    root: Arc<dyn RootOfTrust>,
    jobs: std::sync::mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

/// Root-of-trust calls made for requests (health probes not included), for the metrics.
#[derive(Default)]
pub struct Counters {
    pub calls: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
    /// Time from hand-off to answer, summed, in microseconds.
    pub busy_micros: std::sync::atomic::AtomicU64,
    /// Calls handed off and not yet answered (queued or running).
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Hardware threads, one per session: calls beyond this many queue.
    pub sessions: u64,
}

type Job = Box<dyn FnOnce(&dyn RootOfTrust) + Send>;

impl Hardware {
    pub fn new(root: Arc<dyn RootOfTrust>, concurrency: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..concurrency.max(1) {
            let queue = Arc::clone(&queue);
            let root = Arc::clone(&root);
            let spawned = std::thread::Builder::new()
                .name(format!("keyward-hw-{n}"))
                .spawn(move || {
                    loop {
                        // The guard is dropped before the call: other threads take jobs meanwhile.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking call must not take the thread (and a session's worth of
                        // capacity) with it; its caller sees the dropped answer as an error.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            job(root.as_ref())
                        }));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hardware thread");
            }
        }
        Self {
            root,
            jobs,
            counters: Arc::new(Counters {
                sessions: concurrency.max(1) as u64,
                ..Counters::default()
            }),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn kind(&self) -> &'static str {
        self.root.kind()
    }

    /// Runs `call` on a hardware thread, counted in the metrics.
    pub async fn run<T, F>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RootOfTrust) -> Result<T> + Send + 'static,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        self.counters.in_flight.fetch_add(1, Relaxed);
        let outcome = self.probe(call).await;
        self.counters.in_flight.fetch_sub(1, Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters.calls.fetch_add(1, Relaxed);
        self.counters.busy_micros.fetch_add(micros, Relaxed);
        if outcome.is_err() {
            self.counters.errors.fetch_add(1, Relaxed);
        }
        outcome
    }

    /// Like `run`, not counted: for health probes, which are not requests.
    pub async fn probe<T, F>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RootOfTrust) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |root| {
            let _ = answer.send(call(root));
        });
        self.jobs
            .send(job)
            .map_err(|_| BackendError::Unavailable("hardware threads stopped".into()))?;
        answered.await.map_err(|_| {
            BackendError::Internal("a hardware call failed without an answer".into())
        })?
    }
}
