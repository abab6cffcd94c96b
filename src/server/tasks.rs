//! The server's background tasks: the health status kept in step with the root of trust, and
//! the purge of keys and secrets whose deletion windows have ended.

use crate::service::KmsService;
use crate::service::secrets::SecretsService;
use std::sync::Arc;
use std::time::Duration;
use tonic_health::ServingStatus;

pub(super) const SERVICE_NAMES: [&str; 3] = [
    "keyward.v1.KeyManagementService",
    "keyward.v1.SecretsManagerService",
    "keyward.v1.AuditService",
];

/// Keeps the gRPC health status in step with the root of trust: NOT_SERVING while it cannot
/// be used, SERVING again once it can.
pub(super) async fn watch_root_of_trust(
    kms: Arc<KmsService>,
    health: tonic_health::server::HealthReporter,
    every: Duration,
    mut last: ServingStatus,
) {
    loop {
        tokio::time::sleep(every).await;
        let status = root_of_trust_status(&kms, last).await;
        if status != last {
            tracing::info!(%status, "health changed");
            set_health(&health, status).await;
            last = status;
        }
    }
}

/// SERVING when the root of trust answers; `last` only decides whether a failure is news.
pub(super) async fn root_of_trust_status(kms: &KmsService, last: ServingStatus) -> ServingStatus {
    match kms.check_root_of_trust().await {
        Ok(()) => ServingStatus::Serving,
        Err(e) => {
            if last != ServingStatus::NotServing {
                tracing::warn!(error = %e, "root of trust check failed");
            }
            ServingStatus::NotServing
        }
    }
}

pub(super) async fn set_health(
    health: &tonic_health::server::HealthReporter,
    status: ServingStatus,
) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Destroys keys and secrets whose deletion windows have ended.
pub(super) async fn purge_expired(
    kms: Arc<KmsService>,
    secrets: Arc<SecretsService>,
    every: Duration,
) {
    loop {
        match kms.purge_expired_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "purged keys past their deletion date"),
            Err(e) => tracing::warn!(error = %e, "purging expired keys failed; will retry"),
        }
        match secrets.purge_deleted().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(secrets = n, "purged secrets past their recovery window"),
            Err(e) => tracing::warn!(error = %e, "purging deleted secrets failed; will retry"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Every node watches the cluster: whether etcd answers, and whether each duty has a holder.
/// Kept in `health` for metrics, and fires the `store_unreachable` and `duty_without_holder`
/// alarms once per outage.
pub(super) async fn watch_cluster(
    store: crate::store::EtcdStore,
    node: String,
    duties: Vec<String>,
    health: Arc<crate::cluster::Health>,
    alarms: Option<Arc<crate::alarms::Alarms>>,
    every: Duration,
) {
    use crate::alarms::RuleKind;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Instant;
    let mut etcd_down: Option<Instant> = None;
    let mut unheld: HashMap<String, Instant> = HashMap::new();
    loop {
        match crate::cluster::snapshot(&store).await {
            Ok((_, holders)) => {
                store.refresh_size().await;
                if etcd_down.take().is_some() {
                    tracing::info!("etcd reachable again");
                }
                health.etcd_reachable.store(true, Relaxed);
                if let Some(alarms) = &alarms {
                    alarms.recovered(RuleKind::StoreUnreachable, "etcd");
                }
                let held: HashMap<&str, &str> = holders
                    .iter()
                    .map(|(duty, holder)| (duty.as_str(), holder.as_str()))
                    .collect();
                let mut missing = 0;
                for duty in &duties {
                    if held.contains_key(duty.as_str()) {
                        unheld.remove(duty);
                        if let Some(alarms) = &alarms {
                            alarms.recovered(RuleKind::DutyWithoutHolder, duty);
                        }
                        continue;
                    }
                    missing += 1;
                    let since = *unheld.entry(duty.clone()).or_insert_with(Instant::now);
                    if let Some(alarms) = &alarms {
                        let message = format!(
                            "no node has held the {duty} duty for {}s",
                            since.elapsed().as_secs()
                        );
                        alarms.outage(RuleKind::DutyWithoutHolder, duty, since.elapsed(), &message);
                    }
                }
                health.duties_without_holder.store(missing, Relaxed);
                let here = held.values().filter(|holder| **holder == node).count();
                health.duties_held_here.store(here as u64, Relaxed);
            }
            Err(e) => {
                let since = *etcd_down.get_or_insert_with(|| {
                    tracing::warn!(error = %e, "etcd unreachable");
                    Instant::now()
                });
                health.etcd_reachable.store(false, Relaxed);
                if let Some(alarms) = &alarms {
                    let message = format!(
                        "this node has not reached etcd for {}s: {e}",
                        since.elapsed().as_secs()
                    );
                    alarms.outage(
                        RuleKind::StoreUnreachable,
                        "etcd",
                        since.elapsed(),
                        &message,
                    );
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}
