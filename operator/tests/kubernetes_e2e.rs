//! End to end on a real Kubernetes API server, driven through `kubectl` as a user would.
//!
//! Real parts: etcd, kube-apiserver (client certificates, RBAC) and kube-controller-manager (StatefulSet,
//! garbage collector, ServiceAccount token controllers) built from Go modules (`e2e/k8s/`); the Helm chart rendered
//! offline and applied with `kubectl apply --server-side`; MariaDB; a 3-node ZooKeeper ensemble. The operator
//! runs from the chart's own Deployment with its ServiceAccount's token, so the chart's RBAC is what is tested.
//! The one stand-in is [`ProcessKubelet`], which runs Pods as processes (see its module for what it does and
//! does not do).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canal_e2e::control_plane::ControlPlane;
use canal_e2e::kubelet::{KubeletConfig, ProcessKubelet};
use canal_e2e::{MariaDb, ZooKeeper, repo_root};
use canal_instance::client::{ClusterClient, GetWait};
use canal_instance::proto::EntryType;
use canal_instance::proto::entry::RowChange;
use mysql_async::prelude::Queryable;
use prost::Message;
use serde_json::Value;

const NAMESPACE: &str = "shop";
const OPERATOR_NAMESPACE: &str = "canal-system";
const SCHEMA: &str = "shop";
/// Generous bounds: the machines are shared, and a rolling update restarts both pods one after the other.
const SETTLE: Duration = Duration::from_secs(120);

