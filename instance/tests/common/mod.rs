//! Shared helpers for the integration tests: an instance per test, reading its own schema of a shared MariaDB.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use canal_e2e::{InstanceProcess, MariaDb, eventually, free_port, standalone_config};
use canal_instance::client::{CanalClient, GetWait};
use canal_instance::protocol::entry::{RowChange, RowData};
use canal_instance::protocol::{Entry, EntryType, EventType};
use mysql_async::prelude::Queryable;
use prost::Message;

pub const BINARY: &str = env!("CARGO_BIN_EXE_canal-instance");

/// A destination under test: its own schema, data dir and instance process.
pub struct Fixture {
    pub schema: String,
    pub dir: PathBuf,
    pub port: u16,
    pub config: String,
    pub instance: InstanceProcess,
}

/// Creates `schema` (dropping an old one) and runs each statement.
pub async fn setup_schema(db: &MariaDb, schema: &str, statements: &[&str]) {
    let mut conn = db.admin().await;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE `{schema}`")).await.unwrap();
    conn.query_drop(format!("USE `{schema}`")).await.unwrap();
    for s in statements {
        conn.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// Runs statements in `schema`.
pub async fn exec(db: &MariaDb, schema: &str, statements: &[&str]) {
    let mut conn = db.admin().await;
    conn.query_drop(format!("USE `{schema}`")).await.unwrap();
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    for s in statements {
        conn.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

impl Fixture {
    /// Starts an instance reading `schema` from the current end of the binlog; `extra` is appended to its config.
    pub async fn start(db: &MariaDb, schema: &str, extra: &str) -> Fixture {
        Self::start_with(db, schema, |config| format!("{config}{extra}")).await
    }

    /// Starts an instance reading `schema` with the standalone config as `edit` changes it.
    pub async fn start_with(db: &MariaDb, schema: &str, edit: impl FnOnce(String) -> String) -> Fixture {
        let dir = canal_e2e::fresh_dir("canal-test-");
        let port = free_port();
        let config = edit(standalone_config("example", db, schema, port, &dir.join("data")));
        let instance = InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "canal")]);
        let fixture = Fixture {
            schema: schema.to_string(),
            dir,
            port,
            config,
            instance,
        };
        fixture
            .instance
            .wait_for_log("binlog dump started", Duration::from_secs(30))
            .await;
        fixture
    }

    /// Starts the instance again with the same config and data dir.
    pub async fn restart(&mut self) {
        self.instance.kill();
        self.instance = InstanceProcess::spawn(
            BINARY,
            &self.dir,
            &self.config,
            self.port,
            &[("CANAL_SOURCE_PASSWORD", "canal")],
        );
        self.instance
            .wait_for_log("binlog dump started", Duration::from_secs(30))
            .await;
    }

    pub async fn client(&self) -> CanalClient {
        let mut client = CanalClient::connect(&self.instance.address(), "", "").await.unwrap();
        client.subscribe("example", "1001", "").await.unwrap();
        client
    }
}

/// One row change as received.
#[derive(Clone, Debug)]
pub struct Change {
    pub event_type: EventType,
    pub schema: String,
    pub table: String,
    pub row: RowData,
}

/// Decodes the row changes of entries (DDL and transaction markers are skipped).
pub fn changes(entries: &[Entry]) -> Vec<Change> {
    let mut out = Vec::new();
    for entry in entries {
        if entry.entry_type() != EntryType::Rowdata {
            continue;
        }
        let header = entry.header.clone().unwrap_or_default();
        let change = RowChange::decode(entry.store_value.clone().unwrap_or_default()).unwrap();
        if change.is_ddl() {
            continue;
        }
        for row in change.row_datas {
            out.push(Change {
                event_type: header.event_type(),
                schema: header.schema_name().to_string(),
                table: header.table_name().to_string(),
                row,
            });
        }
    }
    out
}

/// Gets and acks until `count` row changes arrived (or panics after `timeout`). Returns all entries.
pub async fn receive_rows(client: &mut CanalClient, count: usize, timeout: Duration) -> Vec<Entry> {
    let mut entries = Vec::new();
    let what = format!("{count} row changes");
    eventually(timeout, &what, async || {
        let arrived = changes(&entries).len();
        if arrived >= count {
            return Ok(());
        }
        let message = client
            .get_without_ack(1000, GetWait::Up(Duration::from_millis(200)))
            .await
            .unwrap();
        if message.batch_id != -1 {
            entries.extend(message.entries);
            client.ack(message.batch_id).await.unwrap();
        }
        Err(format!("{arrived} of {count} row changes arrived"))
    })
    .await;
    entries
}

/// The value of column `name` in a row image.
pub fn value_of<'a>(columns: &'a [canal_instance::protocol::entry::Column], name: &str) -> &'a str {
    columns
        .iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .value()
}

