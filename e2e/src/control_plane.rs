//! A real Kubernetes control plane for tests: etcd, kube-apiserver (client certificates, RBAC) and
//! kube-controller-manager, built from Go modules by `e2e/k8s/build.sh` and run on loopback by
//! `e2e/k8s/control-plane.sh`, which stops them when the test process exits.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::{fresh_dir, repo_root, start_service_with, stop_service};

const SCRIPT: &str = "k8s/control-plane.sh";

pub struct ControlPlane {
    dir: PathBuf,
    env: HashMap<String, String>,
}

/// Builds the binaries unless `build.sh` finds them up to date. The first build takes many minutes; its progress
/// goes to the test's stderr.
pub fn build_binaries() {
    let status = Command::new("bash")
        .arg(repo_root().join("e2e/k8s/build.sh"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run e2e/k8s/build.sh");
    assert!(status.success(), "e2e/k8s/build.sh failed");
}

impl ControlPlane {
    pub fn start() -> Self {
        build_binaries();
        let dir = fresh_dir("canal-k8s-");
        let env = start_service_with(SCRIPT, "start", &[], &dir, &[]);
        Self { dir, env }
    }

    fn var(&self, name: &str) -> String {
        self.env
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{SCRIPT} wrote no {name}"))
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG"))
    }

    pub fn api_url(&self) -> String {
        self.var("K8S_API_URL")
    }

    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.var("K8S_CA_FILE"))
    }

    /// The directory `control-plane.sh` runs in (its PKI, kubeconfig, logs and env file).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn bin_dir(&self) -> PathBuf {
        PathBuf::from(self.var("K8S_BIN_DIR"))
    }

    /// A cluster-admin client.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("read the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("admin kubeconfig");
        kube::Client::try_from(config).expect("admin client")
    }

    /// Runs the built kubectl as admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, "")
    }

    /// Runs the built kubectl as admin with `input` on stdin (for `-f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut command = Command::new(self.var("KUBECTL"));
        command
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.join("kube-cache"));
        run_kubectl(command, args, input)
    }

    /// Runs kubectl and returns its stdout, failing the test with its stderr if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        kubectl_stdout(args, self.kubectl(args))
    }

    /// The log of a component: `etcd`, `apiserver` or `controller-manager`.
    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{component}.log"))).unwrap_or_default()
    }
}

/// Runs a kubectl `command` (binary and environment set) with `args` and `input` on stdin.
pub fn run_kubectl(mut command: Command, args: &[&str], input: &str) -> Output {
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let mut stdin = child.stdin.take().expect("kubectl stdin");
    stdin.write_all(input.as_bytes()).expect("write kubectl stdin");
    drop(stdin);
    child.wait_with_output().expect("kubectl output")
}

/// The stdout of a kubectl run, failing the test with its stderr if it failed.
pub fn kubectl_stdout(args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "kubectl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        stop_service(SCRIPT, &self.dir);
    }
}
