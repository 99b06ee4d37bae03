//! `ProcessKubelet`: a test stand-in for the kubelet that runs the Pods of chosen namespaces as local processes.
//!
//! There is no container runtime on the test machines, so a container runs as a process of the binary its image
//! names (`canal-rs/canal-instance:<tag>` runs `canal-instance`). Per Pod it does what a kubelet does:
//! - schedules the Pod onto its own Node with a Binding (no scheduler runs here) and keeps that Node Ready, with
//!   its Lease renewed;
//! - resolves the container's env (`value`, `fieldRef`, `secretKeyRef`, `configMapKeyRef`), writes configMap,
//!   secret, emptyDir and projected ServiceAccount volumes to directories, and points args that name a mounted
//!   path at the directory;
//! - gives the process the Pod's ServiceAccount identity: a token from the TokenRequest API, bound to the Pod, in
//!   a kubeconfig passed as `KUBECONFIG`;
//! - gives each Pod its own loopback IP (127.0.0.N) as `status.podIP`. Pods share the host's network, so the
//!   wildcard listen address `0.0.0.0` in args and mounted files becomes that IP: the one change to what a Pod
//!   is given;
//! - reports phase, IPs, container status and the Ready condition from the readiness probe (`httpGet`);
//! - restarts a container that exits (restartPolicy Always) and carries out graceful deletion: SIGTERM, the grace
//!   period, SIGKILL, then the final DELETE.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How often the Pods are listed.
const SYNC_PERIOD: Duration = Duration::from_millis(250);
/// How often the Node's Lease and Ready condition are renewed (the controller-manager's grace is 40–50 s).
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(10);
/// How often readiness probes run.
const PROBE_PERIOD: Duration = Duration::from_secs(1);
/// Wait before restarting a container that exited.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// What the stand-in runs and where.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub node: String,
    /// Only Pods of these namespaces are scheduled here and run.
    pub namespaces: Vec<String>,
    /// Image repository (without tag) → the binary that plays it.
    pub images: BTreeMap<String, PathBuf>,
    /// Pod directories (volumes, kubeconfig, logs) go below this one.
    pub work_dir: PathBuf,
    /// The API server URL and CA file written into each Pod's kubeconfig.
    pub api_server: String,
    pub ca_file: PathBuf,
}

/// A running (or restarting) Pod.
struct PodProcess {
    uid: String,
    ip: String,
    child: Option<Child>,
    started_at: jiff::Timestamp,
    restarts: u32,
    exited_at: Option<Instant>,
    ready: bool,
    terminating_since: Option<Instant>,
    last_probe: Option<Instant>,

    /// What to run again on a restart.
    launch: Launch,
}

#[derive(Clone)]
struct Launch {
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    image: String,
    container: String,
    probe: Option<(String, u16)>,
    grace: Duration,
}

/// A view of one Pod's process, for tests.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pid: Option<u32>,
    pub ip: String,
    pub log: PathBuf,
    pub restarts: u32,
}

type Pods = Arc<Mutex<HashMap<String, PodProcess>>>;

/// The stand-in, running until [`ProcessKubelet::stop`].
pub struct ProcessKubelet {
    pods: Pods,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl ProcessKubelet {
    /// Registers the Node and starts syncing Pods. `client` acts as the node (the tests give it cluster-admin).
    pub async fn start(client: kube::Client, config: KubeletConfig) -> Self {
        register_node(&client, &config.node).await;
        let pods: Pods = Arc::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(client, config, pods.clone(), stop.clone()));
        Self {
            pods,
            stop,
            task: Some(task),
        }
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        let pods = self.pods.lock().unwrap();
        pods.get(&key(namespace, name)).map(|p| PodInfo {
            pid: p.child.as_ref().map(Child::id),
            ip: p.ip.clone(),
            log: p.launch.log.clone(),
            restarts: p.restarts,
        })
    }

    /// Names (`namespace/name`) of the Pods with a process.
    pub fn running(&self) -> Vec<String> {
        let pods = self.pods.lock().unwrap();
        let mut names: Vec<String> = pods
            .iter()
            .filter(|(_, p)| p.child.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        names.sort();
        names
    }

    /// Stops syncing and terminates every process (SIGTERM, then SIGKILL after its grace period).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let mut pods = std::mem::take(&mut *self.pods.lock().unwrap());
        for pod in pods.values_mut() {
            if let Some(child) = pod.child.as_mut() {
                signal(child.id(), "TERM");
            }
        }
        for pod in pods.values_mut() {
            if let Some(child) = pod.child.take() {
                wait_or_kill(child, pod.launch.grace.min(Duration::from_secs(10))).await;
            }
        }
    }
}

