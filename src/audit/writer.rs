//! The appender: one task owns the file and commits requests in groups.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::time::{Clock, SystemClock};

use super::record::{
    self, AuditEvent, Body, Head, LineHash, checkpoint_message, genesis_prev, line_hash,
};
use crate::crypto::hex;

pub type MacFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// The root of trust's MAC (an HMAC key inside an HSM or TPM).
pub trait CheckpointMac: Send + Sync + 'static {
    fn key_id(&self) -> String;
    fn mac(&self, message: Vec<u8>) -> MacFuture;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync every batch before answering it: an acknowledged record
    /// survives a power loss.
    EveryBatch,
    /// fdatasync only with checkpoints (and on close): faster, but records
    /// acknowledged since the last checkpoint can be lost in a power loss.
    Checkpoint,
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub path: PathBuf,
    /// Request records per checkpoint; 0 is taken as 1.
    pub checkpoint_every: u64,
    /// No line stays unsealed for much longer than this.
    pub checkpoint_interval: Duration,
    pub sync: SyncMode,
    /// The head the last clean close left, kept outside the file (in the store). The file
    /// must end there or have grown past it (after a crash); a file that ends before it, or
    /// differs there, was cut or replaced while the server was stopped.
    pub last_closed: Option<Head>,
    /// The node id of a cluster node, written into every line; none on a single server.
    pub node: Option<String>,
}

#[derive(Debug, Default)]
pub struct AuditCounters {
    pub records_written: AtomicU64,
    pub write_failures: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    /// Write calls, to show that a group of records costs one.
    #[cfg(test)]
    pub(crate) batch_writes: AtomicU64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "audit log {} ends with an incomplete line starting at byte {offset} (a write torn by a crash or power loss); \
         refusing to append to it. Run `keyward audit verify {}`, keep the report, and move the file aside \
         before restarting",
        path.display(), path.display()
    )]
    TornTail { path: PathBuf, offset: u64 },
    #[error(
        "audit log {}: the last line is not an audit record ({detail}); refusing to append to it. \
         Run `keyward audit verify {}` and move the file aside before restarting",
        path.display(), path.display()
    )]
    BadTail { path: PathBuf, detail: String },
    #[error("audit record could not be encoded: {0}")]
    Encode(String),
    #[error("audit checkpoint MAC failed: {0}")]
    Mac(String),
    #[error("audit log is closed")]
    Closed,
    #[error(
        "audit log {} ends at record {found} but this server closed it at record {closed} (hash {hash}): \
         it was cut short or replaced while the server was stopped. Run `keyward audit verify --offline {}`, \
         keep the file as evidence and move it aside; the server then starts a new log that records the gap",
        path.display(), path.display()
    )]
    Rewound {
        path: PathBuf,
        found: u64,
        closed: u64,
        hash: String,
    },
}

/// Handle used by request handlers; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

/// The task that owns the file: `tokio::spawn(task.run())`. Appends wait
/// until it runs.
pub struct AuditTask {
    writer: Writer,
    rx: mpsc::Receiver<Msg>,
}

struct Shared {
    counters: AuditCounters,
    healthy: AtomicBool,
    head: Mutex<Head>,
    #[cfg(test)]
    fail_writes: AtomicU64,
}

#[allow(
    clippy::large_enum_variant,
    reason = "nearly every message is an Append; boxing it would cost an allocation per request"
)]
enum Msg {
    Append(AuditEvent, oneshot::Sender<Result<(), AuditError>>),
    Close(oneshot::Sender<Result<(), AuditError>>),
}

const QUEUE: usize = 4096;
const MAX_BATCH: usize = 1024;
/// A hung HSM must not hold the log (and so every request) forever.
const MAC_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest last line read when reopening; records are a few hundred bytes.
const MAX_LINE: u64 = 1 << 20;

