//! Test harness: real local services started by the project's own scripts in `e2e/services/`, and helpers to run
//! `canal-instance` processes against them.
//!
//! Every service is started with `--owner-pid` set to the test process, so its watchdog stops it and removes its
//! directory when the test process exits, however it exits. Nothing here fakes MySQL, ZooKeeper or a client.
//!
//! For Kubernetes, [`control_plane`] runs a real etcd, kube-apiserver and kube-controller-manager built from Go
//! modules (`e2e/k8s/`), and [`kubelet`] is a clearly named stand-in that runs Pods as processes.

pub mod canal_server;
pub mod control_plane;
pub mod kafka;
pub mod kubelet;
pub mod node;
pub mod prometheus;

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e has a parent")
        .to_path_buf()
}

/// A script under `e2e/`: `mariadb.sh` and `zookeeper.sh` live in `services/`, others name their folder.
fn script_path(script: &str) -> PathBuf {
    if script.contains('/') {
        repo_root().join("e2e").join(script)
    } else {
        repo_root().join("e2e/services").join(script)
    }
}

/// Parses a `KEY=value` env file written by the service scripts.
fn read_env_file(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

/// Runs a service script's start command and returns the env file it wrote.
fn start_service(script: &str, command: &str, dir: &Path, extra: &[&str]) -> HashMap<String, String> {
    start_service_with(script, command, &[], dir, extra)
}

/// Like [`start_service`], with options placed before the directory argument.
pub(crate) fn start_service_with(
    script: &str,
    command: &str,
    options: &[&str],
    dir: &Path,
    extra: &[&str],
) -> HashMap<String, String> {
    let output = Command::new("bash")
        .arg(script_path(script))
        .arg(command)
        .arg("--owner-pid")
        .arg(std::process::id().to_string())
        .args(options)
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} {command} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let env_file = stdout.lines().last().expect("the script prints its env file").trim();
    read_env_file(Path::new(env_file))
}

/// Runs `script command... DIR args...` and fails the test if it fails.
fn run_script(script: &str, command: &[&str], dir: &Path, args: &[&str]) {
    let status = Command::new("bash")
        .arg(script_path(script))
        .args(command)
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(status.success(), "{script} {command:?} failed");
}

