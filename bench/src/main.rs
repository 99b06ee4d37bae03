//! `make bench`: writes each workload into binlog files of its own on a local MariaDB, then lets every consumer read
//! exactly those files and reports throughput (rows/s, binlog MB/s), canal-instance's peak RSS and CPU, and
//! commit-to-client latency at a steady rate. Figures go to `target/bench/` (results.json, report.md, and a chart
//! when the chart venv can be made); `make bench` copies the report to `docs/`.
//!
//! Environment: `BENCH_SCALE` (default 1.0) shrinks or grows every workload; `BENCH_PEERS` (comma-separated, default
//! all) picks consumers: canal-rs, raw, python, go, canal (canal's own Java server and client, built by
//! bench/canal/build.sh with Maven).

mod latency;
mod peers;
mod report;
mod workloads;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use canal_e2e::{MariaDb, repo_root};

fn wanted(peer: &str) -> bool {
    match std::env::var("BENCH_PEERS") {
        Ok(list) => list.split(',').any(|p| p.trim() == peer),
        Err(_) => true,
    }
}

/// Runs a helper script that prints a path as its last stdout line (a venv's python, a built binary).
fn last_line_of(command: &mut Command) -> Result<PathBuf, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr)));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| format!("{command:?} printed nothing"))
}

/// Builds peer `name` with `build` when it is wanted: the path its build printed last, or `None` (skipped, and
/// why) so the other peers still run.
fn prepare_peer(name: &str, title: &str, build: &mut Command) -> Option<PathBuf> {
    if !wanted(name) {
        return None;
    }
    last_line_of(build)
        .map_err(|e| eprintln!("bench: {title} skipped: {e}"))
        .ok()
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let repo = repo_root();
    let out = repo.join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    let instance = repo.join("target/release/canal-instance");
    assert!(
        instance.exists(),
        "{} is missing: run `cargo build --release -p canal-instance` (make bench does)",
        instance.display()
    );

    // Peers first, so a missing toolchain shows before minutes of writing.
    let python = prepare_peer(
        "python",
        "python-mysql-replication",
        Command::new("bash")
            .arg(repo.join("e2e/python/venv.sh"))
            .args(["../../bench/python/requirements.txt", "../bench/.venv"]),
    );
    let go = prepare_peer(
        "go",
        "go-mysql",
        Command::new("bash").arg(repo.join("bench/go-mysql/build.sh")),
    );
    let canal = prepare_peer(
        "canal",
        "canal",
        Command::new("bash").arg(repo.join("bench/canal/build.sh")),
    );

    eprintln!("bench: starting MariaDB");
    let db = MariaDb::start(&[
        "--innodb-buffer-pool-size=512M",
        "--innodb-log-file-size=256M",
        "--max-allowed-packet=64M",
        "--max-binlog-size=256M",
    ]);
    let workloads = workloads::write_all(&db, scale).await;

    let mut results = Vec::new();
    for workload in &workloads {
        if wanted("raw") {
            results.push(peers::raw_stream(&db, workload));
        }
        if wanted("canal-rs") {
            results.push(peers::canal_rs(&instance, &db, workload).await);
        }
        if let Some(go) = &go {
            results.push(peers::go_mysql(go, &db, workload));
        }
        if let Some(python) = &python {
            results.push(peers::python_mysql_replication(python, &repo, &db, workload));
        }
        if let Some(canal) = &canal {
            results.push(peers::canal_server(canal, &repo, &db, workload));
        }
        for m in results.iter().filter(|m| m.workload == workload.name) {
            eprintln!(
                "bench: {:<16} {:<26} {:>10.0} rows/s {:>8.2} s{}{}",
                workload.name,
                m.consumer,
                m.rows_per_second(),
                m.seconds,
                m.subscribe_seconds
                    .map(|s| format!(" (subscribe {s:.2} s)"))
                    .unwrap_or_default(),
                m.error.as_ref().map(|_| "  (failed)").unwrap_or("")
            );
        }
    }
    let latency = if wanted("canal-rs") {
        Some(latency::measure(&instance, &db, 10_000, 10).await)
    } else {
        None
    };

    let report = report::Report::new(&workloads, &results, latency.as_ref(), scale);
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&report).expect("json"),
    )
    .expect("write");
    std::fs::write(out.join("report.md"), report.markdown()).expect("write report");
    if let Some(python) = &python {
        let chart = Command::new(python)
            .arg(repo.join("bench/python/chart.py"))
            .arg(out.join("results.json"))
            .arg(out.join("throughput.png"))
            .status();
        if !chart.is_ok_and(|s| s.success()) {
            eprintln!("bench: the chart could not be drawn");
        }
    }
    println!("{}", report.markdown());
}
