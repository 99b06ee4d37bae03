//! canal's own server (canal 1.1.7, Java, from Maven Central) for one destination, as the reference side of
//! differential tests: the same binlog read by canal and by canal-rs, Entries compared.
//!
//! The server is make bench's canal peer (`bench/canal/`: canal's jars and our stand-in for canal's deployer
//! launcher, built once per test process by `bench/canal/build.sh`) with the configuration in `e2e/canal/`: canal's
//! shipped defaults, the file-backed meta manager, and the table-meta TSDB on, on H2, as canal ships it, so that rows
//! are decoded with the table structure of their time (see `e2e/canal/README.md`). Each start gets a fresh
//! directory under the temp dir, kept after the test for its logs:
//!
//! ```text
//! canal.properties, logback.xml, <destination>/instance.properties, spring/...   the configuration (class path)
//! data/<destination>/meta.dat                                                   canal's cursor
//! data/<destination>/h2.mv.db                                                   the TSDB
//! logs/canal.log, logs/server.out                                               canal's log, the JVM's output
//! ```

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, fresh_dir, repo_root, try_eventually_blocking};

/// The canal version bench/canal/pom.xml pins.
pub const CANAL_VERSION: &str = "1.1.7";

/// How long a start may take: the JVM, Spring, the TSDB's first snapshot (`show create table` of every table the
/// filter selects) on a 2-core machine that may be compiling at the same time.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// JVM flags: a small heap and the serial collector, and only the C1 compiler, so that the JVM starts quickly and
/// leaves the other core to the test. The time zone is added per start (canal renders TIMESTAMP in it).
const JVM_FLAGS: &[&str] = &[
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xss1m",
    "-XX:-OmitStackTraceInFastThrow",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
    "-Dfile.encoding=UTF-8",
];

/// What one canal server reads, and how.
#[derive(Clone, Debug)]
pub struct CanalServerOptions {
    /// `host:port` of the source MariaDB/MySQL.
    pub mysql_address: String,
    /// The source user canal dumps the binlog with and reads table structures with (`show databases`,
    /// `show full tables`, `show create table` for the TSDB's snapshot): it needs REPLICATION SLAVE, REPLICATION
    /// CLIENT and SELECT. The MariaDB harness's `canal`/`canal` has exactly these.
    pub user: String,
    pub password: String,
    /// Where the dump starts: binlog file and offset (4 = the file's first event).
    pub journal: String,
    pub position: u64,
    /// `canal.instance.master.timestamp` (ms) next to the file and offset. Without it, canal 1.1.7 with the TSDB on
    /// does not start at the offset: it looks for the event times by scanning the file from its start and begins at
    /// the last transaction boundary it saw *before* the event that ends at the offset (on MariaDB: the end of the
    /// last XID commit before it, or offset 4), so it delivers the transaction ending at the offset, and DDL since
    /// the previous commit, again. With it, canal starts exactly at the offset and uses the value as the position's
    /// time for the TSDB (any time after the TSDB's newest entry, e.g. now, is right for a fresh server).
    pub timestamp: Option<u64>,
    /// The source's server id, given to canal with `timestamp` (as the start position's server id): canal 1.1.7's
    /// TSDB fails on a start position with a time but no server id (a NullPointerException in
    /// `DatabaseTableMeta.applyHistoryOnMemory`, retried for ever), and canal's own configuration has no key for it.
    /// Default 1, the MariaDB harness's `--server-id`.
    pub source_server_id: u64,
    /// canal's include filter (`canal.instance.filter.regex`) as canal reads it, e.g. `diff\..*`; escaped for the
    /// properties file here.
    pub filter_regex: String,
    /// canal's exclude filter (`canal.instance.filter.black.regex`); canal's example default `mysql\.slave_.*`.
    pub black_filter_regex: String,
    pub destination: String,
    /// The replica server id canal registers with; 0 picks one from the server's port.
    pub slave_id: u32,
    /// The table-meta TSDB (`canal.instance.tsdb.enable`), on by default as in canal's shipped configuration. Off,
    /// canal decodes every row with the table structure the source has now.
    pub tsdb: bool,
    /// The JVM's default time zone (`-Duser.timezone`), which canal renders TIMESTAMP columns in. Default `UTC`,
    /// canal-rs's default.
    pub time_zone: String,
    /// More `instance.properties` settings, written after the others (a later key wins), e.g.
    /// `("canal.instance.filter.query.dml", "true")`. Values are written as given (properties-file syntax).
    pub extra_properties: Vec<(String, String)>,
}

