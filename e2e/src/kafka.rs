//! A real Apache Kafka 4 broker (KRaft: broker and controller in one JVM, one node) started by
//! `e2e/services/kafka.sh` from Kafka's jars on Maven Central (`e2e/kafka/pom.xml`, copied once into
//! `target/kafka/lib`). Transactions work (every internal topic has one replica); topics are not created
//! automatically, so a test creates its own with [`Kafka::create_topic`].
//!
//! Kafka's own admin and console tools run through [`Kafka::tool`], a `java` command on the same jars.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{fresh_dir, repo_root, run_script, start_service, start_service_with, stop_service};

const SCRIPT: &str = "kafka.sh";

/// A throwaway single-node Kafka broker in its own directory.
pub struct Kafka {
    /// `127.0.0.1:PORT`, the PLAINTEXT listener, for `bootstrap.servers`.
    pub bootstrap: String,
    /// PID of the broker's JVM.
    pub pid: u32,
    dir: PathBuf,
    env: HashMap<String, String>,
}

impl Kafka {
    /// Formats a fresh directory and starts a broker on a free port; returns once it answers requests.
    pub fn start() -> Self {
        let dir = fresh_dir("canal-kafka-");
        let env = start_service(SCRIPT, "start", &dir, &[]);
        Self {
            bootstrap: env["KAFKA_BOOTSTRAP"].clone(),
            pid: env["KAFKA_PID"].parse().expect("KAFKA_PID is a pid"),
            dir,
            env,
        }
    }

    /// The broker's client port (the port of [`Kafka::bootstrap`]).
    pub fn port(&self) -> u16 {
        self.env["KAFKA_PORT"].parse().expect("KAFKA_PORT is a port")
    }

    /// Kafka's version, as in the jar names (`4.4.0`).
    pub fn version(&self) -> &str {
        &self.env["KAFKA_VERSION"]
    }

    /// The broker's directory: `server.properties`, `data/`, `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a topic with replication factor 1 (left as it is if it exists); `compacted` sets
    /// `cleanup.policy=compact`.
    pub fn create_topic(&self, name: &str, partitions: u32, compacted: bool) {
        let partitions = partitions.to_string();
        let mut args = vec![name, "--partitions", &partitions];
        if compacted {
            args.push("--compact");
        }
        run_script(SCRIPT, &["topic"], &self.dir, &args);
    }

    /// Stops the broker (SIGTERM, a clean shutdown), keeping its data, as an outage would.
    pub fn stop_broker(&self) {
        run_script(SCRIPT, &["stop"], &self.dir, &[]);
    }

    /// Starts a stopped broker again on the same data and port; returns once it answers requests.
    pub fn start_broker(&mut self) {
        let port = self.port().to_string();
        let env = start_service_with(SCRIPT, "start", &["--port", &port], &self.dir, &[]);
        self.pid = env["KAFKA_PID"].parse().expect("KAFKA_PID is a pid");
        self.bootstrap = env["KAFKA_BOOTSTRAP"].clone();
        self.env = env;
    }

    /// The broker's log (`server.log`), followed by the JVM's own output (`kafka.out`) when it has more than
    /// the script's start markers.
    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let out = std::fs::read_to_string(self.dir.join("kafka.out")).unwrap_or_default();
        if out.lines().any(|line| !line.starts_with("==== ")) {
            log.push_str("\n---- kafka.out:\n");
            log.push_str(&out);
        }
        log
    }

    /// A `java` command that runs one of Kafka's main classes (e.g. `org.apache.kafka.tools.ConsoleProducer`,
    /// `org.apache.kafka.tools.consumer.ConsoleConsumer`, `org.apache.kafka.tools.TopicCommand`) on the broker's
    /// jars, with a small heap; add the tool's arguments (`--bootstrap-server` included).
    pub fn tool(&self, main_class: &str) -> Command {
        tool_command(Path::new(&self.env["KAFKA_LIB"]), main_class)
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        stop_service(SCRIPT, &self.dir);
    }
}

/// Where `kafka.sh build` puts Kafka's jars.
pub fn lib_dir() -> PathBuf {
    repo_root().join("target/kafka/lib")
}

fn tool_command(lib: &Path, main_class: &str) -> Command {
    let java = std::env::var_os("JAVA").unwrap_or_else(|| "java".into());
    let mut command = Command::new(java);
    // `lib/*` is expanded by java itself, not by a shell.
    command
        .args([
            "-Xms16m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-Djava.net.preferIPv4Stack=true",
            "-cp",
        ])
        .arg(lib.join("*"))
        .arg(main_class);
    command
}
