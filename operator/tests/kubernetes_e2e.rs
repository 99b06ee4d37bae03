//! End to end on a real Kubernetes API server, driven through `kubectl` as a user would.
//!
//! The scenarios run in one of three places, with the same code:
//! - **a real node** (`make e2e`, part of `make test`, wherever the machine can run one; CI is such a machine):
//!   etcd, kube-apiserver (client certificates, RBAC, the Node authorizer) and kube-controller-manager built from
//!   Go modules (`e2e/k8s/`), plus a real node from `e2e/k8s/node.sh`: kubelet, kube-scheduler and kube-proxy on
//!   containerd and runc, with bridge CNI pod networking. The images are the ones `make images` builds. MariaDB and
//!   a 3-node ZooKeeper ensemble run on the host from the project's scripts and are reached from the pods through
//!   the bridge. The operator runs from the chart's own Deployment with its ServiceAccount's token, so the chart's
//!   RBAC is what is tested.
//! - **local with the stand-in** (`CANAL_E2E_NODE=process`, or where no real node can run and `CI` is not set):
//!   the same control plane, with [`ProcessKubelet`] running Pods as processes (its module says what it does and
//!   does not do).
//! - **existing cluster** (`CANAL_E2E_CLUSTER=existing`, used by `make e2e-kind` from a Job inside a kind cluster):
//!   the chart is installed with helm beforehand, MariaDB and ZooKeeper run in the cluster at
//!   `CANAL_E2E_MYSQL` and `CANAL_E2E_ZOOKEEPER`, and a process is signalled through an ephemeral debug container.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use canal_e2e::control_plane::{ControlPlane, kubectl_stdout, run_kubectl};
use canal_e2e::kubelet::{KubeletConfig, ProcessKubelet};
use canal_e2e::node::RealNode;
use canal_e2e::prometheus::Prometheus;
use canal_e2e::{MariaDb, TcpProxy, ZooKeeper, repo_root};
use canal_instance::client::{ClusterClient, GetWait};
use canal_instance::protocol::EntryType;
use canal_instance::protocol::entry::RowChange;
use mysql_async::prelude::Queryable;
use prost::Message;
use serde_json::Value;

const NAMESPACE: &str = "shop";
const OPERATOR_NAMESPACE: &str = "canal-system";
const SCHEMA: &str = "shop";
/// Generous bounds: the machines are shared, and a rolling update restarts both pods one after the other.
const SETTLE: Duration = Duration::from_secs(180);

/// Where the scenarios run.
enum Cluster {
    Local {
        control_plane: ControlPlane,
        kubelet: ProcessKubelet,
        /// Helm's home and the stand-in's pod directories.
        work: PathBuf,
        // Kept for their lifetime: dropping them stops the services.
        _zookeeper: ZooKeeper,
    },
    Node {
        // Fields drop in order: the node before the control plane it is joined to.
        node: RealNode,
        control_plane: ControlPlane,
        /// Helm's home.
        work: PathBuf,
        // The pods' way to MariaDB and ZooKeeper, which listen on loopback only.
        _proxies: Vec<TcpProxy>,
        _zookeeper: ZooKeeper,
    },
    Existing,
}

/// What the pods and the test reach: the database (root/root and canal/canal) and ZooKeeper.
struct Services {
    mysql: String,
    zookeeper: String,
}

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

impl Cluster {
    /// Starts the local control plane, the services and the stand-in, and installs the chart; or, in an existing
    /// cluster, finds what `e2e/kind/run.sh` installed.
    async fn start() -> (Cluster, Services) {
        if std::env::var("CANAL_E2E_CLUSTER").as_deref() == Ok("existing") {
            let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"));
            let services = Services {
                mysql: var("CANAL_E2E_MYSQL"),
                zookeeper: var("CANAL_E2E_ZOOKEEPER"),
            };
            let cluster = Cluster::Existing;
            let _ = cluster.kubectl(&["delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true"]);
            cluster.kubectl_ok(&["create", "namespace", NAMESPACE]);
            return (cluster, services);
        }
        let db = MariaDb::shared();
        let zookeeper = ZooKeeper::ensemble();
        let real_node = canal_e2e::node::wanted();
        let images = if real_node {
            canal_e2e::node::built_images()
        } else {
            Vec::new()
        };
        let control_plane = ControlPlane::start();
        if real_node {
            return Self::start_node(control_plane, db, zookeeper, &images).await;
        }
        let services = Services {
            mysql: db.address(),
            zookeeper: zookeeper.servers.clone(),
        };
        let work = canal_e2e::fresh_dir("canal-k8s-e2e-");
        install_chart(&control_plane, &work);
        let kubelet = ProcessKubelet::start(
            control_plane.client().await,
            KubeletConfig {
                node: "process-node".into(),
                namespaces: vec![OPERATOR_NAMESPACE.into(), NAMESPACE.into()],
                images: BTreeMap::from([
                    ("canal-rs/canal-operator".into(), binary("canal-operator")),
                    ("canal-rs/canal-instance".into(), binary("canal-instance")),
                ]),
                work_dir: work.join("pods"),
                api_server: control_plane.api_url(),
                ca_file: control_plane.ca_file(),
            },
        )
        .await;
        let cluster = Cluster::Local {
            control_plane,
            kubelet,
            work,
            _zookeeper: zookeeper,
        };
        (cluster, services)
    }