pub(crate) fn stop_service(script: &str, dir: &Path) {
    let _ = Command::new("bash")
        .arg(script_path(script))
        .args(["stop", "--rm"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A new directory under the system temp dir that outlives the test, so its logs and data can be read after a
/// failure.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
        .keep()
}

/// A throwaway MariaDB with binlog ROW/FULL/FULL, a replication user `canal`/`canal` and admin `root`/`root`.
pub struct MariaDb {
    dir: PathBuf,
    pub port: u16,
    /// PID of the mariadbd process.
    pub pid: u32,
}

impl MariaDb {
    /// Starts a server; `extra` are additional mariadbd arguments (they override the defaults).
    pub fn start(extra: &[&str]) -> Self {
        let dir = fresh_dir("canal-mariadb-");
        let env = start_service("mariadb.sh", "start", &dir, extra);
        let port = env["MYSQL_PORT"].parse().expect("MYSQL_PORT is a port");
        let pid = env["MYSQL_PID"].parse().expect("MYSQL_PID is a pid");
        Self { dir, port, pid }
    }

    /// One server shared by every test of the calling test binary.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| MariaDb::start(&[]))
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server, keeping its data, as an outage would.
    pub fn stop_server(&self) {
        run_script("mariadb.sh", &["stop"], &self.dir, &[]);
    }

    /// Starts a stopped server again on the same data and port.
    pub fn start_server(&mut self) {
        let port = self.port.to_string();
        let env = start_service_with("mariadb.sh", "start", &["--port", &port], &self.dir, &[]);
        self.pid = env["MYSQL_PID"].parse().expect("MYSQL_PID is a pid");
    }

    /// An admin connection (root/root over TCP) with utf8mb4.
    pub async fn admin(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some("root"))
            .pass(Some("root"))
            .prefer_socket(false)
            .init(vec!["SET NAMES utf8mb4"]);
        mysql_async::Conn::new(opts)
            .await
            .expect("admin connection to the test MariaDB")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        stop_service("mariadb.sh", &self.dir);
    }
}

/// A throwaway ZooKeeper, standalone or a 3-node ensemble.
pub struct ZooKeeper {
    dir: PathBuf,
    /// The connect string, `host:port[,host:port...]`.
    pub servers: String,
    pub env: HashMap<String, String>,
}

impl ZooKeeper {
    pub fn standalone() -> Self {
        Self::start("start")
    }

    pub fn ensemble() -> Self {
        Self::start("start-ensemble")
    }

    fn start(command: &str) -> Self {
        let dir = fresh_dir("canal-zk-");
        let env = start_service("zookeeper.sh", command, &dir, &[]);
        Self {
            dir,
            servers: env["ZK_SERVERS"].clone(),
            env,
        }
    }

    /// PIDs of the running server processes.
    pub fn pids(&self) -> Vec<u32> {
        self.env["ZK_PIDS"]
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect()
    }

    pub fn stop(&self) {
        stop_service("zookeeper.sh", &self.dir);
    }

    /// 1-based index of the ensemble's current leader, if one answers.
    pub fn leader(&self) -> Option<usize> {
        self.servers
            .split(',')
            .position(|server| four_letter(server, "srvr").is_ok_and(|answer| answer.contains("Mode: leader")))
            .map(|i| i + 1)
    }

    /// Stops node `n` (1-based) of an ensemble.
    pub fn stop_node(&self, n: usize) {
        run_script("zookeeper.sh", &["stop-node"], &self.dir, &[&n.to_string()]);
    }

    /// Starts node `n` (1-based) again with its data, without waiting for it to join (a lone node of a stopped
    /// ensemble cannot); wait for the condition the test needs instead.
    pub fn start_node(&self, n: usize) {
        run_script(
            "zookeeper.sh",
            &["start-node", "--no-wait"],
            &self.dir,
            &[&n.to_string()],
        );
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a ZooKeeper four-letter command and returns the answer.
pub fn four_letter(address: &str, command: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(command.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Resident memory of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// How long [`eventually`] leaves between the starts of two tries that did not succeed.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The clock of one wait, shared by the async and the blocking helpers so both fail and pause alike.
struct Tries {
    timeout: Duration,
    deadline: Instant,
}

impl Tries {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            deadline: Instant::now() + timeout,
        }
    }

    /// After a try that started at `started` failed with `reason`: how long to pause before the next, or, once the
    /// time is up, the failure message. A try that took longer than [`RETRY_PAUSE`] is followed at once, so a
    /// check that waits by itself (a `get` with a timeout) is not slowed down.
    fn failed(&self, what: &str, started: Instant, reason: String) -> Result<Duration, String> {
        if Instant::now() >= self.deadline {
            let timeout = self.timeout;
            return Err(format!("timed out after {timeout:?} waiting for {what}: {reason}"));
        }
        Ok(RETRY_PAUSE.saturating_sub(started.elapsed()))
    }
}

/// Tries `check` until it returns `Ok`, and returns that value; panics after `timeout` with `what` and the reason
/// the last try gave. This is the one way tests wait: for a condition, never for a fixed time.
///
/// `check` may itself wait (a `get` with a timeout, say) and may gather state across tries.
pub async fn eventually<T>(timeout: Duration, what: &str, check: impl AsyncFnMut() -> Result<T, String>) -> T {
    try_eventually(timeout, what, check)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"))
}

/// [`eventually`] for callers that report a failure rather than panic (the benchmark): `Err` carries the message
/// [`eventually`] would panic with.
pub async fn try_eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, String> {
    let tries = Tries::new(timeout);
    loop {
        let started = Instant::now();
        match check().await {
            Ok(value) => return Ok(value),
            Err(reason) => tokio::time::sleep(tries.failed(what, started, reason)?).await,
        }
    }
}

/// [`eventually`] for code that runs without an async runtime or on a blocking thread.
///
/// Also the choice inside a spawned task: the compiler cannot yet prove the future of an async closure `Send`
/// there ("implementation of `Send` is not general enough"), so such a task waits on a blocking thread.
pub fn eventually_blocking<T>(timeout: Duration, what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    try_eventually_blocking(timeout, what, check).unwrap_or_else(|failure| panic!("{failure}"))
}

/// [`eventually_blocking`] that returns the failure instead of panicking.
pub fn try_eventually_blocking<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let tries = Tries::new(timeout);
    loop {
        let started = Instant::now();
        match check() {
            Ok(value) => return Ok(value),
            Err(reason) => std::thread::sleep(tries.failed(what, started, reason)?),
        }
    }
}

/// [`eventually`] for a condition that is simply true or false.
pub async fn wait_until<F: FnMut() -> bool>(timeout: Duration, what: &str, mut condition: F) {
    eventually(
        timeout,
        what,
        async || if condition() { Ok(()) } else { Err("not yet".into()) },
    )
    .await
}

/// When a `canal-instance` log line was written, from its leading timestamp (tracing's default format: RFC 3339 in
/// UTC with microseconds). The instances and the test share the machine's clock, so these times compare with
/// `SystemTime::now()` in the test.
pub fn log_line_time(line: &str) -> Option<std::time::SystemTime> {
    let stamp: jiff::Timestamp = line.split_whitespace().next()?.parse().ok()?;
    Some(stamp.into())
}

/// A `canal-instance` process started from a YAML config.
pub struct InstanceProcess {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    log: PathBuf,
}

impl InstanceProcess {
    /// Starts `binary --config` with `config` (YAML) and the environment `env`; does not wait for readiness.
    pub fn spawn(binary: &str, dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir).expect("instance dir");
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!("instance-{}.log", STARTS.fetch_add(1, Ordering::Relaxed)));
        let log_file = std::fs::File::create(&log).expect("create log");
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .expect("spawn canal-instance");
        Self {
            child,
            port,
            dir: dir.to_path_buf(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let what = format!("`{needle}` in the instance log");
        eventually(timeout, &what, async || {
            let log = self.log();
            if log.contains(needle) {
                Ok(())
            } else {
                Err(format!("the log so far:\n{log}"))
            }
        })
        .await
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        eventually(timeout, "the instance to exit", async || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status.code()),
            _ => Err(format!("still running; its log:\n{}", self.log())),
        })
        .await
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        self.wait_exit(Duration::from_secs(30)).await
    }
}

