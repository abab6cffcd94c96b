//! Assembling and running the server: open the store and the root of trust, serve gRPC
//! (KMS, secrets, health, reflection) on a listener until the shutdown future resolves, and run
//! the background tasks (root-of-trust health, expired-key purge, rotation, replication
//! senders) meanwhile.
//!
//! - this file: composition — opening the store, the root of trust, the services, the gate and
//!   the audit log, and running the listeners until shutdown;
//! - `listeners`: accepting connections;
//! - `tasks`: the background tasks.

mod listeners;
mod tasks;

use crate::access::Gate;
use crate::alarms::{Alarms, StoreHistory};
use crate::api::audit::AuditApi;
use crate::api::backup::BackupApi;
use crate::api::detach::{DetachLayer, InFlight};
use crate::api::kms::KmsApi;
use crate::api::pb::{
    self, audit_service_server::AuditServiceServer, backup_service_server::BackupServiceServer,
    key_management_service_server::KeyManagementServiceServer,
    secrets_manager_service_server::SecretsManagerServiceServer,
};
use crate::api::pb::{
    site_replication_service_client::SiteReplicationServiceClient,
    site_replication_service_server::SiteReplicationServiceServer,
};
use crate::api::secrets::SecretsApi;
use crate::audit::head::{closed_audit_head, save_audit_head};
use crate::audit::{AuditLog, AuditSettings, RootMac, SyncMode};
use crate::backend::pkcs11::{Pkcs11Options, Pkcs11Root, TokenSelector, context, ensure_token};
use crate::backend::tpm::{TpmKeyMode, TpmOptions, TpmRoot};
use crate::backend::{BackendError, Hardware, IdentityChanged, RootOfTrust, check_identity};
use crate::cluster::{Member, Node};
use crate::config::AuditSync;
use crate::config::{
    Config, ConfigError, KeyMode, RootOfTrustConfig, StoreConfig, Token, read_secret,
};
use crate::replication::sender::Sender;
use crate::replication::site::{self, SiteApi};
use crate::service::kms::Arns;
use crate::service::rotation::{ExecSettings, RotationSettings, Rotators, Scheduler};
use crate::service::secrets::replica::outbox::{FOLLOW_EVERY, Outbox};
use crate::service::secrets::{SecretsError, SecretsService};
use crate::service::{Clock, KmsService, SystemClock};
use crate::store::{EtcdStore, Expect, Op, Store, StoreError, keyspace};
use listeners::incoming;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tasks::{purge_expired, root_of_trust_status, set_health, watch_cluster, watch_root_of_trust};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

/// After the shutdown signal, in-flight requests get this long to finish. Idle HTTP/2
/// connections would otherwise hold a graceful shutdown open for as long as clients keep them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot use the root of trust: {0}")]
    RootOfTrust(#[from] BackendError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot prepare the secrets service: {0}")]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    IdentityChanged(#[from] IdentityChanged),
    #[error("audit log: {0}")]
    Audit(String),
    #[error("access control: {0}")]
    Access(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("data directory {0}")]
    DataDir(String),
    #[error("key escrow: {0}")]
    Escrow(String),
}

/// This node as a cluster member, and the lock on its data directory.
struct Membership {
    node: Arc<Node>,
    _lock: std::fs::File,
}

/// Takes the data directory for this process: on a cluster nothing else locks it (sled does
/// on one server), and the node's lease file in it must have one writer.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let fail = |e: std::io::Error| StartError::DataDir(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let file = std::fs::File::create(dir.join("node.lock")).map_err(fail)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDir(format!(
            "{} is in use by another keyward process",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(e)),
    }
}