/// A ZooKeeper-mode instance config reading `schema` (session 4 s, failover delay 1 s, no probe port).
pub fn zk_instance_config(db: &MariaDb, schema: &str, port: u16, zookeeper: &str, dir: &std::path::Path) -> String {
    zk_instance_config_with(db, schema, port, 0, zookeeper, dir)
}

/// Like [`zk_instance_config`], with the probe port `metrics` (0 disables it).
pub fn zk_instance_config_with(
    db: &MariaDb,
    schema: &str,
    port: u16,
    metrics: u16,
    zookeeper: &str,
    dir: &std::path::Path,
) -> String {
    format!(
        "destination: example\n\
         source:\n  address: {}\n  username: canal\n  serverId: {}\n\
         filter:\n  include: '{schema}\\..*'\n\
         server:\n  host: 127.0.0.1\n  port: {port}\n  metricsPort: {metrics}\n\
         dataDir: {}\n\
         zookeeper:\n  servers: '{zookeeper}'\n  sessionTimeoutSeconds: 4\n  failoverDelaySeconds: 1\n",
        db.address(),
        3000 + port % 1000,
        dir.join("data").display()
    )
}

/// A `canal-instance tail --zookeeper ... --client-ha` consumer replica, printing to files in `dir`.
pub struct TailReplica {
    child: std::process::Child,
    out: PathBuf,
    err: PathBuf,
}

impl TailReplica {
    /// Starts replica `name` (session 4 s, failover delay 1 s); `extra` are more tail arguments.
    pub fn start(dir: &std::path::Path, name: &str, zookeeper: &str, extra: &[&str]) -> Self {
        let out = dir.join(format!("tail-{name}.out"));
        let err = dir.join(format!("tail-{name}.err"));
        let child = std::process::Command::new(BINARY)
            .args([
                "tail",
                "--zookeeper",
                zookeeper,
                "--destination",
                "example",
                "--client-ha",
            ])
            .args(["--zookeeper-session-timeout", "4", "--failover-delay", "1"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).expect("tail stdout file"))
            .stderr(std::fs::File::create(&err).expect("tail stderr file"))
            .spawn()
            .expect("spawn tail");
        Self { child, out, err }
    }

    /// The `id` of every row change printed so far.
    pub fn ids(&self) -> Vec<u32> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["after"]["id"].as_str().and_then(|id| id.parse().ok()))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Whether the replica last reported itself the active consumer.
    pub fn active(&self) -> bool {
        let log = self.log();
        log.rfind("became the active consumer") > log.rfind("no longer the active consumer")
    }

    pub fn signal(&self, name: &str) {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let what = format!("`{needle}` in the tail log");
        eventually(timeout, &what, async || {
            let log = self.log();
            if log.contains(needle) {
                Ok(())
            } else {
                Err(format!("tail never logged it:\n{log}"))
            }
        })
        .await
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        eventually(timeout, "tail to exit", async || {
            match self.child.try_wait().expect("tail status") {
                Some(status) => Ok(status),
                None => Err(format!("tail did not exit:\n{}", self.log())),
            }
        })
        .await
    }
}

impl Drop for TailReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