impl AuditLog {
    /// Opens (or creates) the file, picks up the chain where it ends and
    /// writes a `start` record. Does not check the existing lines: that is
    /// `keyward audit verify`'s job.
    pub async fn open(
        settings: AuditSettings,
        mac: Arc<dyn CheckpointMac>,
    ) -> Result<(AuditLog, AuditTask), AuditError> {
        let path = settings.path.clone();
        let opened = tokio::task::spawn_blocking(move || open_file(&path))
            .await
            .map_err(|e| io_error(&settings.path, "open", io::Error::other(e)))??;
        let shared = Arc::new(Shared {
            counters: AuditCounters::default(),
            healthy: AtomicBool::new(true),
            head: Mutex::new(Head {
                seq: opened.next_seq - 1,
                hash: hex::encode(&opened.prev),
            }),
            #[cfg(test)]
            fail_writes: AtomicU64::new(0),
        });
        let found = Head {
            seq: opened.next_seq - 1,
            hash: hex::encode(&opened.prev),
        };
        let reason = match &settings.last_closed {
            Some(closed) if opened.len == 0 && closed.seq > 0 => format!(
                "new file; the previous log, closed at record {} (hash {}), is gone",
                closed.seq, closed.hash
            ),
            Some(closed)
                if found.seq < closed.seq
                    || (found.seq == closed.seq && found.hash != closed.hash) =>
            {
                return Err(AuditError::Rewound {
                    path: settings.path,
                    found: found.seq,
                    closed: closed.seq,
                    hash: closed.hash.clone(),
                });
            }
            _ if opened.len == 0 => "new file".to_owned(),
            _ => "restart".to_owned(),
        };
        let mut writer = Writer {
            file: Arc::new(opened.file),
            path: settings.path,
            len: opened.len,
            needs_truncate: false,
            unsynced: false,
            next_seq: opened.next_seq,
            prev: opened.prev,
            unsealed_lines: 0,
            // Counted from this start line: lines an earlier run left
            // unsealed are not known without reading the file back.
            unsealed_records: 0,
            unsealed_since: None,
            mac_retry_at: None,
            every: settings.checkpoint_every.max(1),
            interval: settings.checkpoint_interval,
            sync: settings.sync,
            node: settings.node,
            key_id: mac.key_id(),
            mac,
            shared: Arc::clone(&shared),
        };
        writer.write_start(&reason).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok((AuditLog { tx, shared }, AuditTask { writer, rx }))
    }