    /// The control plane, a real node, and proxies on the node's bridge to MariaDB and each ZooKeeper server.
    async fn start_node(
        control_plane: ControlPlane,
        db: &MariaDb,
        zookeeper: ZooKeeper,
        images: &[PathBuf],
    ) -> (Cluster, Services) {
        let node = RealNode::start(&control_plane, images).await;
        let gateway = node.gateway_ip().to_string();
        let mut proxies = vec![TcpProxy::start_on(&format!("{gateway}:0"), &db.address()).await];
        for server in zookeeper.servers.split(',') {
            proxies.push(TcpProxy::start_on(&format!("{gateway}:0"), server).await);
        }
        let services = Services {
            mysql: proxies[0].address.clone(),
            zookeeper: proxies[1..]
                .iter()
                .map(|p| p.address.clone())
                .collect::<Vec<_>>()
                .join(","),
        };
        let work = canal_e2e::fresh_dir("canal-k8s-e2e-");
        install_chart(&control_plane, &work);
        let cluster = Cluster::Node {
            node,
            control_plane,
            work,
            _proxies: proxies,
            _zookeeper: zookeeper,
        };
        (cluster, services)
    }

    /// Runs helm against the local control plane; `None` in an existing cluster, where `e2e/kind/run.sh` installed
    /// the chart.
    fn helm(&self, args: &[&str]) -> Option<String> {
        match self {
            Cluster::Local {
                control_plane, work, ..
            }
            | Cluster::Node {
                control_plane, work, ..
            } => Some(helm(control_plane, work, args)),
            Cluster::Existing => None,
        }
    }

    fn kubectl_with_input(&self, args: &[&str], input: &str) -> Output {
        match self {
            Cluster::Local { control_plane, .. } | Cluster::Node { control_plane, .. } => {
                control_plane.kubectl_with_input(args, input)
            }
            Cluster::Existing => {
                let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
                run_kubectl(Command::new(kubectl), args, input)
            }
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, "")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        kubectl_stdout(args, self.kubectl(args))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).unwrap()
    }

    /// Sends a signal to a pod's canal-instance process: directly here, through an ephemeral container that
    /// shares the container's process namespace in a real cluster (the image starts it under tini, not as PID 1).
    fn signal(&self, pod: &str, signal: &str) {
        match self {
            Cluster::Local { kubelet, .. } => {
                let pid = kubelet.pod(NAMESPACE, pod).and_then(|p| p.pid).expect("the pod runs");
                let _ = Command::new("kill")
                    .args([format!("-{signal}"), pid.to_string()])
                    .status();
            }
            Cluster::Node { node, .. } => {
                // Not the container's first process (tini): canal-instance itself, as seen from the host.
                let found = node.process(NAMESPACE, pod, "canal-instance", "canal-instance");
                match found {
                    Ok(pid) => {
                        let _ = Command::new("kill")
                            .args([format!("-{signal}"), pid.to_string()])
                            .status();
                    }
                    // A hung container may have been restarted by its liveness probe meanwhile.
                    Err(e) if signal == "CONT" => eprintln!("nothing to continue: {e}"),
                    Err(e) => panic!("cannot signal {pod}: {e}"),
                }
            }
            Cluster::Existing => {
                // Not `kill 1`: the kernel drops SIGKILL and SIGSTOP sent to a namespace's init from inside it.
                let command = format!("kill -{signal} $(pidof canal-instance)");
                self.kubectl_ok(&[
                    "debug",
                    pod,
                    "-n",
                    NAMESPACE,
                    "--image=busybox:1.36",
                    "--target=canal-instance",
                    "--profile=general",
                    "--",
                    "sh",
                    "-c",
                    &command,
                ]);
            }
        }
    }

    /// Whether no process of the namespace runs any more (in a real cluster: no pod is left).
    fn nothing_runs_in(&self, namespace: &str) -> bool {
        match self {
            Cluster::Local { kubelet, .. } => kubelet
                .running()
                .iter()
                .all(|p| !p.starts_with(&format!("{namespace}/"))),
            Cluster::Node { node, .. } => {
                let pods = node.crictl(&["pods", "--namespace", namespace, "-q"]);
                pods.status.success() && String::from_utf8_lossy(&pods.stdout).trim().is_empty()
            }
            Cluster::Existing => self
                .kubectl_ok(&["get", "pods", "-n", namespace, "-o", "name"])
                .trim()
                .is_empty(),
        }
    }

    fn pod_log(&self, pod: &str) -> String {
        match self {
            // The stand-in serves no kubelet API for `kubectl logs`; it keeps each container's output in a file.
            Cluster::Local { kubelet, .. } => kubelet
                .pod(NAMESPACE, pod)
                .and_then(|p| std::fs::read_to_string(p.log).ok())
                .unwrap_or_default(),
            Cluster::Node { .. } | Cluster::Existing => {
                String::from_utf8_lossy(&self.kubectl(&["logs", pod, "-n", NAMESPACE]).stdout).into()
            }
        }
    }

    async fn stop(self) {
        match self {
            Cluster::Local { kubelet, .. } => kubelet.stop().await,
            Cluster::Node { node, .. } => node.stop(),
            Cluster::Existing => {}
        }
    }
}