/// Opens the configured store; on etcd, also joins the site's cluster as this node.
/// The configured escrow key, recorded in the store (insert-once) so that every backup
/// carries the modulus recovery needs.
async fn open_escrow(
    config: &Config,
    store: &Store,
) -> Result<Option<crate::escrow::EscrowKey>, StartError> {
    let Some(escrow) = &config.escrow else {
        return Ok(None);
    };
    let key = crate::escrow::EscrowKey::load(&escrow.public_key_file)
        .map_err(|e| StartError::Escrow(e.to_string()))?;
    let entry = [keyspace::ESCROW_KEYS, key.id().as_bytes()].concat();
    if store.get(&entry).await?.is_none() {
        let recorded = store
            .commit(vec![crate::store::Op::Put {
                key: entry,
                value: key.der().to_vec(),
                expect: crate::store::Expect::Absent,
            }])
            .await;
        match recorded {
            // Another node of the cluster recorded the same key first.
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(escrow_key = %key.id(), "key escrow on: every new key is escrowed");
    Ok(Some(key))
}

async fn open_store(config: &Config) -> Result<(Store, Option<Membership>), StartError> {
    let etcd = match &config.store {
        StoreConfig::Sled => return Ok((Store::open(&config.data_dir.join("store"))?, None)),
        StoreConfig::Etcd(etcd) => etcd,
    };
    let lock = lock_data_dir(&config.data_dir)?;
    let lease_file = config.data_dir.join("node.lease");
    let previous = std::fs::read_to_string(&lease_file)
        .ok()
        .and_then(|text| text.trim().parse().ok());
    let cluster = EtcdStore::connect(etcd.options()?).await?;
    let member = Member {
        id: etcd.node_id.clone(),
        address: node_address(config, config.listen),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started: SystemClock.now().secs(),
    };
    let node = Node::join(&cluster, member, etcd.lease_ttl, previous).await?;
    std::fs::write(&lease_file, node.lease().to_string())
        .map_err(|e| StartError::DataDir(format!("{}: {e}", lease_file.display())))?;
    tracing::info!(node = %node.id(), endpoints = %etcd.endpoints.join(","), "joined the cluster");
    Ok((
        Store::Etcd(Box::new(cluster)),
        Some(Membership { node, _lock: lock }),
    ))
}

/// The gRPC address other nodes and `keyward cluster status` reach this node at.
fn node_address(config: &Config, bound: std::net::SocketAddr) -> String {
    match &config.store {
        StoreConfig::Etcd(etcd) if etcd.advertise.is_some() => {
            etcd.advertise.clone().unwrap_or_default()
        }
        _ if config.tls.is_some() => format!("https://{bound}"),
        _ => format!("http://{bound}"),
    }
}

async fn check_identity_in(store: &Store, root: &dyn RootOfTrust) -> Result<(), StartError> {
    let recorded = store.get(keyspace::ROOT_IDENTITY).await?;
    if let Some(first) = check_identity(root, recorded.as_ref().map(|r| r.value.as_slice()))? {
        let written = store
            .commit(vec![Op::Put {
                key: keyspace::ROOT_IDENTITY.to_vec(),
                value: first,
                expect: Expect::Absent,
            }])
            .await;
        match written {
            // Another node of a cluster starting at the same moment recorded it first: it
            // must be this same root of trust.
            Err(StoreError::Conflict(_)) => {
                let recorded = store.get(keyspace::ROOT_IDENTITY).await?;
                check_identity(root, recorded.as_ref().map(|r| r.value.as_slice()))?;
            }
            other => other?,
        }
    }
    Ok(())
}

/// Everything a running server owns.
pub struct Keyward {
    pub kms: Arc<KmsService>,
    pub secrets: Arc<SecretsService>,
    pub gate: Arc<Gate>,
    /// The replication log, when this site has peers.
    outbox: Option<Arc<Outbox>>,
    alarms: Option<Arc<Alarms>>,
    mac: Arc<RootMac>,
    store: Store,
    /// This process as a cluster node; none on the embedded store.
    node: Option<Arc<Node>>,
    /// Held while the server runs (see `lock_data_dir`).
    _data_dir_lock: Option<std::fs::File>,
    /// What this node last saw of its cluster (metrics); unused on the embedded store.
    cluster_health: Arc<crate::cluster::Health>,
    /// The duties this server runs, by name, for the cluster watch.
    duties: std::sync::Mutex<Vec<String>>,
    config: Config,
    clock: Arc<dyn Clock>,
    /// How long `open` took.
    start: Duration,
    metrics: Option<TcpListener>,
    aws: Option<TcpListener>,
    replication: Option<TcpListener>,
}

/// Connects to the configured root of trust. Blocking: call before or off the executor.
pub fn connect_root_of_trust(config: &Config) -> Result<(Arc<dyn RootOfTrust>, usize), StartError> {
    match &config.root_of_trust {
        RootOfTrustConfig::Pkcs11(p) => {
            let pin = p.pin()?;
            if let (Some(so_pin_file), Token::Label(label)) =
                (&p.initialize_token_so_pin_file, &p.token)
            {
                let so_pin = read_secret(None, Some(so_pin_file))?;
                ensure_token(&context(&p.module)?, label, &so_pin, &pin)?;
            }
            let token = match &p.token {
                Token::Label(label) => TokenSelector::Label(label.clone()),
                Token::Serial(serial) => TokenSelector::Serial(serial.clone()),
            };
            let root = Pkcs11Root::connect(Pkcs11Options {
                module: p.module.clone(),
                token,
                pin,
            })?;
            Ok((Arc::new(root), p.sessions))
        }
        RootOfTrustConfig::Tpm(t) => {
            let key_mode = match t.key_mode {
                KeyMode::Resident => TpmKeyMode::Resident,
                KeyMode::SealedKek => TpmKeyMode::SealedKek,
            };
            let root = TpmRoot::connect(TpmOptions {
                tcti: t.tcti.clone(),
                owner_auth: t.owner_auth()?,
                srk_handle: t.srk_handle,
                default_mode: key_mode,
                default_pcrs: t.pcrs.clone(),
                parameter_encryption: t.parameter_encryption(),
            })?;
            // One ESAPI context, one owner thread: more hardware threads would only queue.
            Ok((Arc::new(root), 1))
        }
        RootOfTrustConfig::Development => Err(ConfigError::Invalid(
            "the development root of trust must be resolved before connecting".into(),
        )
        .into()),
    }
}

impl Keyward {
    pub async fn open(config: Config) -> Result<Self, StartError> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn open_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let started = std::time::Instant::now();
        let (store, membership) = open_store(&config).await?;
        let (node, data_dir_lock) = match membership {
            Some(m) => (Some(m.node), Some(m._lock)),
            None => (None, None),
        };
        let connect_config = config.clone();
        let (root, sessions) =
            tokio::task::spawn_blocking(move || connect_root_of_trust(&connect_config))
                .await
                .map_err(|e| BackendError::Internal(e.to_string()))??;
        tracing::info!(kind = root.kind(), sessions, "root of trust connected");
        check_identity_in(&store, root.as_ref()).await?;
        let escrow = open_escrow(&config, &store).await?;
        let arns = Arns {
            partition: config.arn_partition.clone(),
            region: config.region.clone(),
            account_id: config.account_id.clone(),
        };
        let kms = Arc::new(
            KmsService::new(
                Hardware::new(root, sessions),
                store.clone(),
                Arc::clone(&clock),
                arns,
            )
            .with_data_key_cache(
                config.secrets.data_key_cache_entries,
                config.secrets.data_key_cache_max_age,
            )
            .with_import_token_lifetime(config.kms.import_token_lifetime)
            .with_escrow(escrow.clone()),
        );
        let outbox = match &config.replication {
            Some(r) => Some(Arc::new(
                Outbox::open(store.clone(), r.peers.iter().map(|p| p.region.clone())).await?,
            )),
            None => None,
        };
        let mut secrets = SecretsService::new(Arc::clone(&kms), store.clone(), Arc::clone(&clock))
            .with_exec_rotators(
                config
                    .rotation
                    .exec
                    .iter()
                    .map(|(name, exec)| (name.clone(), exec.secrets.clone())),
            );
        if let Some(outbox) = &outbox {
            secrets = secrets.with_outbox(Arc::clone(outbox));
        }
        let secrets = Arc::new(secrets);
        secrets.ensure_default_key().await?;
        secrets.ensure_indexes().await?;
        let mac = Arc::new(
            RootMac::open(&store, kms.hardware().clone(), escrow.as_ref())
                .await
                .map_err(|e| StartError::Audit(format!("checkpoint key: {e}")))?,
        );
        let node_id = node.as_ref().map(|n| n.id().to_owned());
        let audit = open_audit(&config, &store, node_id, Arc::clone(&mac)).await?;
        let alarms = match &config.alarms {
            Some(rules) => {
                let history = Arc::new(StoreHistory::new(store.clone()));
                let (alarms, webhooks) = Alarms::new(rules.clone(), history)
                    .map_err(|e| StartError::Access(e.to_string()))?;
                tokio::spawn(webhooks);
                Some(Arc::new(alarms))
            }
            None => None,
        };
        let gate = Arc::new(
            Gate::new(
                config.auth.as_ref(),
                Arc::clone(&kms),
                Arc::clone(&secrets),
                audit,
                alarms.clone(),
            )
            .map_err(StartError::Access)?,
        );
        let start = started.elapsed();
        tracing::info!(
            seconds = start.as_secs_f64(),
            "opened store and root of trust"
        );
        Ok(Self {
            kms,
            secrets,
            gate,
            outbox,
            alarms,
            mac,
            store,
            node,
            _data_dir_lock: data_dir_lock,
            cluster_health: Arc::default(),
            duties: std::sync::Mutex::default(),
            config,
            clock,
            start,
            metrics: None,
            aws: None,
            replication: None,
        })
    }

    /// Also serve Prometheus metrics on `listener` while running.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics = Some(listener);
        self
    }

    /// Also serve the AWS JSON 1.1 endpoint on `listener` while running.
    pub fn with_aws(mut self, listener: TcpListener) -> Self {
        self.aws = Some(listener);
        self
    }

    /// Also serve peer sites on `listener` (the `[replication]` section's listener).
    pub fn with_replication(mut self, listener: TcpListener) -> Self {
        self.replication = Some(listener);
        self
    }

    /// The site-to-site listener and one sender per peer; none without `[replication]`. On a
    /// cluster every node listens (applying a batch is guarded by the applied position, so
    /// one delivered to two nodes is applied once), each sender is the duty
    /// `replication-<region>`, and every node follows the log's state in the store.
    fn start_replication(
        &mut self,
        in_flight: &Arc<InFlight>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
        let (Some(config), Some(outbox)) = (&self.config.replication, &self.outbox) else {
            return Ok(Vec::new());
        };
        let listener = self.replication.take().ok_or_else(|| {
            StartError::Access("replication is configured but its listener is not bound".into())
        })?;
        let server = tonic::transport::Server::builder()
            .tls_config(site::server_tls(config).map_err(StartError::Access)?)?
            // A peer's batch is applied and audited even if the peer stops waiting.
            .layer(DetachLayer(Arc::clone(in_flight)))
            .add_service(
                SiteReplicationServiceServer::new(SiteApi::new(
                    Arc::clone(&self.secrets),
                    Arc::clone(&self.gate),
                    config,
                ))
                .max_decoding_message_size(site::MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming(incoming(listener));
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the replication listener stopped");
            }
        })];
        let tls = site::client_tls(config).map_err(StartError::Access)?;
        for peer in &config.peers {
            let channel = tonic::transport::Endpoint::from_shared(peer.endpoint.clone())
                .map_err(|e| StartError::Access(format!("peer {}: {e}", peer.region)))?
                // The server certificate must carry the peer's identity, whatever host or
                // address the endpoint names: values go to that site and no other.
                .tls_config(tls.clone().domain_name(peer.identity.clone()))?
                .connect_timeout(Duration::from_secs(5))
                .connect_lazy();
            let sender = Sender {
                region: peer.region.clone(),
                peer_principal: crate::access::identity::principal(&peer.identity),
                endpoint: peer.endpoint.clone(),
                gate: Arc::clone(&self.gate),
                outbox: Arc::clone(outbox),
                secrets: Arc::clone(&self.secrets),
                client: SiteReplicationServiceClient::new(channel)
                    .max_decoding_message_size(site::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(site::MAX_MESSAGE_BYTES),
                retry_initial: config.retry_initial,
                retry_max: config.retry_max,
                alarms: self.alarms.clone(),
            };
            // On a cluster, one node at a time sends to each peer.
            let duty = format!("replication-{}", peer.region);
            tasks.push(self.duty(&duty, move || sender.clone().run()));
        }
        if self.node.is_some() {
            // Every node reads what the others appended and what the sender acknowledged.
            tasks.push(tokio::spawn(Arc::clone(outbox).follow(FOLLOW_EVERY)));
        }
        Ok(tasks)
    }

    /// Serves until `shutdown` resolves, then flushes the store.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        // Health is known before the first request is served.
        let initial = root_of_trust_status(&self.kms, ServingStatus::Unknown).await;
        set_health(&health, initial).await;
        let endpoint = listener
            .local_addr()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default();
        if let (Some(node), Ok(bound)) = (&self.node, listener.local_addr())
            && let Err(e) = node.announce(node_address(&self.config, bound)).await
        {
            tracing::warn!(error = %e, "cannot publish this node's address");
        }
        let scheduler = self.scheduler(endpoint);
        let requests = Arc::new(crate::metrics::requests::Requests::default());
        // Every request of every front door runs in its own task, counted here, so its work
        // and audit record finish even when the caller goes (see `api::detach`).
        let in_flight = Arc::new(InFlight::default());
        let metrics = self.metrics.take().map(|listener| {
            let source = crate::metrics::Source {
                kms: Arc::clone(&self.kms),
                store: self.store.clone(),
                start_seconds: self.start.as_secs_f64(),
                requests: Arc::clone(&requests),
                gate: Arc::clone(&self.gate),
                outbox: self.outbox.clone(),
                cluster: self
                    .node
                    .is_some()
                    .then(|| Arc::clone(&self.cluster_health)),
            };
            tokio::spawn(crate::metrics::serve(listener, Arc::new(source)))
        });
        let aws = match self.aws.take() {
            Some(listener) => {
                let handlers = crate::aws::operations::Handlers {
                    kms: KmsApi::new(Arc::clone(&self.kms), Arc::clone(&self.gate)),
                    secrets: SecretsApi::new(Arc::clone(&self.secrets), Arc::clone(&self.gate)),
                };
                let door = Arc::new(crate::aws::FrontDoor::new(
                    handlers,
                    Arc::clone(&self.gate),
                    crate::aws::signing::AccessKeys::from_config(&self.config)?,
                    Arc::clone(&requests),
                    Arc::clone(&in_flight),
                    self.config.aws_endpoint.clone(),
                ));
                let accepting = tokio::spawn(crate::aws::serve(listener, Arc::clone(&door)));
                Some(accepting)
            }
            None => None,
        };
        let replication = self.start_replication(&in_flight)?;
        let scheduler = Arc::new(scheduler);
        let (kms, secrets) = (Arc::clone(&self.kms), Arc::clone(&self.secrets));
        let purge_every = self.config.kms.deletion_check_interval;
        let tasks = [
            self.duty("rotation", move || {
                let scheduler = Arc::clone(&scheduler);
                async move { scheduler.run().await }
            }),
            tokio::spawn(watch_root_of_trust(
                Arc::clone(&self.kms),
                health,
                self.config.health.check_interval,
                initial,
            )),
            self.duty("purge", move || {
                purge_expired(Arc::clone(&kms), Arc::clone(&secrets), purge_every)
            }),
        ];
        let watch = self.watch_cluster();
        let signalled = Arc::new(tokio::sync::Notify::new());
        let notify = Arc::clone(&signalled);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &self.config.tls {
            let tls = crate::access::tls::server_config(tls).map_err(StartError::Access)?;
            builder = builder.tls_config(tls)?;
        }
        let gate = &self.gate;
        let serve = builder
            .layer(DetachLayer(Arc::clone(&in_flight)))
            .layer(crate::metrics::requests::CountLayer(requests))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                KeyManagementServiceServer::new(KmsApi::new(
                    Arc::clone(&self.kms),
                    Arc::clone(gate),
                ))
                .max_decoding_message_size(crate::api::MAX_REQUEST_BYTES),
            )
            .add_service(
                SecretsManagerServiceServer::new(SecretsApi::new(
                    Arc::clone(&self.secrets),
                    Arc::clone(gate),
                ))
                .max_decoding_message_size(crate::api::MAX_REQUEST_BYTES),
            )
            .add_service(AuditServiceServer::new(AuditApi::new(
                Arc::clone(gate),
                Arc::clone(&self.mac),
                self.config.audit.path(&self.config.data_dir),
            )))
            .add_service(BackupServiceServer::new(BackupApi::new(
                Arc::clone(gate),
                self.store.clone(),
                self.kms.hardware().clone(),
                Arc::clone(&self.clock),
                self.kms.escrow().cloned(),
            )))
            .serve_with_incoming_shutdown(incoming(listener), async move {
                shutdown.await;
                notify.notify_one();
            });
        let outcome = tokio::select! {
            outcome = serve => outcome,
            () = async {
                signalled.notified().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown; closing them");
                Ok(())
            }
        };
        if let Some(accepting) = aws {
            accepting.abort();
        }
        // No request's work may outlive its audit record: wait for every detached request
        // (the callers of some may be gone) before the log closes.
        if !in_flight.idle_within(SHUTDOWN_GRACE).await {
            tracing::warn!("requests still running {SHUTDOWN_GRACE:?} after shutdown");
        }
        for task in tasks
            .into_iter()
            .chain(metrics)
            .chain(replication)
            .chain(watch)
        {
            task.abort();
        }
        if let Some(node) = &self.node {
            node.leave().await;
        }
        let audit = self.gate.audit().clone();
        let node_id = self.node.as_ref().map(|n| n.id());
        match audit.clone().close().await {
            Ok(()) => save_audit_head(&self.store, node_id, &audit.head()).await,
            Err(e) => {
                tracing::warn!(error = %e, "the audit log's final checkpoint was not written")
            }
        }
        self.store.flush()?;
        tracing::info!("stopped");
        Ok(outcome?)
    }
}

