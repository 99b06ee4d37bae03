//! Compatibility with canal's own Java client: `ClusterCanalConnector` (com.alibaba.otter:canal.client 1.1.8 from
//! Maven Central, built from `e2e/java/` with Maven on first use) finds the active canal-rs instance through
//! ZooKeeper, subscribes, gets and acks rows, and follows a failover (SIGTERM and SIGKILL of the active instance) to
//! the standby. Needs `java` and `mvn` on the PATH and Maven Central for the first build.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use canal_e2e::{InstanceProcess, MariaDb, ZooKeeper, free_port, repo_root};
use canal_instance::client::{CanalClient, GetWait};
use common::{BINARY, TailReplica, exec, setup_schema};
use zookeeper_client as zk;

const SCHEMA_TABLE: &str = "CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(20))";

/// Builds `e2e/java` once per test process unless the jar is newer than the pom and every source (the first build
/// downloads canal.client and its dependencies from Maven Central into `~/.m2`) and returns the runnable jar.
fn java_client_jar() -> PathBuf {
    static JAR: OnceLock<PathBuf> = OnceLock::new();
    JAR.get_or_init(|| {
        let project = repo_root().join("e2e/java");
        let jar = project.join("target/canal-java-check.jar");
        let built = std::fs::metadata(&jar).and_then(|m| m.modified()).ok();
        let mut inputs = vec![project.join("pom.xml")];
        source_files(&project.join("src"), &mut inputs);
        let newest = inputs
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max();
        if built.is_some() && built >= newest {
            return jar;
        }
        let started = Instant::now();
        let mut child = Command::new("mvn")
            .args(["-B", "-q", "-f"])
            .arg(project.join("pom.xml"))
            .args(["package", "-DskipTests"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run mvn (Maven 3 and a JDK 17 are needed for this test): {e}"));
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let status = canal_e2e::try_eventually_blocking(Duration::from_secs(900), "mvn package of e2e/java", || {
            child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "it took more than 15 minutes".to_string())
        })
        .unwrap_or_else(|failure| {
            let _ = child.kill();
            panic!("{failure}");
        });
        assert!(
            status.success(),
            "mvn package of e2e/java failed ({status}):\n{}\n{}",
            stdout.join().unwrap(),
            stderr.join().unwrap()
        );
        println!("built e2e/java in {:.1?}", started.elapsed());
        assert!(jar.exists(), "{} was not built", jar.display());
        jar
    })
    .clone()
}

/// Every file under `dir`, recursively.
fn source_files(dir: &std::path::Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The Java program `canalrs.ClusterCheck` running against a ZooKeeper, its stdout lines collected as they arrive.
struct JavaClient {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Ends at stdout's EOF, after the process exits.
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl JavaClient {
    fn start(zookeeper: &str, destination: &str, expected_rows: usize, timeout: Duration) -> Self {
        let mut child = Command::new("java")
            .args(["-Xmx256m", "-XX:+UseSerialGC", "-jar"])
            .arg(java_client_jar())
            .args([
                zookeeper,
                destination,
                &expected_rows.to_string(),
                &timeout.as_secs().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run java (a JDK 17 is needed for this test)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stdout = {
            let lines = lines.clone();
            Some(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            }))
        };
        let stderr = Some(drain(child.stderr.take().unwrap()));
        Self {
            child,
            lines,
            stdout,
            stderr,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The `ROW ...` lines so far, without the prefix.
    fn rows(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("ROW "))
            .map(str::to_string)
            .collect()
    }

    /// Rows covered by `ACK <batchId> <rows>` lines so far.
    fn acked_rows(&self) -> usize {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("ACK "))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
            .sum()
    }

    async fn wait_for(&mut self, what: &str, timeout: Duration, mut condition: impl FnMut(&Self) -> bool) {
        // `Ok(false)`: the client exited without getting there, which no further wait can change.
        let reached = canal_e2e::try_eventually(timeout, what, async || {
            if condition(self) {
                Ok(true)
            } else if !matches!(self.child.try_wait(), Ok(None)) {
                Ok(false)
            } else {
                Err("not yet".to_string())
            }
        })
        .await;
        if reached != Ok(true) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "the Java client did not reach `{what}` ({}):\nstdout:\n{}\nstderr:\n{}",
                reached.err().unwrap_or_else(|| "it exited".into()),
                self.lines().join("\n"),
                self.stderr.take().map(|h| h.join().unwrap()).unwrap_or_default()
            );
        }
    }

    /// Waits for the process to exit (it stops itself after its own timeout): exit status, stdout lines, stderr.
    async fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stderr = self.stderr.take().map(|h| h.join().unwrap()).unwrap_or_default();
        if let Some(stdout) = self.stdout.take() {
            stdout.join().unwrap();
        }
        (status, self.lines(), stderr)
    }
}

impl Drop for JavaClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(db: &MariaDb, schema: &str, port: u16, zookeeper: &str) -> String {
    let dir = canal_e2e::fresh_dir("canal-java-test-");
    common::zk_instance_config(db, schema, port, zookeeper, &dir)
}