impl Drop for ProcessKubelet {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(mut pods) = self.pods.lock() {
            for pod in pods.values_mut() {
                if let Some(mut child) = pod.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Waits up to `grace` for a signalled process to exit, then kills it.
async fn wait_or_kill(mut child: Child, grace: Duration) {
    // On a blocking thread: see `eventually_blocking` for why a spawned task cannot await an async-closure wait.
    let _ = tokio::task::spawn_blocking(move || {
        let exited =
            crate::try_eventually_blocking(grace, "the signalled process to exit", || match child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err(String::from("still running")),
            });
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
    })
    .await;
}

async fn register_node(client: &kube::Client, node: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let body = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux"}},
    });
    nodes
        .patch(
            node,
            &PatchParams::apply("process-kubelet").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot register node {node}: {e}"));
    heartbeat(client, node).await;
}

async fn heartbeat(client: &kube::Client, node: &str) {
    let now = jiff::Timestamp::now().to_string();
    let nodes: Api<Node> = Api::all(client.clone());
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "process kubelet stand-in", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "nodeInfo": {"kubeletVersion": "process-kubelet", "operatingSystem": "linux", "architecture": "amd64",
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
            "containerRuntimeVersion": "process://", "kubeProxyVersion": ""},
    }});
    if let Err(e) = nodes
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        eprintln!("process-kubelet: node status: {e}");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
            "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}});
    if let Err(e) = leases
        .patch(
            node,
            &PatchParams::apply("process-kubelet").force(),
            &Patch::Apply(&lease),
        )
        .await
    {
        eprintln!("process-kubelet: node lease: {e}");
    }
}

async fn run(client: kube::Client, config: KubeletConfig, pods: Pods, stop: CancellationToken) {
    let mut next_ip = 10u8;
    let mut last_heartbeat = Instant::now();
    loop {
        if last_heartbeat.elapsed() >= HEARTBEAT_PERIOD {
            heartbeat(&client, &config.node).await;
            last_heartbeat = Instant::now();
        }
        for namespace in &config.namespaces {
            if let Err(e) = sync_namespace(&client, &config, namespace, &pods, &mut next_ip).await {
                eprintln!("process-kubelet: {namespace}: {e}");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SYNC_PERIOD) => {}
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn sync_namespace(
    client: &kube::Client,
    config: &KubeletConfig,
    namespace: &str,
    pods: &Pods,
    next_ip: &mut u8,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = api.list(&Default::default()).await?;
    let mut seen = Vec::new();
    for pod in listed.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        match spec.node_name.as_deref() {
            None if pod.metadata.deletion_timestamp.is_none() => {
                bind(&api, &name, &config.node).await?;
                continue;
            }
            Some(node) if node == config.node => {}
            _ => continue,
        }
        let k = key(namespace, &name);
        seen.push(k.clone());
        // A Pod deleted and created again under the same name is a new Pod.
        let stale = pods.lock().unwrap().get(&k).is_some_and(|p| p.uid != uid);
        if stale {
            stop_process(pods, &k, Duration::ZERO).await;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            if terminate(pods, &k, &pod) {
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let _ = api.delete(&name, &dp).await;
                pods.lock().unwrap().remove(&k);
            }
            continue;
        }
        let known = pods.lock().unwrap().contains_key(&k);
        if !known {
            let ip = format!("127.0.0.{next_ip}");
            *next_ip = if *next_ip >= 250 { 10 } else { *next_ip + 1 };
            match prepare(client, config, &pod, &ip).await {
                Ok(launch) => {
                    let child = spawn(&launch)?;
                    pods.lock().unwrap().insert(
                        k.clone(),
                        PodProcess {
                            uid: uid.clone(),
                            ip,
                            child: Some(child),
                            started_at: jiff::Timestamp::now(),
                            restarts: 0,
                            exited_at: None,
                            ready: false,
                            terminating_since: None,
                            last_probe: None,
                            launch,
                        },
                    );
                    report(&api, &name, pods, &k).await?;
                }
                Err(e) => {
                    eprintln!("process-kubelet: cannot start {k}: {e}");
                    let status = json!({"status": {"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "True"},
                        {"type": "Ready", "status": "False", "reason": "StandInError", "message": e.to_string()}]}});
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await?;
                }
            }
            continue;
        }
        if supervise(pods, &k).await {
            report(&api, &name, pods, &k).await?;
        }
    }
    // Pods gone from the API (force-deleted, or the namespace went): stop their processes.
    let gone: Vec<String> = pods
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(&format!("{namespace}/")) && !seen.contains(k))
        .cloned()
        .collect();
    for k in gone {
        stop_process(pods, &k, Duration::from_secs(10)).await;
        pods.lock().unwrap().remove(&k);
    }
    Ok(())
}

