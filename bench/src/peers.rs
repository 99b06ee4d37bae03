//! The consumers measured on each workload's binlog files: canal-rs through its TCP protocol with the project's
//! client, the peers under `bench/`, and the physical limit (the server streaming raw binlog bytes).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde::Serialize;

use canal_e2e::{InstanceProcess, MariaDb, free_port, standalone_config};
use canal_instance::client::{CanalClient, GetWait};
use canal_instance::proto::EntryType;
use canal_instance::proto::entry::RowChange;

use crate::workloads::{SCHEMA, Workload};

/// One consumer on one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub consumer: &'static str,
    pub workload: &'static str,
    pub rows: u64,
    pub seconds: f64,
    /// canal-instance only: peak resident set (MiB) and CPU seconds per million rows.
    pub peak_rss_mib: Option<f64>,
    pub cpu_seconds_per_million_rows: Option<f64>,
    /// Why there is no figure, when the consumer failed.
    pub error: Option<String>,
}

impl Measurement {
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn failed(consumer: &'static str, workload: &Workload, error: String) -> Self {
        eprintln!("bench: {consumer} on {}: {error}", workload.name);
        Self {
            consumer,
            workload: workload.name,
            rows: 0,
            seconds: 0.0,
            peak_rss_mib: None,
            cpu_seconds_per_million_rows: None,
            error: Some(error),
        }
    }
}

/// Row changes of the workload's files in a batch of entries, decoded as a client would.
fn rows_in(entries: &[canal_instance::proto::Entry], files: &[String]) -> u64 {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter(|e| {
            let file = e.header.as_ref().map(|h| h.logfile_name()).unwrap_or_default();
            files.iter().any(|f| f == file)
        })
        .filter_map(|e| RowChange::decode(e.store_value.clone().unwrap_or_default()).ok())
        .filter(|c| !c.is_ddl())
        .map(|c| c.row_datas.len() as u64)
        .sum()
}

/// `(peak RSS MiB, CPU seconds)` of a running process, from /proc.
fn process_usage(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields overall.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some((hwm_kib / 1024.0, ticks / 100.0))
}

/// canal-instance (release build) from the workload's first file, with default store settings, and a client that
/// gets batches of 1000 and acks each.
pub async fn canal_rs(binary: &Path, db: &MariaDb, workload: &Workload) -> Measurement {
    let dir = tempfile::Builder::new()
        .prefix("canal-bench-")
        .tempdir()
        .expect("temp dir");
    let port = free_port();
    let config = standalone_config("bench", db, SCHEMA, port, &dir.path().join("data"))
        + &format!("start:\n  journalName: {}\n  position: 4\n", workload.files[0]);
    let started = Instant::now();
    let mut instance = InstanceProcess::spawn(
        binary.to_str().expect("utf-8 path"),
        dir.path(),
        &config,
        port,
        &[("CANAL_SOURCE_PASSWORD", "canal")],
    );
    let outcome = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = loop {
            match CanalClient::connect(&instance.address(), "", "").await {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => return Err(format!("cannot connect: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        client.subscribe("bench", "1001", "").await.map_err(|e| e.to_string())?;
        let mut rows = 0;
        let deadline = Instant::now() + Duration::from_secs(1800);
        while rows < workload.rows {
            if Instant::now() > deadline {
                return Err(format!("only {rows} of {} rows after 30 minutes", workload.rows));
            }
            let message = client
                .get_without_ack(1000, GetWait::Up(Duration::from_millis(100)))
                .await
                .map_err(|e| e.to_string())?;
            if message.batch_id == -1 {
                continue;
            }
            rows += rows_in(&message.entries, &workload.files);
            client.ack(message.batch_id).await.map_err(|e| e.to_string())?;
        }
        Ok(rows)
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let usage = process_usage(instance.pid());
    instance.kill();
    match outcome {
        Ok(rows) => Measurement {
            consumer: "canal-rs",
            workload: workload.name,
            rows,
            seconds,
            peak_rss_mib: usage.map(|u| u.0),
            cpu_seconds_per_million_rows: usage.map(|u| u.1 / (rows as f64 / 1e6)),
            error: None,
        },
        Err(e) => Measurement::failed("canal-rs", workload, format!("{e}\n{}", instance.log())),
    }
}

/// Runs a peer program that prints `{"rows": N, "seconds": S}` as its last stdout line.
fn external(consumer: &'static str, workload: &Workload, mut command: Command) -> Measurement {
    let output = match command.stdin(Stdio::null()).output() {
        Ok(output) => output,
        Err(e) => return Measurement::failed(consumer, workload, format!("cannot run: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: Option<serde_json::Value> = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok());
    match (output.status.success(), last) {
        (true, Some(v)) => Measurement {
            consumer,
            workload: workload.name,
            rows: v["rows"].as_u64().unwrap_or(0),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
            peak_rss_mib: None,
            cpu_seconds_per_million_rows: None,
            error: None,
        },
        _ => Measurement::failed(
            consumer,
            workload,
            format!("{}\n{}", output.status, String::from_utf8_lossy(&output.stderr)),
        ),
    }
}

/// The physical limit: the server streaming the workload's files, undecoded, to a RAM disk.
pub fn raw_stream(db: &MariaDb, workload: &Workload) -> Measurement {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("canal-bench-raw-")
        .tempdir_in(base)
        .expect("temp dir");
    let mut command = Command::new("mariadb-binlog");
    command
        .args([
            "--read-from-remote-server",
            "--raw",
            "--host=127.0.0.1",
            "--user=root",
            "--password=root",
        ])
        .arg(format!("--port={}", db.port))
        .arg(format!("--result-file={}/", dir.path().display()))
        .args(&workload.files)
        .stdout(Stdio::null());
    let started = Instant::now();
    match command.stdin(Stdio::null()).status() {
        Ok(status) if status.success() => Measurement {
            consumer: "raw binlog stream",
            workload: workload.name,
            rows: workload.rows,
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_mib: None,
            cpu_seconds_per_million_rows: None,
            error: None,
        },
        other => Measurement::failed("raw binlog stream", workload, format!("mariadb-binlog: {other:?}")),
    }
}

/// python-mysql-replication, decoding every row of the workload.
pub fn python_mysql_replication(python: &Path, repo: &Path, db: &MariaDb, workload: &Workload) -> Measurement {
    let mut command = Command::new(python);
    command
        .arg(repo.join("bench/python/pmr_consumer.py"))
        .args(["127.0.0.1", &db.port.to_string(), "root", "root", &workload.files[0]])
        .arg(workload.rows.to_string());
    external("python-mysql-replication", workload, command)
}

/// go-mysql's canal package (bench/go-mysql), built beforehand.
pub fn go_mysql(binary: &Path, db: &MariaDb, workload: &Workload) -> Measurement {
    let mut command = Command::new(binary);
    command
        .args([
            "-addr",
            &db.address(),
            "-user",
            "root",
            "-password",
            "root",
            "-file",
            &workload.files[0],
        ])
        .args(["-rows", &workload.rows.to_string()]);
    external("go-mysql canal", workload, command)
}