/// The chart's release name and the namespace it is installed in.
const RELEASE: &str = "canal-operator";

/// Runs the real helm (built from its Go module by `e2e/tools/build.sh`) as the control plane's admin, with its
/// caches and config under `work`.
fn helm(control_plane: &ControlPlane, work: &Path, args: &[&str]) -> String {
    let output = Command::new(canal_e2e::helm())
        .args(args)
        .env("KUBECONFIG", control_plane.kubeconfig())
        .env("HELM_CACHE_HOME", work.join("helm/cache"))
        .env("HELM_CONFIG_HOME", work.join("helm/config"))
        .env("HELM_DATA_HOME", work.join("helm/data"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `helm install` of the chart (its crds/ first, as helm does), and the test's namespace.
fn install_chart(control_plane: &ControlPlane, work: &Path) {
    let chart = repo_root().join("charts/canal-operator");
    helm(
        control_plane,
        work,
        &[
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
        ],
    );
    control_plane.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/canalinstances.canal.rs",
        "--timeout=60s",
    ]);
    control_plane.kubectl_ok(&["create", "namespace", NAMESPACE]);
}

/// `Some` as success; `None` as "not yet", with `reason` for the timeout message.
fn found<T>(value: Option<T>, reason: &str) -> Result<T, String> {
    value.ok_or_else(|| reason.to_string())
}

/// `kubectl get canalinstances` as a table: column name → value, for the row of `name`.
fn canal_row(cluster: &Cluster, name: &str) -> Option<BTreeMap<String, String>> {
    let output = cluster.kubectl(&["get", "canalinstances", "-n", NAMESPACE]);
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

fn both_ready(cluster: &Cluster) -> Result<(), String> {
    let row = found(canal_row(cluster, "orders"), "no row for orders")?;
    match row.get("READY").map(String::as_str) {
        Some("2/2") => Ok(()),
        ready => Err(format!("READY is {ready:?}")),
    }
}

fn active_pod(cluster: &Cluster) -> Option<String> {
    let ci = cluster.json(&["get", "canalinstance", "orders", "-n", NAMESPACE]);
    ci["status"]["activePod"].as_str().map(str::to_string)
}

/// Waits until the status names an active pod other than `previous`; returns it and when it was first seen.
async fn next_active(cluster: &Cluster, previous: &str, what: &str) -> (String, SystemTime) {
    canal_e2e::eventually(SETTLE, what, async || {
        found(
            active_pod(cluster).filter(|a| a != previous),
            &format!("still {previous}, or none"),
        )
        .map(|pod| (pod, SystemTime::now()))
    })
    .await
}

/// `kubectl patch canalinstance orders --type merge` of its spec.
fn patch_spec(cluster: &Cluster, spec: &str) {
    let patch = format!(r#"{{"spec":{spec}}}"#);
    cluster.kubectl_ok(&[
        "patch",
        "canalinstance",
        "orders",
        "-n",
        NAMESPACE,
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
}

fn restarts(cluster: &Cluster, pod: &str) -> i64 {
    let pod = cluster.json(&["get", "pod", pod, "-n", NAMESPACE]);
    pod["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0)
}

async fn admin(mysql: &str) -> mysql_async::Conn {
    let (host, port) = mysql.rsplit_once(':').expect("host:port");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port.parse().expect("port"))
        .user(Some("root"))
        .pass(Some("root"))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.expect("connect to MySQL as root")
}

async fn insert(mysql: &str, table: &str, ids: std::ops::RangeInclusive<u32>) {
    let mut conn = admin(mysql).await;
    for id in ids {
        conn.query_drop(format!("INSERT INTO {SCHEMA}.{table} VALUES ({id})"))
            .await
            .unwrap();
    }
}

/// Consumes `orders`' changes with `client`, acknowledging as it goes, until `stop`; records `table:id` in `seen`
/// once the batch's ack was sent.
fn start_consumer(
    mut client: ClusterClient,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
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
            if client.ack(message.batch_id).await.is_ok() {
                seen.lock().unwrap().extend(rows);
            }
        }
    })
}

/// The ids of `table` received so far, each once (duplicates are counted by [`duplicates`]).
fn consumed(seen: &Mutex<Vec<String>>, table: &str) -> BTreeSet<u32> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.strip_prefix(&format!("{table}:")).and_then(|id| id.parse().ok()))
        .collect()
}

