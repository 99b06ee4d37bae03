//! Leader election: several operator replicas may run, and only the holder of a `coordination.k8s.io` Lease
//! reconciles. [`follow`] is the loop (start leading when the lease is won, stop when it is lost or at shutdown,
//! and start again on the next win); [`run`] connects it to a kube-lease-manager Lease and releases the lease on
//! the way out. A running standby still takes over only when it next looks (kube-lease-manager sleeps until the
//! old expiry), but a replica that starts meanwhile, such as the new pod of a rolling update, finds the lease free
//! and leads at once instead of waiting for it to expire.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Resolves when the replica must stop leading.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// Why leader election ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader lease: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The task that renews the lease stopped; nobody would tell this replica that it lost the lease.
    #[error("the leader lease task ended")]
    Ended,
}

/// Which Lease to contend for, and as whom.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Unique per replica; the pod name in Kubernetes.
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration_seconds: u64,
    /// Extra time before a lease is considered expired, for clock skew.
    pub grace_seconds: u64,
}

impl LeaseSettings {
    /// The operator's defaults: a 15 s lease with 5 s grace.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration_seconds: 15,
            grace_seconds: 5,
        }
    }
}

/// Runs `lead(stop)` each time `leader` turns true, until `shutdown`. `stop` resolves when `leader` turns false
/// or at shutdown; `leading` mirrors whether `lead` is running (for `/readyz`).
pub async fn follow<F, Fut>(
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
    leading: &AtomicBool,
    mut lead: F,
) -> Result<(), LeaderError>
where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        while !*leader.borrow_and_update() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                changed = leader.changed() => changed.map_err(|_| LeaderError::Ended)?,
            }
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
        tracing::info!("leading: reconciling CanalInstances");
        leading.store(true, Ordering::Relaxed);
        let stopping = shutdown.clone();
        let mut lost = leader.clone();
        let stop: Stop = Box::pin(async move {
            tokio::select! {
                _ = stopping.cancelled() => {}
                _ = async { while *lost.borrow_and_update() { if lost.changed().await.is_err() { break } } } => {
                    tracing::warn!("lost the leader lease; stopping reconciliation");
                }
            }
        });
        lead(stop).await;
        leading.store(false, Ordering::Relaxed);
    }
}

/// Contends for the Lease of `settings` and [`follow`]s it; releases the lease when done.
pub async fn run<F, Fut>(
    client: Client,
    settings: &LeaseSettings,
    shutdown: CancellationToken,
    leading: &AtomicBool,
    lead: F,
) -> Result<(), LeaderError>
where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_seconds)
        .with_grace(settings.grace_seconds)
        .build()
        .await?;
    let (leader, lease_task) = manager.watch().await;
    // `follow` owns the receiver; when it returns the receiver is dropped, which ends the lease task.
    let result = follow(leader, shutdown, leading, lead).await;
    match lease_task.await {
        Ok(Ok(manager)) => {
            if let Err(e) = manager.release().await {
                tracing::warn!(error = %e, "cannot release the leader lease");
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "the leader lease task failed"),
        Err(e) => tracing::warn!(error = %e, "the leader lease task panicked"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Waits (up to 5 s) until `condition` holds.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn leads_only_while_elected_and_again_after_a_new_win() {
        let (elected, leader) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let leading = Arc::new(AtomicBool::new(false));
        let (started, stopped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = {
            let (shutdown, leading, started, stopped) =
                (shutdown.clone(), leading.clone(), started.clone(), stopped.clone());
            tokio::spawn(async move {
                follow(leader, shutdown, &leading, |stop| {
                    let (started, stopped) = (started.clone(), stopped.clone());
                    async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        stop.await;
                        stopped.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "a standby does not reconcile");
        assert!(!leading.load(Ordering::SeqCst));

        elected.send(true).unwrap();
        until("leading after the win", || started.load(Ordering::SeqCst) == 1).await;
        assert!(leading.load(Ordering::SeqCst));

        elected.send(false).unwrap();
        until("stopped after losing", || stopped.load(Ordering::SeqCst) == 1).await;
        until("not leading", || !leading.load(Ordering::SeqCst)).await;

        elected.send(true).unwrap();
        until("leading after the next win", || started.load(Ordering::SeqCst) == 2).await;

        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(stopped.load(Ordering::SeqCst), 2, "shutdown stops the leader too");
        assert!(!leading.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_dead_lease_task_is_an_error_not_a_silent_standby() {
        let (elected, leader) = watch::channel(false);
        drop(elected);
        let result = follow(leader, CancellationToken::new(), &AtomicBool::new(false), |stop| stop).await;
        assert!(matches!(result, Err(LeaderError::Ended)), "{result:?}");
    }
}