async fn bind(api: &Api<Pod>, name: &str, node: &str) -> Result<(), Error> {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let bound: Result<serde_json::Value, _> = api
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await;
    bound.map(|_| ()).map_err(Into::into)
}

/// Graceful termination; true once the process is gone.
fn terminate(pods: &Pods, k: &str, pod: &Pod) -> bool {
    let mut guard = pods.lock().unwrap();
    let Some(process) = guard.get_mut(k) else {
        return true;
    };
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .map_or(process.launch.grace, |s| Duration::from_secs(s.max(0) as u64));
    let since = *process.terminating_since.get_or_insert_with(|| {
        if let Some(child) = process.child.as_ref() {
            signal(child.id(), "TERM");
        }
        Instant::now()
    });
    let Some(child) = process.child.as_mut() else {
        return true;
    };
    if matches!(child.try_wait(), Ok(Some(_))) {
        process.child = None;
        return true;
    }
    if since.elapsed() >= grace {
        let _ = child.kill();
        let _ = child.wait();
        process.child = None;
        return true;
    }
    false
}

async fn stop_process(pods: &Pods, k: &str, grace: Duration) {
    let child = pods.lock().unwrap().get_mut(k).and_then(|p| p.child.take());
    if let Some(child) = child {
        signal(child.id(), "TERM");
        wait_or_kill(child, grace).await;
    }
}

/// Restarts an exited container and probes readiness; true when the status must be reported again.
async fn supervise(pods: &Pods, k: &str) -> bool {
    let probe = {
        let mut guard = pods.lock().unwrap();
        let Some(process) = guard.get_mut(k) else {
            return false;
        };
        if let Some(child) = process.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            eprintln!("process-kubelet: {k} exited ({status}); restarting");
            process.child = None;
            process.exited_at = Some(Instant::now());
            process.ready = false;
            return true;
        }
        if process.child.is_none() {
            if process.exited_at.is_some_and(|t| t.elapsed() >= RESTART_BACKOFF) {
                match spawn(&process.launch) {
                    Ok(child) => {
                        process.child = Some(child);
                        process.restarts += 1;
                        process.started_at = jiff::Timestamp::now();
                        process.exited_at = None;
                        return true;
                    }
                    Err(e) => eprintln!("process-kubelet: cannot restart {k}: {e}"),
                }
            }
            return false;
        }
        if process.last_probe.is_some_and(|t| t.elapsed() < PROBE_PERIOD) {
            return false;
        }
        process.last_probe = Some(Instant::now());
        match &process.launch.probe {
            None => {
                let changed = !process.ready;
                process.ready = true;
                return changed;
            }
            Some((path, port)) => (process.ip.clone(), *port, path.clone()),
        }
    };
    let ready = http_ok(&probe.0, probe.1, &probe.2).await;
    let mut guard = pods.lock().unwrap();
    match guard.get_mut(k) {
        Some(process) if process.ready != ready && process.child.is_some() => {
            process.ready = ready;
            true
        }
        _ => false,
    }
}

async fn http_ok(ip: &str, port: u16, path: &str) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code: u16 = response.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

async fn report(api: &Api<Pod>, name: &str, pods: &Pods, k: &str) -> Result<(), Error> {
    let status = {
        let guard = pods.lock().unwrap();
        let Some(p) = guard.get(k) else {
            return Ok(());
        };
        let ready = if p.ready { "True" } else { "False" };
        let state = match &p.child {
            Some(_) => json!({"running": {"startedAt": p.started_at.to_string()}}),
            None => json!({"waiting": {"reason": "CrashLoopBackOff", "message": "restarting the process"}}),
        };
        json!({"status": {
            "phase": "Running",
            "podIP": p.ip, "podIPs": [{"ip": p.ip}],
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": p.started_at.to_string(),
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": ready},
                {"type": "Ready", "status": ready},
            ],
            "containerStatuses": [{
                "name": p.launch.container, "image": p.launch.image, "imageID": "",
                "containerID": p.child.as_ref().map(|c| format!("process://{}", c.id())),
                "ready": p.ready, "started": p.child.is_some(), "restartCount": p.restarts, "state": state,
            }],
        }})
    };
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