impl Keyward {
    /// Runs a background duty: on a cluster, only while this node holds it (see `cluster`);
    /// on the embedded store, always.
    fn duty<F, Fut>(&self, name: &str, mut work: F) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.duties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_owned());
        match &self.node {
            Some(node) => tokio::spawn(node.duty(name).run(work)),
            None => tokio::spawn(work()),
        }
    }

    /// On a cluster, the task that watches etcd and the duties' holders for every node.
    fn watch_cluster(&self) -> Option<tokio::task::JoinHandle<()>> {
        let (node, StoreConfig::Etcd(etcd), Some(store)) =
            (self.node.as_ref()?, &self.config.store, self.store.etcd())
        else {
            return None;
        };
        let duties = self
            .duties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some(tokio::spawn(watch_cluster(
            store.clone(),
            node.id().to_owned(),
            duties,
            Arc::clone(&self.cluster_health),
            self.alarms.clone(),
            (etcd.lease_ttl / 5).max(Duration::from_millis(500)),
        )))
    }

    /// The rotation scheduler for this server; exec rotators reach it at `endpoint`. `run`
    /// runs one in the background; tests drive one pass at a time.
    pub fn scheduler(&self, endpoint: String) -> Scheduler {
        let rotation = &self.config.rotation;
        let exec = rotation
            .exec
            .iter()
            .map(|(name, exec)| {
                let settings = ExecSettings {
                    command: exec.command.clone(),
                    args: exec.args.clone(),
                    timeout: exec.timeout,
                    secrets: exec.secrets.clone(),
                    env: exec.env.clone(),
                };
                (name.clone(), settings)
            })
            .collect();
        Scheduler {
            secrets: Arc::clone(&self.secrets),
            kms: Arc::clone(&self.kms),
            rotators: Rotators::new(exec, endpoint).with_credentials(self.gate.step_credentials()),
            settings: RotationSettings {
                check_interval: rotation.check_interval,
                retry_initial_secs: whole_secs(rotation.retry_initial),
                retry_max_secs: whole_secs(rotation.retry_max),
                step_timeout: rotation.step_timeout,
            },
            clock: Arc::clone(&self.clock),
        }
    }
}

