//! Leader election on a real kube-apiserver: two contenders for one Lease, through the loop the binary runs
//! (`canal_operator::leader::run`). One leads at a time; when the leader shuts down it releases the Lease (clears
//! the holder), and the standby takes over when it next looks, which kube-lease-manager does at the old expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use canal_e2e::control_plane::ControlPlane;
use canal_operator::leader::{self, LeaseSettings};
use k8s_openapi::api::coordination::v1::Lease;
use tokio_util::sync::CancellationToken;

struct Contender {
    shutdown: CancellationToken,
    leading: Arc<AtomicBool>,
    terms: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Result<(), leader::LeaderError>>,
}

fn contend(client: kube::Client, identity: &str) -> Contender {
    // Short, so the standby's next look (at the old expiry) comes soon.
    let settings = LeaseSettings {
        duration_seconds: 8,
        grace_seconds: 2,
        ..LeaseSettings::new("default", "canal-operator-leader", identity)
    };
    let shutdown = CancellationToken::new();
    let leading = Arc::new(AtomicBool::new(false));
    let terms = Arc::new(AtomicUsize::new(0));
    let task = {
        let (shutdown, leading, terms) = (shutdown.clone(), leading.clone(), terms.clone());
        tokio::spawn(async move {
            leader::run(client, &settings, shutdown, &leading, |stop| {
                terms.fetch_add(1, Ordering::SeqCst);
                stop
            })
            .await
        })
    };
    Contender {
        shutdown,
        leading,
        terms,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_hands_over_on_shutdown() {
    let control_plane = ControlPlane::start();
    let a = contend(control_plane.client().await, "operator-a");
    let b = contend(control_plane.client().await, "operator-b");

    let first = canal_e2e::eventually(Duration::from_secs(60), "one contender leads", async || {
        match (a.leading.load(Ordering::SeqCst), b.leading.load(Ordering::SeqCst)) {
            (true, false) => Ok("a"),
            (false, true) => Ok("b"),
            (true, true) => panic!("two leaders at once"),
            (false, false) => Err("nobody leads yet".to_string()),
        }
    })
    .await;
    // Renewals keep the same leader, and the other never starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (leader, standby) = if first == "a" { (a, b) } else { (b, a) };
    assert!(leader.leading.load(Ordering::SeqCst) && !standby.leading.load(Ordering::SeqCst));
    assert_eq!(standby.terms.load(Ordering::SeqCst), 0, "the standby never reconciled");

    let stopped = Instant::now();
    leader.shutdown.cancel();
    leader.task.await.unwrap().expect("the leader stops cleanly");
    assert!(!leader.leading.load(Ordering::SeqCst));
    let leases: kube::Api<Lease> = kube::Api::namespaced(control_plane.client().await, "default");
    let lease = leases.get("canal-operator-leader").await.unwrap();
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_ne!(holder, Some(format!("operator-{first}")), "released on shutdown");
    canal_e2e::eventually(Duration::from_secs(30), "the standby takes over", async || {
        if standby.leading.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await;
    eprintln!("takeover {:.1?} after the leader's shutdown", stopped.elapsed());
    assert_eq!(standby.terms.load(Ordering::SeqCst), 1);

    standby.shutdown.cancel();
    standby.task.await.unwrap().expect("the new leader stops cleanly");
}
