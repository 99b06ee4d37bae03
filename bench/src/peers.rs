//! The consumers measured on each workload's binlog files: canal-rs through its TCP protocol with the project's
//! client, the peers under `bench/` (among them canal's own server behind canal's Java client), and the physical
//! limit (the server streaming raw binlog bytes).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde::Serialize;

use canal_e2e::{InstanceProcess, MariaDb, free_port, standalone_config};
use canal_instance::client::{CanalClient, GetWait};
use canal_instance::protocol::EntryType;
use canal_instance::protocol::entry::RowChange;

use crate::workloads::{SCHEMA, Workload};

/// One consumer on one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub consumer: &'static str,
    pub workload: &'static str,
    pub rows: u64,
    pub seconds: f64,
    /// The servers only (canal-instance, canal's JVM): peak resident set (MiB) and CPU seconds per million rows.
    pub peak_rss_mib: Option<f64>,
    pub cpu_seconds_per_million_rows: Option<f64>,
    /// canal only: the part of `seconds` its subscription took, which starts the (lazy) destination.
    pub subscribe_seconds: Option<f64>,
    /// canal only: row entries whose header named another binlog file than the one they came from.
    pub mislabelled_entries: Option<u64>,
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
            subscribe_seconds: None,
            mislabelled_entries: None,
            error: Some(error),
        }
    }
}

/// Row changes of the workload's files in a batch of entries, decoded as a client would.
fn rows_in(entries: &[canal_instance::protocol::Entry], files: &[String]) -> u64 {
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
        let mut client = canal_e2e::try_eventually(Duration::from_secs(30), "the instance to accept", async || {
            CanalClient::connect(&instance.address(), "", "")
                .await
                .map_err(|e| format!("cannot connect: {e}"))
        })
        .await?;
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
            subscribe_seconds: None,
            mislabelled_entries: None,
            error: None,
        },
        Err(e) => Measurement::failed("canal-rs", workload, format!("{e}\n{}", instance.log())),
    }
}

/// Runs a peer program that prints `{"rows": N, "seconds": S}` (canal's consumer adds `"subscribe_seconds"` and
/// `"mislabelled_entries"`) as its last stdout line.
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
            subscribe_seconds: v["subscribe_seconds"].as_f64(),
            mislabelled_entries: v["mislabelled_entries"].as_u64(),
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
            subscribe_seconds: None,
            mislabelled_entries: None,
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

// A macro so that the consumer's name can be built from it at compile time.
macro_rules! canal_version {
    () => {
        "1.1.7"
    };
}
/// The version of canal's server that bench/canal/pom.xml pins (the newest of canal's server modules on Maven
/// Central: 1.1.8 published only its client-side and library modules there).
pub const CANAL_VERSION: &str = canal_version!();

/// JVM flags of canal's server: those canal's startup.sh gives a 64-bit Java 11+ (G1 with a 250 ms pause goal,
/// 2 GiB initial and 3 GiB maximum heap, 1 MiB thread stacks, full stack traces, headless, IPv4, UTF-8), less the
/// options Java 17 has dropped (-XX:+AggressiveOpts, -XX:-UseBiasedLocking).
pub const CANAL_JVM_FLAGS: &[&str] = &[
    "-server",
    "-Xms2g",
    "-Xmx3g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=250",
    "-XX:+UseGCOverheadLimit",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Xss1m",
    "-XX:-OmitStackTraceInFastThrow",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
    "-Dfile.encoding=UTF-8",
    "-DappName=otter-canal",
];

fn java() -> PathBuf {
    std::env::var_os("JAVA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    format!(
        "--- {} ---\n{}",
        path.display(),
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

/// Waits until `port` on loopback accepts, or the process exits, or `timeout` passes.
fn wait_for_port(server: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let what = format!("the canal server to listen on port {port}");
    // The inner `Err`: the server exited, which no further wait can change.
    canal_e2e::try_eventually_blocking(timeout, &what, || {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Ok(()));
        }
        match server.try_wait() {
            Ok(Some(status)) => Ok(Err(format!("the canal server exited before listening: {status}"))),
            _ => Err(format!(
                "the canal server did not listen on port {port} within {timeout:?}"
            )),
        }
    })?
}