impl Default for CanalServerOptions {
    fn default() -> Self {
        Self {
            mysql_address: String::new(),
            user: "canal".into(),
            password: "canal".into(),
            journal: String::new(),
            position: 4,
            timestamp: None,
            source_server_id: 1,
            filter_regex: ".*\\..*".into(),
            black_filter_regex: "mysql\\.slave_.*".into(),
            destination: "diff".into(),
            slave_id: 0,
            tsdb: true,
            time_zone: "UTC".into(),
            extra_properties: Vec::new(),
        }
    }
}

/// A running canal server (a JVM), killed on drop.
pub struct CanalServer {
    /// The canal TCP protocol port on 127.0.0.1.
    pub port: u16,
    /// This server's directory (configuration, data, logs).
    pub dir: PathBuf,
    pub destination: String,
    time_zone: String,
    child: Option<Child>,
}

/// Builds `bench/canal` (once per process; build.sh itself skips an unchanged build) and returns its output
/// directory: `lib/` with canal's jars, `canal-bench-consumer.jar` with the launcher. `flock` keeps two test
/// processes from building into the same directory at once.
fn dist() -> &'static Path {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        let root = repo_root();
        let lock = root.join("target/bench-bin/canal.build.lock");
        std::fs::create_dir_all(lock.parent().expect("lock dir")).expect("create target/bench-bin");
        let started = Instant::now();
        let output = Command::new("flock")
            .arg(&lock)
            .arg("bash")
            .arg(root.join("bench/canal/build.sh"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run bench/canal/build.sh: {e}"));
        assert!(
            output.status.success(),
            "bench/canal/build.sh failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = PathBuf::from(stdout.lines().last().expect("build.sh prints its output dir").trim());
        eprintln!(
            "canal {CANAL_VERSION} ready in {} ({:.1} s)",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
        dir
    })
}

/// `value` as a properties-file value: backslashes doubled (the file format's escape), so a regex arrives intact.
fn property_value(value: &str) -> String {
    assert!(
        !value.contains(['\n', '\r']),
        "a canal property value cannot span lines: {value:?}"
    );
    value.replace('\\', "\\\\")
}

/// Copies `template` (under e2e/canal) to `target` (under the run's directory), `@@NAME@@` fields filled in.
fn write_template(template: &str, target: &Path, fields: &[(&str, String)], extra: &str) {
    let source = repo_root().join("e2e/canal").join(template);
    let mut text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
    for (name, value) in fields {
        text = text.replace(&format!("@@{name}@@"), value);
    }
    // Every `@@FIELD@@` left (the templates' comments may say `@@NAME@@`).
    let unfilled: Vec<&str> = text
        .split("@@")
        .skip(1)
        .step_by(2)
        .filter(|f| *f != "NAME" && !f.is_empty() && f.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(unfilled.is_empty(), "{template}: fields not filled in: {unfilled:?}");
    text.push_str(extra);
    std::fs::create_dir_all(target.parent().expect("a parent")).expect("create conf dir");
    std::fs::write(target, text).unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
}

/// The last `lines` lines of a file, headed by its name.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    format!(
        "--- {} (last {lines} lines) ---\n{}",
        path.display(),
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

fn java() -> PathBuf {
    std::env::var_os("JAVA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("java"))
}

impl CanalServer {
    /// Writes a fresh configuration and starts canal's server on a free port; returns once the port accepts
    /// connections. The destination is not lazy: canal has started it (parser, TSDB, dump thread) before it
    /// listens, so the dump is under way by then. Panics with the log's tail if the JVM exits or does not listen
    /// within two minutes.
    pub fn start(options: &CanalServerOptions) -> CanalServer {
        assert!(
            !options.mysql_address.is_empty(),
            "CanalServerOptions::mysql_address is required"
        );
        assert!(!options.journal.is_empty(), "CanalServerOptions::journal is required");
        let dist = dist();
        let dir = fresh_dir("canal-server-");
        let port = free_port();
        let slave_id = match options.slave_id {
            0 => 3_000_000 + u32::from(port),
            id => id,
        };
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("create data dir");
        std::fs::create_dir_all(dir.join("logs")).expect("create logs dir");
        let tsdb = options.tsdb.to_string();
        let fields = [
            ("PORT", port.to_string()),
            ("DESTINATION", options.destination.clone()),
            ("DATA_DIR", property_value(&data.display().to_string())),
            ("TSDB_ENABLE", tsdb),
            ("ADDRESS", options.mysql_address.clone()),
            ("USER", property_value(&options.user)),
            ("PASSWORD", property_value(&options.password)),
            ("SLAVE_ID", slave_id.to_string()),
            ("JOURNAL", options.journal.clone()),
            ("POSITION", options.position.to_string()),
            (
                "TIMESTAMP",
                options.timestamp.map(|t| t.to_string()).unwrap_or_default(),
            ),
            (
                "SERVER_ID",
                options
                    .timestamp
                    .map(|_| options.source_server_id.to_string())
                    .unwrap_or_default(),
            ),
            ("FILTER_REGEX", property_value(&options.filter_regex)),
            ("BLACK_REGEX", property_value(&options.black_filter_regex)),
        ];
        let extra: String = options
            .extra_properties
            .iter()
            .map(|(key, value)| format!("{key} = {value}\n"))
            .collect();
        let extra = if extra.is_empty() {
            extra
        } else {
            format!("\n# Set by the test.\n{extra}")
        };
        let destination_dir = dir.join(&options.destination);
        for (template, target, extra) in [
            ("canal.properties", dir.join("canal.properties"), ""),
            (
                "instance.properties",
                destination_dir.join("instance.properties"),
                extra.as_str(),
            ),
            ("logback.xml", dir.join("logback.xml"), ""),
            ("spring/diff-instance.xml", dir.join("spring/diff-instance.xml"), ""),
            ("spring/tsdb/h2-tsdb.xml", dir.join("spring/tsdb/h2-tsdb.xml"), ""),
            (
                "spring/tsdb/mapper/meta_history.xml",
                dir.join("spring/tsdb/mapper/meta_history.xml"),
                "",
            ),
            (
                "spring/tsdb/mapper/meta_snapshot.xml",
                dir.join("spring/tsdb/mapper/meta_snapshot.xml"),
                "",
            ),
        ] {
            write_template(template, &target, &fields, extra);
        }
        let mut server = CanalServer {
            port,
            dir,
            destination: options.destination.clone(),
            time_zone: options.time_zone.clone(),
            child: None,
        };
        server.spawn(dist);
        server
    }

    /// Starts the JVM on this server's directory and waits for the port.
    fn spawn(&mut self, dist: &Path) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/server.out"))
            .expect("create server.out");
        let err = out.try_clone().expect("server.out handle");
        let class_path = format!(
            "{}:{}:{}",
            self.dir.display(),
            dist.join("lib/*").display(),
            dist.join("canal-bench-consumer.jar").display()
        );
        let started = Instant::now();
        let child = Command::new(java())
            .args(JVM_FLAGS)
            .arg(format!("-Duser.timezone={}", self.time_zone))
            .arg(format!("-Dcanal.conf={}", self.dir.join("canal.properties").display()))
            .arg(format!("-Dcanal.log.dir={}", self.dir.join("logs").display()))
            .arg(format!(
                "-Dlogback.configurationFile={}",
                self.dir.join("logback.xml").display()
            ))
            .arg("-cp")
            .arg(class_path)
            .arg("canalrs.bench.CanalServerMain")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", java().display()));
        self.child = Some(child);
        let port = self.port;
        let what = format!("canal's server to listen on 127.0.0.1:{port}");
        let child = self.child.as_mut().expect("just spawned");
        // The inner `Err`: the JVM exited, which no further wait can change.
        let listening = try_eventually_blocking(START_TIMEOUT, &what, || {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Ok(()));
            }
            match child.try_wait() {
                Ok(Some(status)) => Ok(Err(format!("the JVM exited before listening: {status}"))),
                _ => Err("not listening yet".to_string()),
            }
        })
        .and_then(|exited| exited);
        if let Err(e) = listening {
            self.kill();
            panic!("{e}\n{}", self.log_tail(80));
        }
        eprintln!(
            "canal server {} listening on {} after {:.1} s ({})",
            self.destination,
            self.address(),
            started.elapsed().as_secs_f64(),
            self.dir.display()
        );
    }

    /// `127.0.0.1:port`, for a canal client.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The JVM's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything logged so far: canal's log (logs/canal.log) then the JVM's stdout and stderr (logs/server.out).
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join("logs").join(name)).unwrap_or_default();
        format!(
            "--- canal.log ---\n{}--- server.out ---\n{}",
            read("canal.log"),
            read("server.out")
        )
    }

    /// The last lines of both logs, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "{}\n{}",
            tail(&self.dir.join("logs/canal.log"), lines),
            tail(&self.dir.join("logs/server.out"), lines / 2)
        )
    }

    /// The TSDB's H2 database file (`canal.instance.tsdb.dir` + `/h2`, H2's MVStore file), present once the
    /// destination has started with the TSDB on.
    pub fn tsdb_file(&self) -> PathBuf {
        self.dir.join("data").join(&self.destination).join("h2.mv.db")
    }

    /// Runs SQL against the TSDB's H2 database with H2's own shell and returns its output. H2 locks its file while
    /// canal runs, so the server must be stopped first ([`CanalServer::stop`]).
    pub fn query_tsdb(&self, sql: &str) -> String {
        assert!(
            self.child.is_none(),
            "stop canal's server before reading its H2 database"
        );
        let h2 = std::fs::read_dir(dist().join("lib"))
            .expect("read lib dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("h2-") && n.ends_with(".jar"))
            })
            .expect("an h2 jar in bench/canal's lib");
        let url = format!(
            "jdbc:h2:{}/h2;MODE=MYSQL;IFEXISTS=TRUE",
            self.dir.join("data").join(&self.destination).display()
        );
        let output = Command::new(java())
            .args(["-Xmx64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(h2)
            .arg("org.h2.tools.Shell")
            .args(["-url", &url, "-user", "canal", "-password", "canal", "-sql", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run H2's shell: {e}"));
        assert!(
            output.status.success(),
            "H2 shell on {url} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the JVM cleanly (SIGTERM: canal's shutdown hook stops the destination, which flushes its cursor and
    /// closes the TSDB's H2 database) and waits for it; SIGKILL if it has not exited within 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let exited = try_eventually_blocking(Duration::from_secs(30), "canal's server to exit", || {
            match child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err("still running".to_string()),
            }
        });
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the JVM (SIGKILL, as a crash) and waits for it. canal's cursor may lag by up to one flush period, and
    /// H2 writes the TSDB to its file with a delay (about half a second), so its newest history can be lost too.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the JVM cleanly if it runs ([`CanalServer::stop`]) and starts it again on the same directory and port:
    /// canal resumes from its stored cursor and keeps its TSDB (history and snapshots), as a restarted deployer
    /// would.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn(dist());
    }
}

impl Drop for CanalServer {
    fn drop(&mut self) {
        self.kill();
    }
}