    /// Resolves once the record is written (and synced per [`SyncMode`]).
    /// An error means the request must fail: nothing is served unaudited.
    /// Dropping the future after it was queued does not withdraw the record.
    /// Text fields are capped here ([`AuditEvent::capped`]), the one way into the log.
    pub async fn append(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Append(event.capped(), reply))
            .await
            .map_err(|_| AuditError::Closed)?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    /// False after a failed write until a later write succeeds, and after
    /// close; lets a handler refuse before doing any work.
    pub fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    /// The last line written.
    pub fn head(&self) -> Head {
        self.shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Writes what is queued, a final checkpoint, syncs and stops the task.
    /// Other clones get [`AuditError::Closed`] afterwards.
    pub async fn close(self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Close(reply))
            .await
            .map_err(|_| AuditError::Closed)?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    pub fn counters(&self) -> &AuditCounters {
        &self.shared.counters
    }

    /// Makes the next `n` writes fail halfway through, like a full disk.
    #[cfg(test)]
    pub(crate) fn fail_next_writes(&self, n: u64) {
        self.shared.fail_writes.store(n, Ordering::Relaxed);
    }
}

impl AuditTask {
    pub async fn run(mut self) {
        let mut msgs = Vec::with_capacity(MAX_BATCH);
        loop {
            let due = self.writer.checkpoint_due();
            tokio::select! {
                n = self.rx.recv_many(&mut msgs, MAX_BATCH) => {
                    if n == 0 {
                        // Every handle is gone without close(): seal anyway.
                        let _ = self.writer.shutdown().await;
                        return;
                    }
                    let mut batch = Vec::with_capacity(n);
                    let mut closers = Vec::new();
                    for msg in msgs.drain(..) {
                        match msg {
                            Msg::Append(event, reply) if closers.is_empty() => batch.push((event, reply)),
                            Msg::Append(_, reply) => {
                                let _ = reply.send(Err(AuditError::Closed));
                            }
                            Msg::Close(reply) => closers.push(reply),
                        }
                    }
                    self.writer.write_batch(batch).await;
                    if !closers.is_empty() {
                        let result = self.writer.shutdown().await;
                        for reply in closers {
                            let _ = reply.send(result.clone());
                        }
                        return;
                    }
                }
                () = sleep_until(due) => {
                    let _ = self.writer.checkpoint().await;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Writer {
    file: Arc<File>,
    path: PathBuf,
    /// Length of the file up to its last complete, acknowledged line.
    len: u64,
    /// A failed write could not be cut back; do it before the next write so
    /// a new line never follows a torn one.
    needs_truncate: bool,
    unsynced: bool,
    next_seq: u64,
    prev: LineHash,
    unsealed_lines: u64,
    unsealed_records: u64,
    unsealed_since: Option<Instant>,
    mac_retry_at: Option<Instant>,
    every: u64,
    interval: Duration,
    sync: SyncMode,
    node: Option<String>,
    key_id: String,
    mac: Arc<dyn CheckpointMac>,
    shared: Arc<Shared>,
}

impl Writer {
    async fn write_start(&mut self, reason: &str) -> Result<(), AuditError> {
        let line = record::encode(
            self.next_seq,
            SystemClock.now_ms(),
            self.node.as_deref(),
            &self.prev,
            Body::Start { reason },
        )
        .map_err(|e| AuditError::Encode(e.to_string()))?;
        let hash = line_hash(&line);
        self.commit(with_newline(line), true).await?;
        self.advance(self.next_seq + 1, hash, 1, 0);
        Ok(())
    }

    async fn write_batch(
        &mut self,
        batch: Vec<(AuditEvent, oneshot::Sender<Result<(), AuditError>>)>,
    ) {
        let (mut seq, mut prev) = (self.next_seq, self.prev);
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut replies = Vec::with_capacity(batch.len());
        for (event, reply) in batch {
            let time = if event.time_ms == 0 {
                SystemClock.now_ms()
            } else {
                event.time_ms
            };
            match record::encode(
                seq,
                time,
                self.node.as_deref(),
                &prev,
                Body::Request(&event),
            ) {
                Ok(line) => {
                    prev = line_hash(&line);
                    seq += 1;
                    buf.extend_from_slice(&line);
                    buf.push(b'\n');
                    replies.push(reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(AuditError::Encode(e.to_string())));
                }
            }
        }
        if replies.is_empty() {
            return;
        }
        let records = replies.len() as u64;
        let result = self.commit(buf, self.sync == SyncMode::EveryBatch).await;
        if result.is_ok() {
            self.advance(seq, prev, records, records);
            self.shared
                .counters
                .records_written
                .fetch_add(records, Ordering::Relaxed);
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        let backing_off = self.mac_retry_at.is_some_and(|at| Instant::now() < at);
        if self.unsealed_records >= self.every && !backing_off {
            let _ = self.checkpoint().await;
        }
    }

    fn advance(&mut self, next_seq: u64, prev: LineHash, lines: u64, records: u64) {
        self.next_seq = next_seq;
        self.prev = prev;
        self.unsealed_lines += lines;
        self.unsealed_records += records;
        self.unsealed_since.get_or_insert_with(Instant::now);
        self.publish_head();
    }

    fn publish_head(&self) {
        let head = Head {
            seq: self.next_seq - 1,
            hash: hex::encode(&self.prev),
        };
        *self
            .shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = head;
    }

    fn checkpoint_due(&self) -> Option<Instant> {
        let due = self.unsealed_since? + self.interval;
        Some(self.mac_retry_at.map_or(due, |retry| retry.max(due)))
    }

    /// A failed checkpoint does not stop records from being written: losing
    /// the root of trust for a while should cost tamper-evidence of the
    /// newest lines (the chain still covers them, and the next checkpoint
    /// seals them), not availability. It is retried once `checkpoint_interval`
    /// has passed, on the timer or the next batch, so a dead HSM is not
    /// hammered and does not slow every batch.
    async fn checkpoint(&mut self) -> Result<(), AuditError> {
        let (seq, prev) = (self.next_seq, self.prev);
        let mac =
            match tokio::time::timeout(MAC_TIMEOUT, self.mac.mac(checkpoint_message(seq, &prev)))
                .await
            {
                Ok(Ok(mac)) => mac,
                Ok(Err(e)) => return Err(self.checkpoint_failed(AuditError::Mac(e))),
                Err(_) => return Err(self.checkpoint_failed(AuditError::Mac("timed out".into()))),
            };
        let body = Body::Checkpoint {
            mac: &mac,
            key: &self.key_id,
            records: self.unsealed_records,
        };
        let line =
            match record::encode(seq, SystemClock.now_ms(), self.node.as_deref(), &prev, body) {
                Ok(line) => line,
                Err(e) => return Err(self.checkpoint_failed(AuditError::Encode(e.to_string()))),
            };
        let hash = line_hash(&line);
        // Always synced: this is the durability point of SyncMode::Checkpoint.
        if let Err(e) = self.commit(with_newline(line), true).await {
            return Err(self.checkpoint_failed(e));
        }
        self.next_seq = seq + 1;
        self.prev = hash;
        self.unsealed_lines = 0;
        self.unsealed_records = 0;
        self.unsealed_since = None;
        self.mac_retry_at = None;
        self.publish_head();
        self.shared
            .counters
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn checkpoint_failed(&mut self, error: AuditError) -> AuditError {
        self.shared
            .counters
            .checkpoint_failures
            .fetch_add(1, Ordering::Relaxed);
        self.mac_retry_at = Some(Instant::now() + self.interval);
        tracing::warn!(path = %self.path.display(), seq = self.next_seq, %error,
            "audit checkpoint failed; records are still written, will retry");
        error
    }

    async fn shutdown(&mut self) -> Result<(), AuditError> {
        let sealed = if self.unsealed_lines > 0 {
            self.checkpoint().await
        } else {
            Ok(())
        };
        let synced = if self.unsynced {
            let file = Arc::clone(&self.file);
            match tokio::task::spawn_blocking(move || file.sync_data()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(io_error(&self.path, "sync", e)),
                Err(e) => Err(io_error(&self.path, "sync", io::Error::other(e))),
            }
        } else {
            Ok(())
        };
        self.shared.healthy.store(false, Ordering::Relaxed);
        sealed.and(synced)
    }

    /// Writes whole lines with one write call. On failure, cuts the file back
    /// to its last good length so no torn line stays behind; the chain head
    /// is untouched, so the next write reuses the failed sequence numbers.
    async fn commit(&mut self, buf: Vec<u8>, sync: bool) -> Result<(), AuditError> {
        let file = Arc::clone(&self.file);
        let (good_len, needs_truncate) = (self.len, self.needs_truncate);
        let added = buf.len() as u64;
        #[cfg(test)]
        let inject = {
            self.shared
                .counters
                .batch_writes
                .fetch_add(1, Ordering::Relaxed);
            self.shared
                .fail_writes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        };
        #[cfg(not(test))]
        let inject = false;
        let done = tokio::task::spawn_blocking(move || {
            let written = (|| {
                if needs_truncate {
                    file.set_len(good_len)?;
                }
                if inject {
                    (&*file).write_all(&buf[..buf.len() / 2])?;
                    return Err(io::Error::other("injected failure after a partial write"));
                }
                (&*file).write_all(&buf)?;
                if sync {
                    file.sync_data()?;
                }
                Ok(())
            })();
            let clean = written.is_ok() || file.set_len(good_len).is_ok();
            (written, clean)
        })
        .await;
        let (written, clean) = done.unwrap_or_else(|e| (Err(io::Error::other(e)), false));
        self.needs_truncate = !clean;
        match written {
            Ok(()) => {
                self.len += added;
                self.unsynced = !sync;
                self.shared.healthy.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.shared.healthy.store(false, Ordering::Relaxed);
                self.shared
                    .counters
                    .write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %self.path.display(), error = %e, truncated = clean,
                    "audit write failed; requests in this batch are refused");
                Err(io_error(&self.path, "write", e))
            }
        }
    }
}

fn with_newline(mut line: Vec<u8>) -> Vec<u8> {
    line.push(b'\n');
    line
}

fn io_error(path: &Path, op: &'static str, e: io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_owned(),
        op,
        source: Arc::new(e),
    }
}

struct Opened {
    file: File,
    len: u64,
    next_seq: u64,
    prev: LineHash,
}

fn open_file(path: &Path) -> Result<Opened, AuditError> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        // Principals, resources and sources are not for every local user.
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, "open", e))?;
    if !existed {
        // The new directory entry must survive a power loss too.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(path, "sync directory", e))?;
        }
    }
    let len = file
        .metadata()
        .map_err(|e| io_error(path, "stat", e))?
        .len();
    if len == 0 {
        return Ok(Opened {
            file,
            len,
            next_seq: 1,
            prev: genesis_prev(),
        });
    }
    let read_err = |e| io_error(path, "read", e);
    // The last line starts just after the last newline before the final byte.
    let start = newline_before(&file, len - 1)
        .map_err(read_err)?
        .map_or(0, |at| at + 1);
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1).map_err(read_err)?;
    if last[0] != b'\n' {
        return Err(AuditError::TornTail {
            path: path.to_owned(),
            offset: start,
        });
    }
    let line_len = len - 1 - start;
    if line_len > MAX_LINE {
        return Err(AuditError::BadTail {
            path: path.to_owned(),
            detail: format!("last line is {line_len} bytes long"),
        });
    }
    let mut line = vec![0; usize::try_from(line_len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut line, start).map_err(read_err)?;
    let parsed = record::parse_line(&line).map_err(|detail| AuditError::BadTail {
        path: path.to_owned(),
        detail,
    })?;
    Ok(Opened {
        file,
        len,
        next_seq: parsed.seq + 1,
        prev: line_hash(&line),
    })
}

/// Offset of the last `\n` before `end`, reading backwards in chunks so a
/// large file is never loaded.
fn newline_before(file: &File, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 8192;
    let mut buf = vec![0; CHUNK as usize];
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let chunk = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(chunk, lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Kind, Outcome, parse_line};
    use crate::audit::test_support::{FakeMac, KEY_ID, fake_mac};
    use crate::audit::verify::{self, Problem};

    fn settings(path: &Path, every: u64) -> AuditSettings {
        AuditSettings {
            path: path.to_owned(),
            checkpoint_every: every,
            checkpoint_interval: Duration::from_secs(3600),
            sync: SyncMode::EveryBatch,
            last_closed: None,
            node: None,
        }
    }

    #[tokio::test]
    async fn a_log_cut_or_removed_while_stopped_is_noticed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, _mac, task) = start(settings(&path, 1000)).await;
        for i in 0..3 {
            log.append(event(i)).await.unwrap();
        }
        let closed = {
            let probe = log.clone();
            log.close().await.unwrap();
            task.await.unwrap();
            probe.head()
        };
        let reopen = |closed: Head| {
            let path = path.clone();
            async move {
                let s = AuditSettings {
                    last_closed: Some(closed),
                    node: None,
                    ..settings(&path, 1000)
                };
                AuditLog::open(s, Arc::new(FakeMac::default())).await
            }
        };
        let full = std::fs::read(&path).unwrap();
        let cut = &full[..full[..full.len() - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .unwrap()
            + 1];
        std::fs::write(&path, cut).unwrap();
        let err = reopen(closed.clone())
            .await
            .err()
            .expect("a cut log was accepted");
        assert!(
            matches!(err, AuditError::Rewound { closed: c, .. } if c == closed.seq),
            "{err}"
        );
        std::fs::write(&path, &full).unwrap();
        assert!(
            reopen(closed.clone()).await.is_ok(),
            "the intact log was refused"
        );
        std::fs::remove_file(&path).unwrap();
        let (log, task) = reopen(closed.clone()).await.unwrap();
        drop((log, task));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("closed at record {}", closed.seq)),
            "{text}"
        );
    }

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            time_ms: 1_796_011_200_000 + i as i64,
            request_id: format!("req-{i}"),
            api: "grpc",
            principal: "keyward:principal/app".into(),
            source: "127.0.0.1:40000".into(),
            action: "secretsmanager:GetSecretValue".into(),
            resource: "arn:aws:secretsmanager:on-prem:000000000000:secret:db".into(),
            outcome: Outcome::Success,
            duration_us: i,
            ..AuditEvent::default()
        }
    }

    async fn start(s: AuditSettings) -> (AuditLog, Arc<FakeMac>, tokio::task::JoinHandle<()>) {
        let mac = Arc::new(FakeMac::default());
        let (log, task) = AuditLog::open(s, mac.clone()).await.unwrap();
        (log, mac, tokio::spawn(task.run()))
    }

    fn read_lines(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'), "file must end with a newline");
        bytes[..bytes.len() - 1]
            .split(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn json(line: &[u8]) -> serde_json::Value {
        serde_json::from_slice(line).unwrap()
    }

    fn kinds(lines: &[Vec<u8>]) -> String {
        lines
            .iter()
            .map(|l| match parse_line(l).unwrap().kind {
                Kind::Request => 'r',
                Kind::Checkpoint => 'C',
                Kind::Start => 'S',
            })
            .collect()
    }

    /// Recomputes the chain independently of the verifier.
    fn assert_chained(lines: &[Vec<u8>]) {
        use sha2::{Digest, Sha256};
        let mut prev = hex::encode(&Sha256::digest(b"keyward-audit-v1"));
        for (i, line) in lines.iter().enumerate() {
            let v = json(line);
            assert_eq!(v["seq"], i as u64 + 1, "line {}", i + 1);
            assert_eq!(v["prev"], prev.as_str(), "line {}", i + 1);
            prev = hex::encode(&Sha256::digest(line));
        }
    }

    fn verify_file(path: &Path, head: &Head) -> verify::Scan {
        let file = std::io::BufReader::new(File::open(path).unwrap());
        let mut scan = verify::scan(file).unwrap();
        scan.check_head(head);
        for i in 0..scan.checkpoints.len() {
            let claim = &scan.checkpoints[i];
            if fake_mac(&claim.key_id, &claim.message) != claim.mac {
                scan.mark_bad_mac(i);
            }
        }
        scan
    }

    #[tokio::test]
    async fn writes_a_chained_run_of_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, _mac, task) = start(settings(&path, 1000)).await;
        for i in 0..10 {
            log.append(event(i)).await.unwrap();
        }
        let head = log.head();
        assert_eq!(head.seq, 11);
        assert_eq!(log.counters().records_written.load(Ordering::Relaxed), 10);
        assert!(log.healthy());

        let lines = read_lines(&path);
        assert_eq!(kinds(&lines), "Srrrrrrrrrr");
        assert_chained(&lines);
        let start = json(&lines[0]);
        assert_eq!(start["reason"], "new file");
        let first = String::from_utf8(lines[1].clone()).unwrap();
        assert!(
            first.starts_with(
                r#"{"seq":2,"time":"2026-11-30T04:00:00.000Z","kind":"request","prev":""#
            ),
            "{first}"
        );
        assert!(
            first.contains(r#""request_id":"req-0","api":"grpc""#),
            "{first}"
        );
        assert_eq!(head.hash, hex::encode(&line_hash(&lines[10])));

        let scan = verify_file(&path, &head);
        assert_eq!(scan.lines, 11);
        assert_eq!(scan.records, 10);
        // Not closed yet: only the (warning) unsealed tail.
        assert!(scan.ok(), "{:?}", scan.findings);
        assert!(matches!(
            scan.findings.as_slice(),
            [f] if f.problem == Problem::UnsealedTail { from_seq: 1 }
        ));
        log.close().await.unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn checkpoints_every_n_records_with_a_mac_over_seq_and_prev() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, _mac, task) = start(settings(&path, 3)).await;
        for i in 0..7 {
            log.append(event(i)).await.unwrap();
        }
        let lines = read_lines(&path);
        assert_eq!(kinds(&lines), "SrrrCrrrCr");
        assert_chained(&lines);
        assert_eq!(log.counters().checkpoints.load(Ordering::Relaxed), 2);
        for at in [4, 8] {
            let cp = json(&lines[at]);
            let mut message = b"keyward-audit-checkpoint-v1\0".to_vec();
            message.extend_from_slice(&(at as u64 + 1).to_be_bytes());
            message.extend_from_slice(&line_hash(&lines[at - 1]));
            assert_eq!(cp["mac"], hex::encode(&fake_mac(KEY_ID, &message)).as_str());
            assert_eq!(cp["key"], KEY_ID);
            assert_eq!(cp["records"], 3);
        }
        log.close().await.unwrap();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mac = Arc::new(FakeMac::default());
        let (log, task) = AuditLog::open(settings(&path, 1000), mac).await.unwrap();
        let writes_before = log.counters().batch_writes.load(Ordering::Relaxed);
        let appends: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(event(i)).await })
            })
            .collect();
        // Let the requests queue up before the writer starts, as they would
        // behind a slow fdatasync.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let task = tokio::spawn(task.run());
        for append in appends {
            append.await.unwrap().unwrap();
        }
        let writes = log.counters().batch_writes.load(Ordering::Relaxed) - writes_before;
        assert_eq!(log.counters().records_written.load(Ordering::Relaxed), 200);
        assert!(writes < 10, "200 records took {writes} writes");
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 201);
        assert_chained(&lines);
        log.close().await.unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn reopening_continues_the_chain_with_a_start_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, _mac, task) = start(settings(&path, 1000)).await;
        for i in 0..5 {
            log.append(event(i)).await.unwrap();
        }
        log.close().await.unwrap();
        task.await.unwrap();

        let (log, _mac, task) = start(settings(&path, 1000)).await;
        assert_eq!(log.head().seq, 8);
        log.append(event(5)).await.unwrap();
        let lines = read_lines(&path);
        assert_eq!(kinds(&lines), "SrrrrrCSr");
        assert_chained(&lines);
        assert_eq!(json(&lines[7])["reason"], "restart");
        log.close().await.unwrap();
        task.await.unwrap();

        let lines = read_lines(&path);
        let head = Head {
            seq: lines.len() as u64,
            hash: hex::encode(&line_hash(lines.last().unwrap())),
        };
        let scan = verify_file(&path, &head);
        assert!(scan.findings.is_empty(), "{:?}", scan.findings);
        assert_eq!(scan.checkpoints.len(), 2);
    }

    #[tokio::test]
    async fn a_torn_tail_is_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, _mac, task) = start(settings(&path, 1000)).await;
        log.append(event(0)).await.unwrap();
        log.close().await.unwrap();
        task.await.unwrap();
        let good_len = std::fs::metadata(&path).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"seq":4,"time":"2026-11-3"#).unwrap();
        drop(file);

        let err = AuditLog::open(settings(&path, 1000), Arc::new(FakeMac::default()))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, AuditError::TornTail { offset, .. } if *offset == good_len),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("keyward audit verify"), "{message}");
        assert!(message.contains("move the file aside"), "{message}");
        // Refused, not repaired.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len + 26);
    }

    #[tokio::test]
    async fn a_last_line_that_is_not_a_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "not json\n").unwrap();
        let err = AuditLog::open(settings(&path, 1000), Arc::new(FakeMac::default()))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, AuditError::BadTail { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn reads_the_last_line_of_a_file_larger_than_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, _mac, task) = start(settings(&path, 1000)).await;
        for i in 0..100 {
            log.append(event(i)).await.unwrap();
        }
        let head = log.head();
        drop(log);
        task.await.unwrap(); // dropping every handle seals the log too
        assert!(std::fs::metadata(&path).unwrap().len() > 3 * 8192);
        let (log, _mac, task) = start(settings(&path, 1000)).await;
        assert_eq!(log.head().seq, head.seq + 2);
        log.close().await.unwrap();
        task.await.unwrap();
        assert_chained(&read_lines(&path));
    }

    #[tokio::test]
    async fn close_writes_a_final_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let s = AuditSettings {
            sync: SyncMode::Checkpoint,
            ..settings(&path, 1000)
        };
        let (log, _mac, task) = start(s).await;
        for i in 0..3 {
            log.append(event(i)).await.unwrap();
        }
        let other = log.clone();
        log.close().await.unwrap();
        task.await.unwrap();
        assert!(matches!(
            other.append(event(9)).await,
            Err(AuditError::Closed)
        ));
        assert!(!other.healthy());

        let lines = read_lines(&path);
        assert_eq!(kinds(&lines), "SrrrC");
        assert_eq!(json(&lines[4])["records"], 3);
        assert_eq!(other.head().hash, hex::encode(&line_hash(&lines[4])));
        let scan = verify_file(&path, &other.head());
        assert!(scan.findings.is_empty(), "{:?}", scan.findings);
    }

    #[tokio::test]
    async fn a_failed_write_is_refused_and_leaves_no_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, _mac, task) = start(settings(&path, 1000)).await;
        log.append(event(0)).await.unwrap();
        let before = std::fs::read(&path).unwrap();
        let head = log.head();

        log.fail_next_writes(1);
        let err = log.append(event(1)).await.unwrap_err();
        assert!(matches!(err, AuditError::Io { op: "write", .. }), "{err:?}");
        assert!(!log.healthy());
        assert_eq!(log.head(), head);
        assert_eq!(log.counters().write_failures.load(Ordering::Relaxed), 1);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "torn bytes left behind"
        );

        log.append(event(2)).await.unwrap();
        assert!(log.healthy());
        let lines = read_lines(&path);
        assert_eq!(lines.len(), 3);
        assert_chained(&lines);
        assert_eq!(json(&lines[2])["request_id"], "req-2");
        log.close().await.unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_mac_does_not_stop_records_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let s = AuditSettings {
            checkpoint_interval: Duration::from_millis(100),
            ..settings(&path, 2)
        };
        let (log, mac, task) = start(s).await;
        mac.failing.store(true, Ordering::Relaxed);
        for i in 0..4 {
            log.append(event(i)).await.unwrap();
        }
        // One attempt at the 2nd record; the 4th is inside the back-off.
        assert_eq!(
            log.counters().checkpoint_failures.load(Ordering::Relaxed),
            1
        );
        assert_eq!(kinds(&read_lines(&path)), "Srrrr");
        assert!(log.healthy());

        mac.failing.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lines = read_lines(&path);
        assert_eq!(kinds(&lines), "SrrrrC");
        assert_eq!(json(&lines[5])["records"], 4);
        assert_eq!(log.counters().checkpoints.load(Ordering::Relaxed), 1);
        log.close().await.unwrap();
        task.await.unwrap();
        assert_chained(&read_lines(&path));
    }

    #[tokio::test]
    async fn an_idle_tail_is_sealed_after_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let s = AuditSettings {
            checkpoint_interval: Duration::from_millis(50),
            ..settings(&path, 1000)
        };
        let (log, mac, task) = start(s).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            kinds(&read_lines(&path)),
            "SC",
            "the start line is sealed too"
        );
        log.append(event(0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(kinds(&read_lines(&path)), "SCrC");
        // Nothing unsealed: no more MAC calls while idle.
        let calls = mac.calls.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(mac.calls.load(Ordering::Relaxed), calls);
        log.close().await.unwrap();
        task.await.unwrap();
        assert_eq!(kinds(&read_lines(&path)), "SCrC");
    }
}
