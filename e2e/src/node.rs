//! A real Kubernetes node for tests: containerd and runc, kubelet, kube-scheduler and kube-proxy joined to a
//! [`ControlPlane`], with bridge CNI pod networking, started by `e2e/k8s/node.sh` (which says what it changes on
//! the host and undoes it at [`RealNode::stop`], on drop, or through its watchdog when the test process dies).
//!
//! Pods reach host services (MariaDB, ZooKeeper, the API server) through the bridge's gateway address, where the
//! test puts [`TcpProxy`]s in front of the loopback-only services; the `kubernetes` Service of the `default`
//! namespace is pointed at such a proxy too, so in-cluster clients find the API server as in any cluster.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::control_plane::ControlPlane;
use crate::{TcpProxy, fresh_dir, start_service_with, stop_service};

const SCRIPT: &str = "k8s/node.sh";

pub struct RealNode {
    dir: PathBuf,
    env: HashMap<String, String>,
    /// Forwards the gateway address to the API server, for the `kubernetes` Service's endpoint.
    _api_proxy: TcpProxy,
}

/// Why a real node cannot run here, or `None` when it can: root, containerd, runc, the CNI plugins and nft.
pub fn unavailable() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX) != 0 {
        return Some("not root".into());
    }
    for tool in ["containerd", "runc", "nft", "ctr"] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "{tool} is not installed (bash e2e/services/install.sh installs it)"
            ));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins are not installed (containernetworking-plugins)".into());
    }
    None
}

/// Whether the e2e should run on a real node here: yes unless `CANAL_E2E_NODE=process` asks for the process
/// stand-in. Where a real node cannot run, the stand-in is used, except under `CI=true`, which must test the real
/// one.
pub fn wanted() -> bool {
    if std::env::var("CANAL_E2E_NODE").as_deref() == Ok("process") {
        return false;
    }
    match unavailable() {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true needs the real-node e2e, but a node cannot run here: {why}")
        }
        Some(why) => {
            eprintln!("no real node here ({why}): pods run under the process stand-in");
            false
        }
    }
}

/// The sandbox image `make images` builds.
pub const PAUSE_IMAGE: &str = concat!("canal-rs/pause:", env!("CARGO_PKG_VERSION"));

/// `make images`: the images' docker-archive tarballs (canal-instance, canal-operator, pause), built unless up to
/// date.
pub fn built_images() -> Vec<PathBuf> {
    let script = crate::repo_root().join("images/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .expect("run images/build.sh");
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("images/build.sh prints its output dir")
            .trim(),
    );
    let mut tars: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    tars.sort();
    tars
}

impl RealNode {
    /// Starts the node, imports `images` (docker-archive tarballs, one of them [`PAUSE_IMAGE`], the sandbox image)
    /// into its containerd, and points the `kubernetes` Service at the API server through the bridge.
    pub async fn start(control_plane: &ControlPlane, images: &[PathBuf]) -> Self {
        let dir = fresh_dir("canal-node-");
        let mut extra: Vec<&str> = vec![control_plane.dir().to_str().expect("utf-8 path")];
        extra.extend(images.iter().map(|p| p.to_str().expect("utf-8 path")));
        let env = start_service_with(SCRIPT, "start", &["--pause-image", PAUSE_IMAGE], &dir, &extra);
        let gateway = env["NODE_GATEWAY_IP"].clone();
        let api = control_plane.api_url();
        let api_address = api.trim_start_matches("https://").to_string();
        let api_proxy = TcpProxy::start_on(&format!("{gateway}:0"), &api_address).await;
        let port = api_proxy.address.rsplit_once(':').expect("host:port").1.to_string();
        let slice = serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes-e2e-node",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "canal-rs-e2e"
                }
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [gateway], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port.parse::<i32>().expect("port"), "protocol": "TCP"}]
        });
        let applied = control_plane.kubectl_with_input(&["apply", "-f", "-"], &slice.to_string());
        crate::control_plane::kubectl_stdout(&["apply", "-f", "-"], applied);
        Self {
            dir,
            env,
            _api_proxy: api_proxy,
        }
    }

    fn var(&self, name: &str) -> &str {
        self.env.get(name).unwrap_or_else(|| panic!("{SCRIPT} wrote no {name}"))
    }

    /// The node's name in the API (`localhost`).
    pub fn name(&self) -> &str {
        self.var("NODE_NAME")
    }

    /// The bridge's address: where pods reach the host.
    pub fn gateway_ip(&self) -> &str {
        self.var("NODE_GATEWAY_IP")
    }

    /// A component's log: `containerd`, `kubelet`, `kube-scheduler` or `kube-proxy`.
    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{component}.log"))).unwrap_or_default()
    }

    /// Runs crictl against the node's containerd.
    pub fn crictl(&self, args: &[&str]) -> Output {
        Command::new(self.var("CRICTL"))
            .args(["--runtime-endpoint", self.var("CRI_ENDPOINT"), "--timeout", "20s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run crictl")
    }

    /// The running container `container` of pod `namespace/pod`, as `crictl inspect` shows it.
    pub fn inspect(&self, namespace: &str, pod: &str, container: &str) -> Result<Value, String> {
        let listed = self.crictl(&[
            "ps",
            "--namespace",
            namespace,
            "--pod",
            &self.pod_id(namespace, pod)?,
            "--name",
            &format!("^{container}$"),
            "--state",
            "running",
            "-q",
        ]);
        let id = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .next()
            .map(str::to_string);
        let id = id.ok_or_else(|| format!("no running container {container} in {namespace}/{pod}"))?;
        let inspected = self.crictl(&["inspect", &id]);
        if !inspected.status.success() {
            return Err(String::from_utf8_lossy(&inspected.stderr).into_owned());
        }
        serde_json::from_slice(&inspected.stdout).map_err(|e| format!("crictl inspect: {e}"))
    }

    fn pod_id(&self, namespace: &str, pod: &str) -> Result<String, String> {
        let listed = self.crictl(&[
            "pods",
            "--namespace",
            namespace,
            "--name",
            &format!("^{pod}$"),
            "--state",
            "ready",
            "-q",
        ]);
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .next()
            .map(str::to_string)
            .ok_or_else(|| format!("no ready sandbox for {namespace}/{pod}"))
    }

    /// The host pid of the process `command` inside the container: the container's first process or one of its
    /// descendants (the images start the server under tini).
    pub fn process(&self, namespace: &str, pod: &str, container: &str, command: &str) -> Result<u32, String> {
        let info = self.inspect(namespace, pod, container)?;
        let init = info["info"]["pid"]
            .as_u64()
            .ok_or_else(|| format!("crictl inspect shows no pid: {}", info["info"]))? as u32;
        let mut queue = vec![init];
        while let Some(pid) = queue.pop() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == command {
                return Ok(pid);
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            queue.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        Err(format!("no process {command} in {namespace}/{pod}/{container}"))
    }

    /// Stops every component and pod and undoes the host changes (as dropping it does).
    pub fn stop(self) {}
}

/// What `node.sh` may change on the host, for a before/after comparison.
pub fn host_state() -> String {
    let output = Command::new("bash")
        .arg(crate::repo_root().join("e2e").join(SCRIPT))
        .arg("host-state")
        .stdin(Stdio::null())
        .output()
        .expect("run node.sh host-state");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for RealNode {
    fn drop(&mut self) {
        stop_service(SCRIPT, &self.dir);
    }
}