/// The scheduler counts in epoch seconds; past `i64::MAX` seconds is never anyway.
fn whole_secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

async fn open_audit(
    config: &Config,
    store: &Store,
    node: Option<String>,
    mac: Arc<RootMac>,
) -> Result<AuditLog, StartError> {
    let path = config.audit.path(&config.data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError::Audit(format!("cannot create {}: {e}", dir.display())))?;
    }
    let settings = AuditSettings {
        path,
        checkpoint_every: config.audit.checkpoint_every,
        checkpoint_interval: config.audit.checkpoint_interval,
        sync: match config.audit.sync {
            AuditSync::EveryBatch => SyncMode::EveryBatch,
            AuditSync::Checkpoint => SyncMode::Checkpoint,
        },
        last_closed: closed_audit_head(store, node.as_deref())
            .await
            .map_err(StartError::Audit)?,
        node: node.clone(),
    };
    let (log, task) = AuditLog::open(settings, mac)
        .await
        .map_err(|e| StartError::Audit(e.to_string()))?;
    // The log has grown by its start record: from here on it must reach at least this far,
    // whether the server closes cleanly or crashes.
    save_audit_head(store, node.as_deref(), &log.head()).await;
    tokio::spawn(task.run());
    for (mark, action, source) in OFFLINE_CHANGES {
        audit_offline_change(store, &log, mark, action, source).await?;
    }
    Ok(log)
}