fn spawn(launch: &Launch) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)?;
    Command::new(&launch.binary)
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// Everything a container needs, resolved from the API: binary, args, env, volumes and identity.
async fn prepare(client: &kube::Client, config: &KubeletConfig, pod: &Pod, ip: &str) -> Result<Launch, Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let [container]: [Container; 1] = spec
        .containers
        .clone()
        .try_into()
        .map_err(|_| "the stand-in runs Pods of exactly one container")?;
    let image = container.image.clone().unwrap_or_default();
    let repository = image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r);
    let binary = config
        .images
        .get(repository)
        .ok_or_else(|| format!("no binary plays image {image}"))?
        .clone();
    let dir = config.work_dir.join(&namespace).join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let service_account = spec.service_account_name.clone().unwrap_or_else(|| "default".into());
    let token = service_account_token(client, &namespace, &service_account, pod).await?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: {namespace}\n\
             current-context: c\n",
            config.api_server,
            config.ca_file.display()
        ),
    )?;

    // Volumes as directories; mounts map container paths to them.
    let mut volumes: HashMap<String, PathBuf> = HashMap::new();
    for volume in spec.volumes.iter().flatten() {
        let vdir = dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&vdir)?;
        volumes.insert(volume.name.clone(), vdir.clone());
        if let Some(cm) = &volume.config_map {
            let data = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                .get(&cm.name)
                .await?
                .data
                .unwrap_or_default();
            for (key, value) in data {
                std::fs::write(vdir.join(key), value.replace("0.0.0.0", ip))?;
            }
        } else if let Some(secret) = &volume.secret {
            let secret_name = secret.secret_name.clone().unwrap_or_default();
            let data = Api::<Secret>::namespaced(client.clone(), &namespace)
                .get(&secret_name)
                .await?
                .data
                .unwrap_or_default();
            for (key, value) in data {
                std::fs::write(vdir.join(key), value.0)?;
            }
        } else if volume.projected.is_some() {
            // The ServiceAccount volume the admission plugin adds (kube-api-access-*).
            std::fs::write(vdir.join("token"), &token)?;
            std::fs::copy(&config.ca_file, vdir.join("ca.crt"))?;
            std::fs::write(vdir.join("namespace"), &namespace)?;
        }
    }
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let target = volumes
            .entry(mount.name.clone())
            .or_insert_with(|| dir.join("volumes").join(&mount.name))
            .clone();
        let target = match &mount.sub_path {
            Some(sub) if !sub.is_empty() => target.join(sub),
            _ => target,
        };
        mounts.push((mount.mount_path.clone(), target));
    }
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let local_path = |arg: &str| -> String {
        for (path, target) in &mounts {
            if let Some(rest) = arg.strip_prefix(path.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", target.display());
            }
        }
        arg.to_string()
    };
    let args: Vec<String> = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|a| local_path(&a.replace("0.0.0.0", ip)))
        .collect();

    let mut env = vec![
        ("PATH".to_string(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".to_string(), dir.display().to_string()),
        ("HOSTNAME".to_string(), name.clone()),
        ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
    ];
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => name.clone(),
                        "metadata.namespace" => namespace.clone(),
                        "status.podIP" => ip.to_string(),
                        "status.hostIP" => "127.0.0.1".into(),
                        "spec.nodeName" => config.node.clone(),
                        "spec.serviceAccountName" => service_account.clone(),
                        other => return Err(format!("fieldRef {other} is not supported by the stand-in").into()),
                    }
                } else if let Some(sel) = &from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
                        .get(&sel.name)
                        .await?;
                    let bytes = secret
                        .data
                        .unwrap_or_default()
                        .remove(&sel.key)
                        .ok_or_else(|| format!("secret {} has no key {}", sel.name, sel.key))?;
                    String::from_utf8(bytes.0)?
                } else if let Some(sel) = &from.config_map_key_ref {
                    let cm = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                        .get(&sel.name)
                        .await?;
                    cm.data
                        .unwrap_or_default()
                        .remove(&sel.key)
                        .ok_or_else(|| format!("configMap {} has no key {}", sel.name, sel.key))?
                } else {
                    return Err(format!("env {} uses a valueFrom the stand-in does not support", var.name).into());
                }
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }

    let ports: HashMap<String, u16> = container
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Some((p.name.clone()?, p.container_port as u16)))
        .collect();
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|get| {
            let port = match &get.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => *n as u16,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                    ports.get(s).copied().unwrap_or_default()
                }
            };
            (get.path.clone().unwrap_or_else(|| "/".into()), port)
        });
    Ok(Launch {
        binary,
        args,
        env,
        log: dir.join("container.log"),
        image,
        container: container.name.clone(),
        probe,
        grace: Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64),
    })
}

/// A token for the Pod's ServiceAccount, bound to the Pod as the kubelet's are.
async fn service_account_token(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
    pod: &Pod,
) -> Result<String, Error> {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600, "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
            "name": pod.metadata.name, "uid": pod.metadata.uid}},
    });
    let response: serde_json::Value = api
        .create_subresource("token", service_account, &PostParams::default(), &request)
        .await?;
    response["status"]["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "TokenRequest returned no token".into())
}