/// Every row received more than once, with how often.
fn duplicates(seen: &Mutex<Vec<String>>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::<String, usize>::new();
    for row in seen.lock().unwrap().iter() {
        *counts.entry(row.clone()).or_default() += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

/// Waits until every id of `ids` arrived, then checks that no row arrived twice: every acknowledgement is stored
/// before the next request is served, so neither a crash, a failover, a handover nor a rollout may deliver an
/// acknowledged row again (README, "Running an instance" and "Active/standby with ZooKeeper").
async fn all_consumed(seen: &Mutex<Vec<String>>, table: &str, ids: std::ops::RangeInclusive<u32>, what: &str) {
    canal_e2e::eventually(SETTLE, what, async || {
        let got = consumed(seen, table);
        let missing: Vec<u32> = ids.clone().filter(|id| !got.contains(id)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    })
    .await;
    let twice = duplicates(seen);
    assert!(twice.is_empty(), "{what}: rows delivered more than once: {twice:?}");
}

/// How long after `pod` logged that it became the active instance the status named it (first seen at `shown`, by
/// a poll of `kubectl get`): within 2 s, plus one poll.
fn check_status_follows(cluster: &Cluster, pod: &str, shown: SystemTime) {
    let log = cluster.pod_log(pod);
    let became = log
        .lines()
        .filter(|l| l.contains("became the active instance"))
        .filter_map(canal_e2e::log_line_time)
        .next_back()
        .unwrap_or_else(|| panic!("{pod} never logged that it became the active instance:\n{log}"));
    let delay = shown.duration_since(became).unwrap_or_default();
    eprintln!("status named {pod} {delay:.1?} after it became active");
    if delay > Duration::from_secs(3) {
        let ci = cluster.json(&[
            "get",
            "canalinstance",
            "orders",
            "-n",
            NAMESPACE,
            "--show-managed-fields",
        ]);
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "the status named {pod} {delay:.1?} after it became active (2 s, plus a poll, allowed)\n\
             status: {}\nmanaged fields: {}\nlast lines of {pod}'s log:\n{}",
            ci["status"],
            ci["metadata"]["managedFields"],
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// Reads from each running container of the namespace's pods, through `crictl inspect` (the OCI spec runc ran it
/// with), what the manifests ask for: a non-root user, a read-only root filesystem, no capabilities, no privilege
/// escalation, and the runtime's default seccomp profile.
fn check_locked_down(cluster: &Cluster, node: &RealNode, namespace: &str, selector: &str, container: &str) {
    let pods = cluster.json(&["get", "pods", "-n", namespace, "-l", selector]);
    let names: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(!names.is_empty(), "no pods in {namespace} with {selector}");
    for pod in names {
        let info = node
            .inspect(namespace, &pod, container)
            .unwrap_or_else(|e| panic!("crictl inspect of {namespace}/{pod}: {e}"));
        let spec = &info["info"]["runtimeSpec"];
        let what = format!("{namespace}/{pod}/{container}");
        assert_eq!(
            spec["process"]["user"]["uid"], 65532,
            "{what} runs as uid 65532: {}",
            spec["process"]["user"]
        );
        assert_eq!(
            spec["root"]["readonly"], true,
            "{what} has a read-only root: {}",
            spec["root"]
        );
        assert_eq!(
            spec["process"]["noNewPrivileges"], true,
            "{what} cannot gain privileges"
        );
        for set in ["bounding", "effective", "permitted", "inheritable", "ambient"] {
            let caps = &spec["process"]["capabilities"][set];
            assert!(
                caps.as_array().is_none_or(|c| c.is_empty()),
                "{what} holds {set} capabilities {caps}"
            );
        }
        let seccomp = &spec["linux"]["seccomp"];
        assert_eq!(
            seccomp["defaultAction"], "SCMP_ACT_ERRNO",
            "{what} runs under the RuntimeDefault seccomp profile (deny by default): {}",
            seccomp["defaultAction"]
        );
        eprintln!("{what}: uid 65532, read-only root, no capabilities, seccomp RuntimeDefault");
    }
}

/// A kubeconfig for the instance's ServiceAccount with a token bound to pod `pod`, as the kubelet mounts it.
fn service_account_kubeconfig(cluster: &Cluster, control_plane: &ControlPlane, pod: &str, work: &Path) -> PathBuf {
    let token = cluster.kubectl_ok(&[
        "create",
        "token",
        "orders",
        "-n",
        NAMESPACE,
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        pod,
        "--duration",
        "10m",
    ]);
    let path = work.join(format!("{pod}.kubeconfig"));
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": control_plane.api_url(),
            "certificate-authority": control_plane.ca_file(),
        }}],
        "users": [{"name": "sa", "user": {"token": token.trim()}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "sa", "namespace": NAMESPACE}}],
        "current-context": "e2e",
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// What the instance's ServiceAccount may do, tried on the real API server with a token bound to `pod`, as the
/// pod's own requests are (a patch, no read first): patch its own CanalInstance's status and its own pod's labels,
/// and nothing else.
async fn check_instance_permissions(
    cluster: &Cluster,
    control_plane: &ControlPlane,
    work: &Path,
    pod: &str,
    other_pod: &str,
) {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kube::Api;
    use kube::api::{ListParams, Patch, PatchParams};

    let kubeconfig = service_account_kubeconfig(cluster, control_plane, pod, work);
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("read the ServiceAccount kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("ServiceAccount kubeconfig");
    let client = kube::Client::try_from(config).expect("ServiceAccount client");
    let instances: Api<canal_api::CanalInstance> = Api::namespaced(client.clone(), NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let patch = PatchParams::default();
    let label = Patch::Merge(serde_json::json!({"metadata": {"labels": {"canal.rs/e2e-probe": pod}}}));
    let empty_status = Patch::Merge(serde_json::json!({"status": {}}));

    instances
        .patch_status("orders", &patch, &empty_status)
        .await
        .unwrap_or_else(|e| panic!("{pod} may patch its CanalInstance's status: {e}"));
    pods.patch(pod, &patch, &label)
        .await
        .unwrap_or_else(|e| panic!("{pod} may label itself: {e}"));

    let forbidden = |what: &str, result: Result<(), kube::Error>| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => eprintln!("refused as it should be: {what}"),
        other => panic!("{pod}'s ServiceAccount must not {what}: {other:?}"),
    };
    forbidden(
        "patch another CanalInstance's status",
        instances
            .patch_status("someone-else", &patch, &empty_status)
            .await
            .map(drop),
    );
    forbidden(
        "patch its CanalInstance's spec",
        instances
            .patch(
                "orders",
                &patch,
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
            )
            .await
            .map(drop),
    );
    forbidden(
        "label the other pod",
        pods.patch(other_pod, &patch, &label).await.map(drop),
    );
    forbidden(
        "read Secrets",
        Api::<Secret>::namespaced(client.clone(), NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(drop),
    );
    forbidden(
        "list pods of another namespace",
        Api::<Pod>::namespaced(client, OPERATOR_NAMESPACE)
            .list(&ListParams::default())
            .await
            .map(drop),
    );
}

/// `canal_operator_reconcile_runs_total`, summed over the operator's pods (only the leader reconciles), read from
/// each pod's own /metrics endpoint.
async fn operator_reconciles(cluster: &Cluster) -> Result<u64, String> {
    let pods = cluster.json(&[
        "get",
        "pods",
        "-n",
        OPERATOR_NAMESPACE,
        "-l",
        "app.kubernetes.io/name=canal-operator",
    ]);
    let mut total = 0;
    for pod in pods["items"].as_array().cloned().unwrap_or_default() {
        let ip = found(pod["status"]["podIP"].as_str(), "an operator pod has no IP yet")?;
        let port = pod["spec"]["containers"][0]["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == "metrics"))
            .and_then(|p| p["containerPort"].as_i64())
            .ok_or("the operator container has no metrics port")?;
        let text = http_get(&format!("{ip}:{port}"), "/metrics").await?;
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix("canal_operator_reconcile_runs_total "))
            .ok_or_else(|| format!("no reconcile counter in:\n{text}"))?;
        total += runs
            .trim()
            .parse::<u64>()
            .map_err(|e| format!("counter `{runs}`: {e}"))?;
    }
    Ok(total)
}

/// A plain HTTP/1.1 GET, enough for a metrics endpoint; the body of a 200 answer.
async fn http_get(address: &str, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect {address}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {address}{path}: {head}"));
    }
    Ok(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canal_instance_on_a_real_api_server() {
    let host_before = canal_e2e::node::host_state();
    let (cluster, services) = Cluster::start().await;
    let mysql = services.mysql.as_str();
    {
        let mut conn = admin(mysql).await;
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
    canal_e2e::eventually(SETTLE, "the operator Deployment is available", async || {
        let d = cluster.json(&["get", "deployment", "canal-operator", "-n", OPERATOR_NAMESPACE]);
        let wanted = found(d["spec"]["replicas"].as_i64(), "no spec.replicas")?;
        let available = d["status"]["availableReplicas"].as_i64();
        if available == Some(wanted) {
            Ok(())
        } else {
            Err(format!("{available:?} of {wanted} available"))
        }
    })
    .await;

    // kubectl apply -f examples/canalinstance.yaml, pointed at the test's MariaDB and ZooKeeper (the example names
    // Services of another cluster) and with the test user's password.
    let example = std::fs::read_to_string(repo_root().join("examples/canalinstance.yaml"))
        .unwrap()
        .replace("password: change-me", "password: canal")
        .replace("mysql.default.svc:3306", mysql)
        .replace("zookeeper.default.svc:2181", &services.zookeeper);
    let applied = cluster.kubectl_with_input(&["apply", "-n", NAMESPACE, "-f", "-"], &example);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));

    let row = canal_e2e::eventually(
        SETTLE,
        "kubectl get canalinstances shows an active pod and READY 2/2",
        async || {
            let row = found(canal_row(&cluster, "orders"), "no row for orders")?;
            let serving =
                row.get("READY").map(String::as_str) == Some("2/2") && row.get("ACTIVE").is_some_and(|a| !a.is_empty());
            if serving { Ok(row) } else { Err(format!("{row:?}")) }
        },
    )
    .await;
    eprintln!("kubectl get canalinstances: {row:?}");
    let first_active = row["ACTIVE"].clone();
    if let Cluster::Node {
        node,
        control_plane,
        work,
        ..
    } = &cluster
    {
        check_locked_down(
            &cluster,
            node,
            NAMESPACE,
            "app.kubernetes.io/instance=orders",
            "canal-instance",
        );
        // The example's memory limit reaches runc.
        let info = node
            .inspect(NAMESPACE, &first_active, "canal-instance")
            .expect("crictl inspect of the active pod");
        assert_eq!(
            info["info"]["runtimeSpec"]["linux"]["resources"]["memory"]["limit"],
            512 * 1024 * 1024,
            "the container's memory limit is the example's 512Mi"
        );
        check_locked_down(
            &cluster,
            node,
            OPERATOR_NAMESPACE,
            "app.kubernetes.io/name=canal-operator",
            "canal-operator",
        );
        let other = if first_active == "orders-0" {
            "orders-1"
        } else {
            "orders-0"
        };
        check_instance_permissions(&cluster, control_plane, work, &first_active, other).await;
    }

    // Rows reach a client that finds the active pod through ZooKeeper.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let consumer = start_consumer(
        ClusterClient::new(&services.zookeeper, "orders", "1001", ""),
        seen.clone(),
        stop.clone(),
    );
    insert(mysql, "orders", 1..=20).await;
    all_consumed(&seen, "orders", 1..=20, "rows 1-20 consumed").await;
    let position = canal_e2e::eventually(
        SETTLE,
        "kubectl get canalinstances shows the binlog position",
        async || {
            let row = found(canal_row(&cluster, "orders"), "no row for orders")?;
            let position = found(row.get("POSITION").cloned(), "no POSITION column")?;
            if position.contains(':') {
                Ok(position)
            } else {
                Err(format!("POSITION is `{position}`"))
            }
        },
    )
    .await;
    eprintln!("position: {position}");
    let consumers = canal_e2e::eventually(SETTLE, "status.consumers names the client", async || {
        let ci = cluster.json(&["get", "canalinstance", "orders", "-n", NAMESPACE]);
        found(
            ci["status"]["consumers"].as_array().filter(|c| !c.is_empty()).cloned(),
            "no consumers yet",
        )
    })
    .await;
    assert_eq!(consumers[0]["clientId"], 1001);

    // Idle, with both pods ready and reporting into the status every few seconds: the operator is not driven into
    // a reconcile loop by those reports (nor by its own status writes).
    canal_e2e::eventually(SETTLE, "both pods ready while idle", async || both_ready(&cluster)).await;
    let before = canal_e2e::eventually(SETTLE, "the operator's metrics", async || {
        operator_reconciles(&cluster).await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = canal_e2e::eventually(SETTLE, "the operator's metrics", async || {
        operator_reconciles(&cluster).await
    })
    .await;
    eprintln!("reconciles of the idle CanalInstance in 60 s: {}", after - before);
    assert!(
        after - before <= 5,
        "{} reconciles in 60 s of an idle CanalInstance",
        after - before
    );

    // A real Prometheus, finding the pods through the API as a PodMonitor would, sees both pods' canal_instance_*
    // and canal_rs_* series, and the chart's "exactly one active" alert expression is quiet.
    if let Cluster::Node { control_plane, .. } = &cluster {
        let prometheus = Prometheus::start(&control_plane.kubeconfig(), &[NAMESPACE], "canal-instance", "metrics");
        canal_e2e::eventually(SETTLE, "Prometheus scrapes both pods", async || {
            for family in ["canal_instance_.+", "canal_rs_.+"] {
                let pods = prometheus.query(&format!(
                    r#"count by (pod) ({{__name__=~"{family}", namespace="{NAMESPACE}"}})"#
                ))?;
                if pods.len() != 2 {
                    return Err(format!("{family} series of {} pods: {pods:?}", pods.len()));
                }
            }
            let active = prometheus.query(r#"sum by (namespace, destination) (canal_rs_ha_role{role="active"})"#)?;
            match active.as_slice() {
                [(_, value)] if *value == 1.0 => Ok(()),
                other => Err(format!("active instances: {other:?}")),
            }
        })
        .await;
        let alert = prometheus.query(r#"sum by (namespace, destination) (canal_rs_ha_role{role="active"}) != 1"#);
        assert_eq!(
            alert.map(|a| a.len()),
            Ok(0),
            "the one-active alert expression is quiet"
        );
        eprintln!("Prometheus: both pods scraped, exactly one active");
    }

    // Kill the active pod's process. It is restarted at once, as the kubelet does a first time, and by canal's rule
    // the previous owner takes its node back once its old session expires: the same pod, and no row lost.
    cluster.signal(&first_active, "KILL");
    insert(mysql, "orders", 21..=30).await;
    all_consumed(&seen, "orders", 1..=30, "rows 1-30 consumed after a crash and restart").await;
    canal_e2e::eventually(SETTLE, "the killed container was restarted", async || {
        match restarts(&cluster, &first_active) {
            0 => Err("restartCount is 0".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    assert_eq!(active_pod(&cluster).as_deref(), Some(first_active.as_str()));

    // Hang the active pod's process: the other pod takes over once the hung one's session expires (plus the
    // failover delay), the status names it, and no row is lost. Resumed, the hung one serves as the standby.
    canal_e2e::eventually(SETTLE, "both pods ready before the hang", async || both_ready(&cluster)).await;
    let hung = Instant::now();
    cluster.signal(&first_active, "STOP");
    let (second_active, shown) =
        next_active(&cluster, &first_active, "the status names the other pod after a hang").await;
    eprintln!("failover shown in status {:.1?} after the hang", hung.elapsed());
    check_status_follows(&cluster, &second_active, shown);
    insert(mysql, "orders", 31..=40).await;
    all_consumed(&seen, "orders", 1..=40, "rows 1-40 consumed after the failover").await;
    let ci = cluster.json(&["get", "canalinstance", "orders", "-n", NAMESPACE]);
    assert!(ci["status"]["failovers"].as_i64().unwrap_or(0) >= 1, "{}", ci["status"]);
    cluster.signal(&first_active, "CONT");

    // kubectl delete pod of the active one: graceful handover.
    canal_e2e::eventually(SETTLE, "both pods ready again", async || both_ready(&cluster)).await;
    let deleted = Instant::now();
    cluster.kubectl_ok(&["delete", "pod", &second_active, "-n", NAMESPACE, "--wait=false"]);
    let (third_active, shown) = next_active(
        &cluster,
        &second_active,
        "the status names the other pod after kubectl delete pod",
    )
    .await;
    eprintln!("active: {first_active} -> {second_active} -> {third_active}");
    check_status_follows(&cluster, &third_active, shown);
    // SIGTERM (from the kubelet, within the grace period) makes the deleted pod give its node up at once; after a
    // SIGKILL the other would wait for the session timeout (10 s) and the failover delay (5 s).
    let handover = deleted.elapsed();
    eprintln!("handover shown in status {handover:.1?} after kubectl delete pod");
    assert!(
        handover < Duration::from_secs(10),
        "the handover took {handover:.1?}: the deleted pod did not stop gracefully"
    );
    insert(mysql, "orders", 41..=60).await;
    all_consumed(
        &seen,
        "orders",
        1..=60,
        "rows 1-60 consumed after the graceful handover",
    )
    .await;
    let log = cluster.pod_log(&third_active);
    assert!(log.contains("became the active instance"), "{log}");

    // helm upgrade with a changed value rolls the operator, after the CRD update a user applies first (helm does not
    // upgrade crds/); the new operator then carries out the edit below.
    let crds = repo_root().join("charts/canal-operator/crds");
    if let Some(before) = cluster.helm(&[
        "get",
        "values",
        RELEASE,
        "-n",
        OPERATOR_NAMESPACE,
        "--all",
        "-o",
        "json",
    ]) {
        cluster.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ]);
        cluster.helm(&[
            "upgrade",
            RELEASE,
            repo_root().join("charts/canal-operator").to_str().unwrap(),
            "-n",
            OPERATOR_NAMESPACE,
            "--reuse-values",
            "--set",
            "logFormat=json",
        ]);
        let before: Value = serde_json::from_str(&before).unwrap();
        assert_eq!(before["logFormat"], "text");
        canal_e2e::eventually(SETTLE, "helm upgrade rolled the operator", async || {
            let d = cluster.json(&["get", "deployment", "canal-operator", "-n", OPERATOR_NAMESPACE]);
            let args = d["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
            let status = &d["status"];
            let wanted = d["spec"]["replicas"].as_i64();
            let rolled = args.contains("json")
                && status["observedGeneration"] == d["metadata"]["generation"]
                && status["updatedReplicas"].as_i64() == wanted
                && status["availableReplicas"].as_i64() == wanted
                && status["replicas"].as_i64() == wanted;
            if rolled {
                Ok(())
            } else {
                Err(format!("args {args}, status {status}"))
            }
        })
        .await;
        let history = cluster
            .helm(&["history", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json"])
            .unwrap();
        let history: Value = serde_json::from_str(&history).unwrap();
        assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    }

    // Edit the filter: the change rolls out and the status shows the new generation observed.
    canal_e2e::eventually(SETTLE, "both pods ready before the edit", async || both_ready(&cluster)).await;
    patch_spec(&cluster, r#"{"filter":{"include":"shop\\.orders"}}"#);
    canal_e2e::eventually(
        SETTLE,
        "the rollout finishes and the new generation is observed",
        async || {
            let ci = cluster.json(&["get", "canalinstance", "orders", "-n", NAMESPACE]);
            let sts = cluster.json(&["get", "statefulset", "orders", "-n", NAMESPACE]);
            let generation = found(ci["metadata"]["generation"].as_i64(), "no generation")?;
            let observed = found(ci["status"]["observedGeneration"].as_i64(), "no observedGeneration")?;
            let status = &sts["status"];
            let rolled = status["updateRevision"] == status["currentRevision"]
                && status["updatedReplicas"].as_i64() == Some(2)
                && status["readyReplicas"].as_i64() == Some(2)
                && sts["metadata"]["generation"] == status["observedGeneration"];
            if generation >= 2 && observed == generation && rolled {
                Ok(())
            } else {
                Err(format!(
                    "generation {generation}, observed {observed}, StatefulSet status {status}"
                ))
            }
        },
    )
    .await;
    insert(mysql, "customers", 1..=5).await;
    insert(mysql, "orders", 61..=70).await;
    all_consumed(&seen, "orders", 1..=70, "rows 1-70 consumed after the rollout").await;
    assert!(
        consumed(&seen, "customers").is_empty(),
        "the new filter leaves customers out"
    );

    // On a real node, the same client id goes on through the client Service's ClusterIP, which kube-proxy sends to
    // the active pod, and follows a graceful handover through it: the Service follows the role label.
    let (stop, consumer) = match &cluster {
        Cluster::Node { .. } => {
            stop.store(true, Ordering::SeqCst);
            consumer.await.unwrap();
            let service = cluster.json(&["get", "service", "orders", "-n", NAMESPACE]);
            let ip = service["spec"]["clusterIP"]
                .as_str()
                .expect("the client Service has a ClusterIP");
            let client = ClusterClient::direct(&format!("{ip}:11111"), "orders", "1001", "");
            let stop = Arc::new(AtomicBool::new(false));
            let consumer = start_consumer(client, seen.clone(), stop.clone());
            insert(mysql, "orders", 71..=80).await;
            all_consumed(
                &seen,
                "orders",
                1..=80,
                "rows 71-80 consumed through the client Service",
            )
            .await;
            canal_e2e::eventually(SETTLE, "both pods ready before the handover", async || {
                both_ready(&cluster)
            })
            .await;
            let active = active_pod(&cluster).expect("an active pod");
            cluster.kubectl_ok(&["delete", "pod", &active, "-n", NAMESPACE, "--wait=false"]);
            next_active(&cluster, &active, "another pod is active").await;
            insert(mysql, "orders", 81..=90).await;
            all_consumed(
                &seen,
                "orders",
                1..=90,
                "rows 81-90 consumed through the client Service after a handover",
            )
            .await;
            (stop, consumer)
        }
        _ => (stop, consumer),
    };

    // An invalid CanalInstance is refused by the API server with the CEL message.
    let invalid = example
        .replace("replicas: 2", "replicas: 9")
        .replace("name: orders\nspec", "name: too-many\nspec");
    let refused = cluster.kubectl_with_input(&["apply", "-n", NAMESPACE, "-f", "-"], &invalid);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("replicas must be between 1 and 5"), "{stderr}");

    // Under the Delete policy, kubectl delete canalinstance removes the children and the ZooKeeper nodes.
    stop.store(true, Ordering::SeqCst);
    consumer.await.unwrap();
    patch_spec(&cluster, r#"{"zookeeperDeletionPolicy":"Delete"}"#);
    cluster.kubectl_ok(&["delete", "canalinstance", "orders", "-n", NAMESPACE, "--timeout=180s"]);
    // Every kind the operator owns (its one list of children), and the pods.
    let kinds = format!("{},pods", canal_operator::children::KINDS.join(","));
    canal_e2e::eventually(SETTLE, "the children are garbage-collected", async || {
        let left = cluster.kubectl_ok(&[
            "get",
            &kinds,
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/instance=orders",
            "-o",
            "name",
        ]);
        if left.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left}"))
        }
    })
    .await;
    canal_e2e::eventually(SETTLE, "the pods' processes are stopped", async || {
        if cluster.nothing_runs_in(NAMESPACE) {
            Ok(())
        } else {
            Err("a pod still runs".to_string())
        }
    })
    .await;
    let zk_config: canal_api::ZooKeeperConfig =
        serde_json::from_value(serde_json::json!({"servers": services.zookeeper})).unwrap();
    let zk = canal_operator::zookeeper::connect(&zk_config).await.unwrap();
    assert_eq!(
        zk.check_stat("/otter/canal/destinations/orders").await.unwrap(),
        None,
        "the destination's ZooKeeper nodes are deleted"
    );

    // helm uninstall removes the operator and its cluster-wide objects; the CRD stays, as helm leaves crds/ alone
    // (README, "Helm chart").
    if cluster
        .helm(&[
            "uninstall",
            RELEASE,
            "-n",
            OPERATOR_NAMESPACE,
            "--wait",
            "--timeout",
            "180s",
        ])
        .is_some()
    {
        let left = cluster.kubectl_ok(&[
            "get",
            "deployments,serviceaccounts,services,clusterroles,clusterrolebindings",
            "-A",
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE}"),
            "-o",
            "name",
        ]);
        assert!(left.trim().is_empty(), "left after helm uninstall: {left}");
        cluster.kubectl_ok(&["get", "crd", "canalinstances.canal.rs"]);
    }

    let real_node = matches!(cluster, Cluster::Node { .. });
    cluster.stop().await;
    if real_node {
        assert_eq!(
            canal_e2e::node::host_state(),
            host_before,
            "the real node left the host changed (e2e/k8s/node.sh host-state)"
        );
    }
}