/// Changes the CLI makes to a stopped server's store, where no log is written: each leaves a
/// mark (what it did) that the first server to start records in its log and then clears.
const OFFLINE_CHANGES: &[(&[u8], &str, &str)] = &[
    (
        keyspace::BACKUP_RESTORED,
        "keyward:RestoreBackup",
        "keyward restore",
    ),
    (
        keyspace::ESCROW_ADDED,
        "keyward:EscrowExistingKeys",
        "keyward escrow add-existing",
    ),
];

async fn audit_offline_change(
    store: &Store,
    log: &AuditLog,
    key: &[u8],
    action: &str,
    source: &str,
) -> Result<(), StartError> {
    let Some(mark) = store.get(key).await? else {
        return Ok(());
    };
    let event = crate::audit::AuditEvent {
        api: "cli",
        principal: "local".into(),
        source: source.into(),
        action: action.into(),
        resource: "*".into(),
        outcome: crate::audit::Outcome::Success,
        reason: Some(String::from_utf8_lossy(&mark.value).into_owned()),
        ..Default::default()
    };
    log.append(event.capped())
        .await
        .map_err(|e| StartError::Audit(format!("recording `{source}`: {e}")))?;
    let cleared = store
        .commit(vec![Op::Delete {
            key: key.to_vec(),
            expect: Expect::Version(mark.version),
        }])
        .await;
    match cleared {
        // Another node of a cluster recorded it too: both logs say so, which is true.
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
