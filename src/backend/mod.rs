//! Roots of trust: the only code that touches hardware crates.
//!
//! A [`RootOfTrust`] holds master key versions that never leave it and performs the few
//! operations the service needs: create/destroy a key, seal/unseal bytes under a key with AAD,
//! random bytes, and the import of key material a user wrapped for it (BYOK: an RSA wrapping
//! key pair made inside, the material unwrapped inside into a master key). Its methods block; [`Hardware`] is the single place that moves them off
//! the async executor and bounds how many run at once.

mod identity;
pub mod pkcs11;
pub mod tpm;

pub use identity::{IdentityChanged, check_identity};

#[cfg(test)]
pub mod memory;

pub use crate::crypto::master::{KeyProtection, KeyRef, OaepHash};
use crate::crypto::{SecretBytes, envelope::NONCE_LEN};
use std::sync::Arc;

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
    /// Imported key material decrypted, but is not what a master key can be (its length).
    #[error("incorrect key material: {0}")]
    IncorrectKeyMaterial(String),
    /// More calls are waiting for the hardware than it can answer in reasonable time: refused
    /// at once instead of queued without bound. Retryable.
    #[error("the root of trust is busy: {0} calls are already waiting")]
    Busy(usize),
    #[error("root of trust error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;

/// An RSA public key as a root of trust reports it: big-endian modulus and public exponent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    pub modulus: Vec<u8>,
    pub exponent: Vec<u8>,
}

/// What a key is for: roots of trust make master keys and MAC keys differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Master,
    Mac,
}

/// The escrow public key as a root of trust uses it: RSA, and its id (the first 16 bytes of
/// the SHA-256 of its SubjectPublicKeyInfo), which names it in a token (CKA_ID) and in every
/// blob wrapped to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowTarget {
    pub id: [u8; 16],
    pub public: RsaPublicKey,
}

/// A key's material wrapped to the escrow key: RSAES-OAEP with `hash` (MGF1 with the same
/// hash, empty label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    pub hash: OaepHash,
    pub bytes: Vec<u8>,
}

/// Why a TPM `resident` key is refused while escrow is on: the README says the same.
pub const RESIDENT_NOT_ESCROWABLE: &str = "TPM resident keys cannot be escrowed: their secret \
     never leaves the TPM that made them, so they die with it. With [escrow] configured, create \
     keys with key mode sealed-kek";

/// Wraps material this process holds to `escrow` in software (OAEP-SHA-256): for roots of
/// trust whose keys are in memory while used (a TPM's `sealed-kek`), or made outside to be
/// escrowed.
pub fn wrap_in_software(escrow: &EscrowTarget, material: &[u8]) -> Result<Wrapped> {
    crate::crypto::oaep::encrypt_sha256(&escrow.public.modulus, &escrow.public.exponent, material)
        .map(|bytes| Wrapped {
            hash: OaepHash::Sha256,
            bytes,
        })
        .map_err(|e| BackendError::Internal(format!("wrapping to the escrow key: {e}")))
}

fn escrow_unsupported(kind: &str) -> BackendError {
    BackendError::Unsupported(format!(
        "key escrow is not available on a {kind} root of trust"
    ))
}

/// Length of imported key material: an AES-256 key.
pub const IMPORTED_KEY_LEN: usize = 32;