fn binary(name: &str) -> PathBuf {
    // The workspace's binaries sit next to each other; `make e2e` builds them all first.
    let dir = Path::new(env!("CARGO_BIN_EXE_canal-operator"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

async fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            eprintln!("{what}: after {:.1?}", started.elapsed());
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kubectl get canalinstances` as a table: column name → value, for the row of `name`.
fn canal_row(cp: &ControlPlane, name: &str) -> Option<BTreeMap<String, String>> {
    let output = cp.kubectl(&["get", "canalinstances", "-n", NAMESPACE]);
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next()?;
    // Columns are aligned: cut each row at the header's column starts.
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|(i, c)| !c.is_whitespace() && (*i == 0 || header[..*i].ends_with(' ')))
        .map(|(i, _)| i)
        .collect();
    let row = lines.find(|l| l.split_whitespace().next() == Some(name))?;
    let mut columns = BTreeMap::new();
    for (n, start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(row.len()).min(row.len());
        let key = header[*start..starts.get(n + 1).copied().unwrap_or(header.len())].trim();
        let value = row.get(*start..end).unwrap_or_default().trim();
        columns.insert(key.to_string(), value.to_string());
    }
    Some(columns)
}

fn json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cp.kubectl_ok(&all)).unwrap()
}

/// Consumes `orders`' changes through ZooKeeper discovery, acknowledging as it goes; records `table:id`.
fn start_consumer(
    zookeeper: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut client = ClusterClient::new(zookeeper, "orders", "1001", "");
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let message = match client
                .get_without_ack(100, GetWait::Up(Duration::from_millis(200)))
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("consumer: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if message.batch_id == -1 {
                continue;
            }
            let mut rows = Vec::new();
            for entry in &message.entries {
                if entry.entry_type() != EntryType::Rowdata {
                    continue;
                }
                let table = entry.header.clone().unwrap_or_default().table_name().to_string();
                let change = RowChange::decode(entry.store_value.clone().unwrap_or_default()).unwrap();
                for row in change.row_datas {
                    let id = row
                        .after_columns
                        .iter()
                        .find(|c| c.name() == "id")
                        .map(|c| c.value().to_string());
                    rows.push(format!("{table}:{}", id.unwrap_or_default()));
                }
            }
            // Rows count as consumed once their batch is acknowledged.
            if client.ack(message.batch_id).await.is_ok() {
                record.lock().unwrap().extend(rows);
            }
        }
    });
    (seen, task)
}

async fn insert(db: &MariaDb, table: &str, ids: std::ops::RangeInclusive<u32>) {
    let mut conn = db.admin().await;
    for id in ids {
        conn.query_drop(format!("INSERT INTO {SCHEMA}.{table} VALUES ({id})"))
            .await
            .unwrap();
    }
}

fn consumed(seen: &Mutex<Vec<String>>, table: &str) -> BTreeSet<u32> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.strip_prefix(&format!("{table}:")).and_then(|id| id.parse().ok()))
        .collect()
}

async fn all_consumed(seen: &Mutex<Vec<String>>, table: &str, ids: std::ops::RangeInclusive<u32>, what: &str) {
    eventually(what, SETTLE, || {
        let got = consumed(seen, table);
        ids.clone().all(|id| got.contains(&id)).then_some(())
    })
    .await;
}

fn active_pod(cp: &ControlPlane) -> Option<String> {
    let ci = json(cp, &["get", "canalinstance", "orders", "-n", NAMESPACE]);
    ci["status"]["activePod"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canal_instance_on_a_real_api_server() {
    let db = MariaDb::shared();
    {
        let mut conn = db.admin().await;
        conn.query_drop(format!("DROP DATABASE IF EXISTS {SCHEMA}"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE DATABASE {SCHEMA}")).await.unwrap();
        for table in ["orders", "customers"] {
            conn.query_drop(format!("CREATE TABLE {SCHEMA}.{table} (id INT PRIMARY KEY)"))
                .await
                .unwrap();
        }
    }
    let zookeeper = ZooKeeper::ensemble();
    let cp = ControlPlane::start();
    let admin = cp.client().await;

    // The chart, rendered offline and applied server-side; the operator runs under its ServiceAccount.
    let work = tempfile::Builder::new()
        .prefix("canal-k8s-e2e-")
        .tempdir()
        .unwrap()
        .keep();
    let rendered = work.join("chart.yaml");
    let render = canal_e2e::render_chart("-", &rendered);
    assert!(render.status.success(), "{}", String::from_utf8_lossy(&render.stderr));
    // What `helm install` does: the chart's crds/ first, then the templates.
    let crds = repo_root().join("charts/canal-operator/crds");
    cp.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/canalinstances.canal.rs",
        "--timeout=60s",
    ]);
    cp.kubectl_ok(&["create", "namespace", OPERATOR_NAMESPACE]);
    cp.kubectl_ok(&["apply", "--server-side", "-f", rendered.to_str().unwrap()]);
    cp.kubectl_ok(&["create", "namespace", NAMESPACE]);

    let kubelet = ProcessKubelet::start(
        admin.clone(),
        KubeletConfig {
            node: "process-node".into(),
            namespaces: vec![OPERATOR_NAMESPACE.into(), NAMESPACE.into()],
            images: BTreeMap::from([
                ("canal-rs/canal-operator".into(), binary("canal-operator")),
                ("canal-rs/canal-instance".into(), binary("canal-instance")),
            ]),
            work_dir: work.join("pods"),
            api_server: cp.api_url(),
            ca_file: cp.ca_file(),
        },
    )
    .await;
    eventually("the operator Deployment is available", SETTLE, || {
        let d = json(&cp, &["get", "deployment", "canal-operator", "-n", OPERATOR_NAMESPACE]);
        (d["status"]["availableReplicas"].as_i64() == Some(2)).then_some(())
    })
    .await;

    // kubectl apply -f examples/canalinstance.yaml, pointed at the local MariaDB and ZooKeeper (the example names
    // in-cluster Services, which nothing resolves here) and with the test user's password.
    let example = std::fs::read_to_string(repo_root().join("examples/canalinstance.yaml"))
        .unwrap()
        .replace("password: change-me", "password: canal")
        .replace("mysql.default.svc:3306", &db.address())
        .replace("zookeeper.default.svc:2181", &zookeeper.servers);
    let applied = cp.kubectl_with_input(&["apply", "-n", NAMESPACE, "-f", "-"], &example);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));

    let row = eventually(
        "kubectl get canalinstances shows an active pod and READY 2/2",
        SETTLE,
        || {
            let row = canal_row(&cp, "orders")?;
            (row.get("READY").map(String::as_str) == Some("2/2") && row.get("ACTIVE").is_some_and(|a| !a.is_empty()))
                .then_some(row)
        },
    )
    .await;
    eprintln!("kubectl get canalinstances: {row:?}");
    let first_active = row["ACTIVE"].clone();

    // Rows reach a client that finds the active pod through ZooKeeper.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen, consumer) = start_consumer(&zookeeper.servers, stop.clone());
    insert(db, "orders", 1..=20).await;
    all_consumed(&seen, "orders", 1..=20, "rows 1-20 consumed").await;
    let position = eventually("kubectl get canalinstances shows the binlog position", SETTLE, || {
        let position = canal_row(&cp, "orders")?.get("POSITION").cloned()?;
        position.contains(':').then_some(position)
    })
    .await;
    eprintln!("position: {position}");
    let consumers = eventually("status.consumers names the client", SETTLE, || {
        let ci = json(&cp, &["get", "canalinstance", "orders", "-n", NAMESPACE]);
        ci["status"]["consumers"].as_array().filter(|c| !c.is_empty()).cloned()
    })
    .await;
    assert_eq!(consumers[0]["clientId"], 1001);

    // Kill the active pod's process. The stand-in restarts it at once, as the kubelet does a first time, and by
    // canal's rule the previous owner takes its node back once its old session expires: same pod, no row lost.
    let kill = |pod: &str| {
        let pid = kubelet.pod(NAMESPACE, pod).and_then(|p| p.pid).expect("the pod runs");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    };
    kill(&first_active);
    insert(db, "orders", 21..=30).await;
    all_consumed(&seen, "orders", 1..=30, "rows 1-30 consumed after a crash and restart").await;
    assert_eq!(active_pod(&cp).as_deref(), Some(first_active.as_str()));
    assert!(kubelet.pod(NAMESPACE, &first_active).unwrap().restarts >= 1);

    // Kill it again and keep it down (a crash loop): the standby takes over after the session timeout and the
    // failover delay, the status names it, and no row is lost.
    kubelet.hold_restarts(NAMESPACE, &first_active, true);
    let crashed = Instant::now();
    kill(&first_active);
    let second_active = eventually("the status names the other pod after a crash", SETTLE, || {
        active_pod(&cp).filter(|a| *a != first_active)
    })
    .await;
    eprintln!("crash failover shown in status after {:.1?}", crashed.elapsed());
    insert(db, "orders", 31..=40).await;
    all_consumed(&seen, "orders", 1..=40, "rows 1-40 consumed after the crash failover").await;
    let ci = json(&cp, &["get", "canalinstance", "orders", "-n", NAMESPACE]);
    assert!(ci["status"]["failovers"].as_i64().unwrap_or(0) >= 1, "{}", ci["status"]);
    kubelet.hold_restarts(NAMESPACE, &first_active, false);

    // kubectl delete pod of the active one: graceful handover.
    eventually("both pods ready again", SETTLE, || {
        (canal_row(&cp, "orders")?.get("READY").map(String::as_str) == Some("2/2")).then_some(())
    })
    .await;
    cp.kubectl_ok(&["delete", "pod", &second_active, "-n", NAMESPACE, "--wait=false"]);
    let third_active = eventually(
        "the status names the other pod after kubectl delete pod",
        SETTLE,
        || active_pod(&cp).filter(|a| *a != second_active),
    )
    .await;
    eprintln!("active: {first_active} -> {second_active} -> {third_active}");
    insert(db, "orders", 41..=60).await;
    all_consumed(
        &seen,
        "orders",
        1..=60,
        "rows 1-60 consumed after the graceful handover",
    )
    .await;
    let log = std::fs::read_to_string(kubelet.pod(NAMESPACE, &third_active).unwrap().log).unwrap_or_default();
    assert!(log.contains("became the active instance"), "{log}");

    // Edit the filter: the change rolls out and the status shows the new generation observed.
    eventually("both pods ready before the edit", SETTLE, || {
        (canal_row(&cp, "orders")?.get("READY").map(String::as_str) == Some("2/2")).then_some(())
    })
    .await;
    cp.kubectl_ok(&[
        "patch",
        "canalinstance",
        "orders",
        "-n",
        NAMESPACE,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"filter":{"include":"shop\\.orders"}}}"#,
    ]);
    eventually(
        "the rollout finishes and the new generation is observed",
        SETTLE,
        || {
            let ci = json(&cp, &["get", "canalinstance", "orders", "-n", NAMESPACE]);
            let sts = json(&cp, &["get", "statefulset", "orders", "-n", NAMESPACE]);
            let generation = ci["metadata"]["generation"].as_i64()?;
            let observed = ci["status"]["observedGeneration"].as_i64()?;
            let status = &sts["status"];
            let rolled = status["updateRevision"] == status["currentRevision"]
                && status["updatedReplicas"].as_i64() == Some(2)
                && status["readyReplicas"].as_i64() == Some(2)
                && sts["metadata"]["generation"] == status["observedGeneration"];
            (generation >= 2 && observed == generation && rolled).then_some(())
        },
    )
    .await;
    insert(db, "customers", 1..=5).await;
    insert(db, "orders", 61..=70).await;
    all_consumed(&seen, "orders", 1..=70, "rows 1-70 consumed after the rollout").await;
    assert!(
        consumed(&seen, "customers").is_empty(),
        "the new filter leaves customers out"
    );

    // An invalid CanalInstance is refused by the API server with the CEL message.
    let invalid = example
        .replace("replicas: 2", "replicas: 9")
        .replace("name: orders\nspec", "name: too-many\nspec");
    let refused = cp.kubectl_with_input(&["apply", "-n", NAMESPACE, "-f", "-"], &invalid);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("replicas must be between 1 and 5"), "{stderr}");

    // Under the Delete policy, kubectl delete canalinstance removes the children and the ZooKeeper nodes.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    consumer.await.unwrap();
    cp.kubectl_ok(&[
        "patch",
        "canalinstance",
        "orders",
        "-n",
        NAMESPACE,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"zookeeperDeletionPolicy":"Delete"}}"#,
    ]);
    cp.kubectl_ok(&["delete", "canalinstance", "orders", "-n", NAMESPACE, "--timeout=120s"]);
    eventually("the children are garbage-collected", SETTLE, || {
        let left = cp.kubectl_ok(&[
            "get",
            "statefulsets,configmaps,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/instance=orders",
            "-o",
            "name",
        ]);
        left.trim().is_empty().then_some(())
    })
    .await;
    eventually("the pods' processes are stopped", SETTLE, || {
        kubelet
            .running()
            .iter()
            .all(|p| !p.starts_with(&format!("{NAMESPACE}/")))
            .then_some(())
    })
    .await;
    let zk_config: canal_api::ZooKeeperConfig =
        serde_json::from_value(serde_json::json!({"servers": zookeeper.servers})).unwrap();
    let zk = canal_instance::zk::connect(&zk_config).await.unwrap();
    assert_eq!(
        zk.check_stat("/otter/canal/destinations/orders").await.unwrap(),
        None,
        "the destination's ZooKeeper nodes are deleted"
    );

    kubelet.stop().await;
}