/// Writes the conf directory of one run from bench/canal/conf: canal.properties, bench/instance.properties,
/// spring/bench-instance.xml and logback.xml, with the `@@NAME@@` fields filled in.
fn write_canal_conf(templates: &Path, conf: &Path, fields: &[(&str, String)]) -> std::io::Result<()> {
    for dir in ["bench", "spring", "data", "logs"] {
        std::fs::create_dir_all(conf.join(dir))?;
    }
    for (template, target) in [
        ("canal.properties", "canal.properties"),
        ("instance.properties", "bench/instance.properties"),
        ("bench-instance.xml", "spring/bench-instance.xml"),
        ("logback.xml", "logback.xml"),
    ] {
        let mut text = std::fs::read_to_string(templates.join(template))?;
        for (name, value) in fields {
            text = text.replace(&format!("@@{name}@@"), value);
        }
        std::fs::write(conf.join(target), text)?;
    }
    Ok(())
}

/// canal's own server (bench/canal: canal's modules from Maven Central behind a launcher of ours, see
/// CanalServerMain.java) with canal's default store and parser settings, read by a consumer on canal's Java client
/// (CanalBenchConsumer.java) that gets batches of 1000 and acks each. One fresh conf directory per workload under
/// target/bench/canal/. The server starts first and is left to come up; the destination is lazy, so the dump
/// starts with the consumer's subscription, and the consumer's clock runs from there to its last ack. RSS is the
/// server JVM's peak; CPU is what the server used from the moment it listened until the consumer was done.
pub fn canal_server(dist: &Path, repo: &Path, db: &MariaDb, workload: &Workload) -> Measurement {
    const CONSUMER: &str = concat!("canal ", canal_version!(), " (Java)");
    let conf = repo.join("target/bench/canal").join(workload.name);
    let _ = std::fs::remove_dir_all(&conf);
    let port = free_port();
    let fields = [
        ("PORT", port.to_string()),
        ("DATA_DIR", conf.join("data").display().to_string()),
        ("ADDRESS", db.address()),
        ("USER", "canal".to_string()),
        ("PASSWORD", "canal".to_string()),
        ("SLAVE_ID", (3_000_000 + u32::from(port)).to_string()),
        ("JOURNAL", workload.files[0].clone()),
        ("SCHEMA", SCHEMA.to_string()),
    ];
    if let Err(e) = write_canal_conf(&repo.join("bench/canal/conf"), &conf, &fields) {
        return Measurement::failed(CONSUMER, workload, format!("cannot write {}: {e}", conf.display()));
    }
    let jar = dist.join("canal-bench-consumer.jar");
    let libs = dist.join("lib/*");
    let server_out = conf.join("logs/server.out");
    let spawned = std::fs::File::create(&server_out).and_then(|out| {
        let err = out.try_clone()?;
        Command::new(java())
            .args(CANAL_JVM_FLAGS)
            .arg(format!("-Dcanal.conf={}", conf.join("canal.properties").display()))
            .arg(format!("-Dcanal.log.dir={}", conf.join("logs").display()))
            .arg(format!(
                "-Dlogback.configurationFile={}",
                conf.join("logback.xml").display()
            ))
            .arg("-cp")
            .arg(format!("{}:{}:{}", conf.display(), libs.display(), jar.display()))
            .arg("canalrs.bench.CanalServerMain")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
    });
    let mut server = match spawned {
        Ok(server) => server,
        Err(e) => return Measurement::failed(CONSUMER, workload, format!("cannot start java: {e}")),
    };
    let logs = || format!("{}\n{}", tail(&conf.join("logs/canal.log"), 40), tail(&server_out, 20));
    if let Err(e) = wait_for_port(&mut server, port, Duration::from_secs(120)) {
        let _ = server.kill();
        let _ = server.wait();
        return Measurement::failed(CONSUMER, workload, format!("{e}\n{}", logs()));
    }
    let before = process_usage(server.id());
    let mut consumer = Command::new(java());
    consumer
        .arg(format!(
            "-Dlogback.configurationFile={}",
            repo.join("bench/canal/conf/logback-consumer.xml").display()
        ))
        .arg("-cp")
        .arg(format!("{}:{}", libs.display(), jar.display()))
        .arg("canalrs.bench.CanalBenchConsumer")
        .args(["127.0.0.1", &port.to_string(), "bench"])
        .arg(workload.rows.to_string())
        .arg("1800")
        .args(&workload.files);
    let mut measured = external(CONSUMER, workload, consumer);
    let after = process_usage(server.id());
    let _ = server.kill();
    let _ = server.wait();
    if let Some(e) = &mut measured.error {
        let logs = logs();
        eprintln!("{logs}");
        e.push_str(&logs);
        return measured;
    }
    if let (Some((_, cpu_before)), Some((rss, cpu_after))) = (before, after) {
        measured.peak_rss_mib = Some(rss);
        measured.cpu_seconds_per_million_rows = Some((cpu_after - cpu_before) / (measured.rows as f64 / 1e6));
    }
    measured
}