fn import_unsupported(kind: &str) -> BackendError {
    BackendError::Unsupported(format!(
        "importing key material needs a PKCS#11 root of trust; this one is {kind}"
    ))
}

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
    /// Whether [`Self::create_wrapping_key`] and [`Self::import_key`] work here: asked before a
    /// key that waits for imported material is made.
    fn check_import(&self) -> Result<()> {
        Err(import_unsupported(self.kind()))
    }
    /// Generates an RSA key pair of `bits` for key import with OAEP and `hash`. The private key
    /// stays inside (sensitive, non-extractable, usable only for what [`Self::import_key`] with
    /// `hash` needs) until [`Self::destroy_wrapping_key`].
    fn create_wrapping_key(
        &self,
        label: &str,
        bits: u32,
        hash: OaepHash,
    ) -> Result<(KeyRef, RsaPublicKey)> {
        let _ = (label, bits, hash);
        Err(import_unsupported(self.kind()))
    }
    /// Destroys a wrapping key pair; one that is already gone succeeds.
    fn destroy_wrapping_key(&self, key: &KeyRef) -> Result<()> {
        let _ = key;
        Err(import_unsupported(self.kind()))
    }
    /// Decrypts `wrapped` (RSAES-OAEP with `hash`, empty label) with the wrapping key into a
    /// new non-extractable AES-256 master key, never handing the material out. Fails with
    /// `InvalidCiphertext` whatever the decryption found wrong, and with
    /// `IncorrectKeyMaterial` when it decrypted to anything but [`IMPORTED_KEY_LEN`] bytes.
    fn import_key(
        &self,
        wrapping: &KeyRef,
        hash: OaepHash,
        wrapped: &[u8],
        label: &str,
    ) -> Result<KeyRef> {
        let _ = (wrapping, hash, wrapped, label);
        Err(import_unsupported(self.kind()))
    }
    /// Makes a key as `create_key` (`KeyKind::Master`) or `create_mac_key` would, able to
    /// leave the root of trust only wrapped to `escrow`, and returns it wrapped so. Fails,
    /// leaving nothing made, where that cannot be done (a TPM `resident` key; a token that does
    /// not hold the escrow key as a trusted key).
    fn create_escrowed(
        &self,
        kind: KeyKind,
        label: &str,
        protection: &KeyProtection,
        escrow: &EscrowTarget,
    ) -> Result<(KeyRef, Wrapped)> {
        let _ = (kind, label, protection, escrow);
        Err(escrow_unsupported(self.kind()))
    }
    /// Wraps an existing key to `escrow`, where the key was made able to leave that way.
    fn escrow_existing(
        &self,
        kind: KeyKind,
        key: &KeyRef,
        escrow: &EscrowTarget,
    ) -> Result<Wrapped> {
        let _ = (kind, key, escrow);
        Err(escrow_unsupported(self.kind()))
    }
    /// Makes a key of `kind` from recovered `material` (32 bytes) with `protection`: the same
    /// rights a made key has, escrowable to `escrow` when given.
    fn recover_key(
        &self,
        kind: KeyKind,
        material: &[u8],
        label: &str,
        protection: &KeyProtection,
        escrow: Option<&EscrowTarget>,
    ) -> Result<KeyRef> {
        let _ = (kind, material, label, protection, escrow);
        Err(escrow_unsupported(self.kind()))
    }
    /// Random bytes from the device's generator.
    fn random(&self, len: usize) -> Result<SecretBytes>;
    /// A cheap call that fails when the device or token is not usable.
    fn check(&self) -> Result<()>;
}

/// The async boundary in front of a root of trust: every hardware call goes through
/// [`Hardware::run`], which hands it to one of `concurrency` dedicated threads (as many as the
/// session pool) and awaits the answer. Dedicated threads, not tokio's blocking pool: the pool
/// has no bound that matches the sessions, and its hand-off costs more per call.
///
/// The queue in front of the threads is bounded ([`QUEUE_PER_THREAD`] per thread): past it a
/// call fails at once with [`BackendError::Busy`] (clients see a retryable throttling error)
/// instead of every caller waiting ever longer. A queued call whose caller has gone (a client
/// that hung up) is dropped unrun: no hardware time is spent on answers nobody reads.
#[derive(Clone)]
pub struct Hardware {
    // Declared before `root`: the last clone's drop joins the threads first, so the root (a
    // PKCS#11 module's C_Finalize) goes on the dropping thread, never on a hardware thread racing
    // the process's exit.
    threads: Arc<Threads>,
    root: Arc<dyn RootOfTrust>,
    capacity: usize,
    counters: Arc<Counters>,
}