fn spawn(config: &str, port: u16) -> InstanceProcess {
    let dir = canal_e2e::fresh_dir("canal-java-test-");
    InstanceProcess::spawn(BINARY, &dir, config, port, &[("CANAL_SOURCE_PASSWORD", "canal")])
}

#[tokio::test]
async fn cluster_connector_finds_the_active_instance_and_acks() {
    let jar_build = tokio::task::spawn_blocking(java_client_jar);
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    setup_schema(db, "java_db", &[SCHEMA_TABLE]).await;
    let port = free_port();
    let instance = spawn(&config(db, "java_db", port, &zookeeper.servers), port);
    instance
        .wait_for_log("binlog dump started", Duration::from_secs(30))
        .await;
    exec(
        db,
        "java_db",
        &[
            "INSERT INTO orders VALUES (1, 'tea'), (2, 'coffee'), (3, 'water')",
            "UPDATE orders SET item = 'milk' WHERE id = 2",
            "DELETE FROM orders WHERE id = 3",
        ],
    )
    .await;
    jar_build.await.unwrap();

    let started = Instant::now();
    let java = JavaClient::start(&zookeeper.servers, "example", 5, Duration::from_secs(60));
    let (status, lines, stderr) = java.finish().await;
    println!("the Java client took {:.1?}", started.elapsed());
    let stdout = lines.join("\n");
    assert!(
        status.success(),
        "the Java client failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let rows: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ROW ")).collect();
    assert_eq!(
        rows,
        [
            "java_db orders INSERT 1",
            "java_db orders INSERT 2",
            "java_db orders INSERT 3",
            "java_db orders UPDATE 2",
            "java_db orders DELETE 3",
        ],
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("DONE 5"), "{stdout}");

    // The acks reached canal-rs: the cursor is in ZooKeeper, and nothing is left for client 1001.
    let zk = zk::Client::connect(&zookeeper.servers)
        .await
        .expect("connect to the test ZooKeeper");
    let (cursor, _) = zk
        .get_data("/otter/canal/destinations/example/1001/cursor")
        .await
        .expect("the cursor node exists after the Java client acked");
    let cursor: serde_json::Value = serde_json::from_slice(&cursor).unwrap();
    assert_eq!(
        cursor["@type"], "com.alibaba.otter.canal.protocol.position.LogPosition",
        "{cursor}"
    );
    assert!(cursor["postion"]["position"].as_i64().unwrap() > 4, "{cursor}");
    assert!(
        zk.check_stat("/otter/canal/destinations/example/1001/running")
            .await
            .unwrap()
            .is_none(),
        "the Java client released its client running node on disconnect"
    );
    let mut client = CanalClient::connect(&instance.address(), "", "").await.unwrap();
    client.subscribe("example", "1001", "").await.unwrap();
    let rest = client
        .get_without_ack(100, GetWait::Up(Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(
        common::changes(&rest.entries).is_empty(),
        "acks from the Java client were applied"
    );
}

#[tokio::test]
async fn cluster_connector_follows_a_graceful_failover() {
    failover("java_term_db", Fault::Terminate).await;
}

#[tokio::test]
async fn cluster_connector_follows_a_crash_failover() {
    failover("java_kill_db", Fault::Kill).await;
}

#[derive(Debug)]
enum Fault {
    /// SIGTERM: the active instance hands over at once.
    Terminate,
    /// SIGKILL: the standby takes over after the session timeout (4 s) plus the failover delay (1 s).
    Kill,
}

/// The Java client consumes from instance A, A goes away (`fault`), B takes over, and the Java client continues on B
/// with the rows written after the handover: every row exactly once.
async fn failover(schema: &str, fault: Fault) {
    let jar_build = tokio::task::spawn_blocking(java_client_jar);
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    setup_schema(db, schema, &[SCHEMA_TABLE]).await;
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = spawn(&config(db, schema, port_a, &zookeeper.servers), port_a);
    a.wait_for_log("became the active instance", Duration::from_secs(30))
        .await;
    a.wait_for_log("binlog dump started", Duration::from_secs(30)).await;
    let b = spawn(&config(db, schema, port_b, &zookeeper.servers), port_b);
    b.wait_for_log("connected to ZooKeeper", Duration::from_secs(30)).await;
    jar_build.await.unwrap();

    let mut java = JavaClient::start(&zookeeper.servers, "example", 6, Duration::from_secs(120));
    java.wait_for("CONNECTED", Duration::from_secs(60), |j| {
        j.lines().iter().any(|l| l == "CONNECTED")
    })
    .await;
    exec(db, schema, &["INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c')"]).await;
    java.wait_for("3 rows acked", Duration::from_secs(30), |j| j.acked_rows() >= 3)
        .await;
    // Acks get no reply; the server answering the next GET shows it processed the last one.
    let last_ack = java
        .lines()
        .iter()
        .rev()
        .find_map(|l| Some(l.strip_prefix("ACK ")?.split_whitespace().next()?.to_string()))
        .unwrap();
    java.wait_for("the last ack confirmed", Duration::from_secs(30), |j| {
        j.lines().contains(&format!("CONFIRMED {last_ack}"))
    })
    .await;

    let handover = Instant::now();
    match fault {
        Fault::Terminate => assert_eq!(a.terminate().await, Some(0)),
        Fault::Kill => a.kill(),
    }
    b.wait_for_log("became the active instance", Duration::from_secs(30))
        .await;
    println!("{fault:?}: B became active {:.1?} after the fault", handover.elapsed());
    exec(db, schema, &["INSERT INTO orders VALUES (4, 'd'), (5, 'e'), (6, 'f')"]).await;
    java.wait_for("the rows after the handover", Duration::from_secs(90), |j| {
        j.rows().len() >= 6
    })
    .await;
    println!(
        "{fault:?}: the Java client received the rows written after the handover {:.1?} after the fault",
        handover.elapsed()
    );
    let (status, lines, stderr) = java.finish().await;
    let stdout = lines.join("\n");
    assert!(
        status.success(),
        "the Java client failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let rows: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ROW ")).collect();
    let expected: Vec<String> = (1..=6).map(|id| format!("{schema} orders INSERT {id}")).collect();
    assert_eq!(
        rows, expected,
        "{fault:?}: every row exactly once, across the failover:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("DONE 6"), "{stdout}");
    assert!(
        b.log().contains("client authenticated"),
        "the Java client moved to the new active instance:\n{}",
        b.log()
    );
    println!("{fault:?}: the Java client's log:\n{stderr}");
}

/// canal's client running node excludes a canal-rs consumer and a canal Java consumer of the same client id, in
/// both directions: whoever holds `1001/running` fetches, the other waits and takes over when it is released.
#[tokio::test]
async fn client_running_node_excludes_java_and_rust_consumers_both_ways() {
    let jar_build = tokio::task::spawn_blocking(java_client_jar);
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    setup_schema(db, "interop_db", &[SCHEMA_TABLE]).await;
    let port = free_port();
    let instance = spawn(&config(db, "interop_db", port, &zookeeper.servers), port);
    instance
        .wait_for_log("binlog dump started", Duration::from_secs(30))
        .await;
    jar_build.await.unwrap();
    let insert = |id: u32| format!("INSERT INTO orders VALUES ({id}, 'x')");

    // Rust first: the Java consumer waits (canal's connect() blocks until its client is the running one).
    let dir = canal_e2e::fresh_dir("canal-java-interop-");
    let mut rust = TailReplica::start(&dir, "first", &zookeeper.servers, &["--max-changes", "2"]);
    rust.wait_for_log("became the active consumer", Duration::from_secs(30))
        .await;
    let mut java = JavaClient::start(&zookeeper.servers, "example", 2, Duration::from_secs(90));
    exec(db, "interop_db", &[&insert(1), &insert(2)]).await;
    assert!(
        rust.wait_exit(Duration::from_secs(30)).await.success(),
        "{}",
        rust.log()
    );
    assert_eq!(rust.ids(), [1, 2]);
    assert!(
        java.rows().is_empty(),
        "the Java consumer fetched while canal-rs held the node"
    );
    // Released by canal-rs: the Java consumer takes over (after canal's own 5 s delay) from the cursor.
    exec(db, "interop_db", &[&insert(3), &insert(4)]).await;
    java.wait_for("DONE", Duration::from_secs(60), |j| {
        j.lines().iter().any(|l| l.starts_with("DONE"))
    })
    .await;
    assert_eq!(
        java.rows(),
        ["interop_db orders INSERT 3", "interop_db orders INSERT 4"]
    );
    let (status, _, stderr) = java.finish().await;
    assert!(status.success(), "{stderr}");

    // Java first: the canal-rs consumer waits, then takes over once the Java client releases the node.
    let mut java = JavaClient::start(&zookeeper.servers, "example", 1, Duration::from_secs(90));
    java.wait_for("CONNECTED", Duration::from_secs(60), |j| {
        j.lines().iter().any(|l| l == "CONNECTED")
    })
    .await;
    let mut rust = TailReplica::start(&dir, "second", &zookeeper.servers, &["--max-changes", "1"]);
    rust.wait_for_log("consuming example", Duration::from_secs(30)).await;
    exec(db, "interop_db", &[&insert(5)]).await;
    let (status, lines, stderr) = java.finish().await;
    assert!(status.success(), "{stderr}");
    assert!(lines.iter().any(|l| l == "ROW interop_db orders INSERT 5"), "{lines:?}");
    assert!(
        rust.ids().is_empty(),
        "canal-rs fetched while the Java consumer held the node"
    );
    exec(db, "interop_db", &[&insert(6)]).await;
    assert!(
        rust.wait_exit(Duration::from_secs(60)).await.success(),
        "{}",
        rust.log()
    );
    assert_eq!(rust.ids(), [6], "canal-rs continues after the Java consumer's cursor");
}