impl Drop for InstanceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A standalone instance config for `mysql` reading only `schema`.
pub fn standalone_config(destination: &str, mysql: &MariaDb, schema: &str, port: u16, data_dir: &Path) -> String {
    format!(
        "destination: {destination}\n\
         source:\n  address: {}\n  username: canal\n  serverId: {}\n\
         filter:\n  include: '{schema}\\..*'\n\
         server:\n  host: 127.0.0.1\n  port: {port}\n  metricsPort: 0\n\
         dataDir: {}\n",
        mysql.address(),
        1000 + port as u32 % 50000,
        data_dir.display()
    )
}

/// The Python interpreter of the test venv with canal-python 0.4 and protobuf 3.20.x, created on first use.
pub fn python_with_canal() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| venv_python("venv.sh")).clone()
}

/// The Python interpreter of the chart venv (kubernetes-validate), created on first use.
pub fn python_with_chart_tools() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| venv_python("chart_venv.sh")).clone()
}

/// Runs `e2e/python/<script>`, which creates (or checks) a venv and prints its python as the last line.
fn venv_python(script: &str) -> PathBuf {
    let script = repo_root().join("e2e/python").join(script);
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .expect("python path")
            .trim(),
    )
}

/// `helm` (v4, built from Go modules by `e2e/tools/build.sh` into `target/tools/`), built on first use.
pub fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| go_tool("helm")).clone()
}

/// `promtool` (from github.com/prometheus/prometheus, built by `e2e/tools/build.sh`), built on first use.
pub fn promtool() -> PathBuf {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| go_tool("promtool")).clone()
}

/// The Prometheus server (from the same module as promtool), built on first use.
pub fn prometheus_binary() -> PathBuf {
    static PROMETHEUS: OnceLock<PathBuf> = OnceLock::new();
    PROMETHEUS.get_or_init(|| go_tool("prometheus")).clone()
}

/// Runs `e2e/tools/build.sh NAME` (instant when the binary is up to date; it prints its directory last) and returns
/// the binary's path. The script locks, so test binaries that ask at the same time build it once.
fn go_tool(name: &str) -> PathBuf {
    let script = repo_root().join("e2e/tools/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} {name} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .expect("the tools directory")
        .trim()
        .to_string();
    let bin = Path::new(&dir).join(name);
    assert!(bin.is_file(), "{} did not build {}", script.display(), bin.display());
    bin
}

/// A TCP proxy the tests control: while cut, it forwards nothing in either direction (a silent partition, not a
/// closed connection), so the client on one side learns of the cut only through its own timeouts.
pub struct TcpProxy {
    pub address: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where new connections go; [`TcpProxy::retarget`] moves it, as a virtual IP moves in a failover.
    target: std::sync::Arc<std::sync::Mutex<String>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding a fresh loopback port to `target`.
    pub async fn start(target: &str) -> Self {
        Self::start_on("127.0.0.1:0", target).await
    }

    /// Starts forwarding `listen` (an `ip:port`, port 0 for a fresh one) to `target`.
    pub async fn start_on(listen: &str, target: &str) -> Self {
        use std::sync::atomic::AtomicBool;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("bind proxy on {listen}: {e}"));
        let address = listener.local_addr().expect("proxy address").to_string();
        let cut = std::sync::Arc::new(AtomicBool::new(false));
        let target = std::sync::Arc::new(std::sync::Mutex::new(target.to_string()));
        let accept = {
            let cut = cut.clone();
            let target = target.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let to = target.lock().expect("proxy target").clone();
                    let Ok(outbound) = tokio::net::TcpStream::connect(&to).await else {
                        continue;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(forward(ri, wo, cut.clone()));
                    tokio::spawn(forward(ro, wi, cut.clone()));
                }
            })
        };
        Self {
            address,
            cut,
            target,
            accept,
        }
    }

    /// Sends new connections to `target`; open ones stay where they are.
    pub fn retarget(&self, target: &str) {
        *self.target.lock().expect("proxy target") = target.to_string();
    }

    /// Stops forwarding; bytes sent meanwhile are held back until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// `GET path` over HTTP/1.0 for the probe endpoints: status code and body.
pub fn http_get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Write;
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