/// The job queue and the threads that take from it; dropping it closes the queue and waits for
/// the threads (each finishes the call it runs).
struct Threads {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.jobs = None;
        let me = std::thread::current().id();
        for handle in self.handles.drain(..) {
            // A job that held the last clone would otherwise wait for itself.
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

/// Calls that may wait per hardware thread. At the measured ~10-50k calls/s of a SoftHSM
/// token, a full queue drains in tens of milliseconds; a slow TPM's far longer.
pub const QUEUE_PER_THREAD: usize = 256;

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
        Self::with_queue(root, concurrency, concurrency.max(1) * QUEUE_PER_THREAD)
    }

    /// `new` with `capacity` calls allowed to wait.
    pub fn with_queue(root: Arc<dyn RootOfTrust>, concurrency: usize, capacity: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let mut handles = Vec::with_capacity(concurrency.max(1));
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
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => tracing::error!(error = %e, "cannot start a hardware thread"),
            }
        }
        Self {
            threads: Arc::new(Threads {
                jobs: Some(jobs),
                handles,
            }),
            root,
            capacity,
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
        let outcome = {
            // Counted however the call ends, its caller's going included.
            struct InFlight<'a>(&'a std::sync::atomic::AtomicU64);
            impl Drop for InFlight<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Relaxed);
                }
            }
            self.counters.in_flight.fetch_add(1, Relaxed);
            let _counted = InFlight(&self.counters.in_flight);
            self.probe(call).await
        };
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
            // The caller stopped waiting while the call was queued.
            if answer.is_closed() {
                return;
            }
            let _ = answer.send(call(root));
        });
        let jobs = self
            .threads
            .jobs
            .as_ref()
            .ok_or_else(|| BackendError::Unavailable("hardware threads stopped".into()))?;
        jobs.try_send(job).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => BackendError::Busy(self.capacity),
            std::sync::mpsc::TrySendError::Disconnected(_) => {
                BackendError::Unavailable("hardware threads stopped".into())
            }
        })?;
        answered.await.map_err(|_| {
            BackendError::Internal("a hardware call failed without an answer".into())
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    /// Polls once: a call is handed to the queue on its first poll.
    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_calls_whose_callers_left_are_skipped() {
        let hardware = Hardware::with_queue(Arc::new(memory::MemoryRoot::default()), 1, 2);
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        // Occupies the one hardware thread until released.
        let mut busy = Box::pin(hardware.run(move |_| {
            let _ = started.send(());
            let _ = released.recv();
            Ok(())
        }));
        assert!(poll_once(&mut busy).is_pending());
        running.recv_timeout(Duration::from_secs(10)).unwrap();
        let ran = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let counted = |i: usize| {
            let ran = Arc::clone(&ran);
            move |_: &dyn RootOfTrust| {
                ran[i].fetch_add(1, SeqCst);
                Ok(())
            }
        };
        let mut abandoned = Box::pin(hardware.run(counted(0)));
        let mut kept = Box::pin(hardware.run(counted(1)));
        assert!(poll_once(&mut abandoned).is_pending());
        assert!(poll_once(&mut kept).is_pending());
        // Two calls wait: the third is refused without waiting.
        let mut refused = Box::pin(hardware.run(|_| Ok(())));
        match poll_once(&mut refused) {
            Poll::Ready(Err(BackendError::Busy(2))) => {}
            other => panic!("expected Busy(2), got {other:?}"),
        }
        drop(abandoned);
        release.send(()).unwrap();
        busy.await.unwrap();
        kept.await.unwrap();
        assert_eq!(ran[1].load(SeqCst), 1);
        assert_eq!(ran[0].load(SeqCst), 0, "the abandoned call never ran");
        assert_eq!(hardware.counters().in_flight.load(SeqCst), 0);
    }
}
