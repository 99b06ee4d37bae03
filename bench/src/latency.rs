//! Commit-to-client latency at a steady write rate well below saturation: a writer inserts rows stamped with the
//! time it sends them, in small statements every 10 ms, and the client notes when each row arrives.

use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use prost::Message;
use serde::Serialize;

use canal_e2e::{InstanceProcess, MariaDb, free_port, standalone_config};
use canal_instance::client::{CanalClient, GetWait};
use canal_instance::protocol::EntryType;
use canal_instance::protocol::entry::RowChange;

use crate::workloads::SCHEMA;

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub rows_per_second: u64,
    pub rows: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub async fn measure(binary: &Path, db: &MariaDb, rows_per_second: u64, seconds: u64) -> Latency {
    let mut conn = db.admin().await;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA}.latency (id BIGINT PRIMARY KEY, sent_us BIGINT NOT NULL)"
    ))
    .await
    .expect("latency table");
    let dir = tempfile::Builder::new()
        .prefix("canal-bench-lat-")
        .tempdir()
        .expect("temp dir");
    let port = free_port();
    let config = standalone_config("bench", db, SCHEMA, port, &dir.path().join("data"));
    let instance = InstanceProcess::spawn(
        binary.to_str().expect("utf-8 path"),
        dir.path(),
        &config,
        port,
        &[("CANAL_SOURCE_PASSWORD", "canal")],
    );
    instance
        .wait_for_log("binlog dump started", Duration::from_secs(30))
        .await;
    let mut client = CanalClient::connect(&instance.address(), "", "")
        .await
        .expect("connect");
    client.subscribe("bench", "1001", "").await.expect("subscribe");

    let per_tick = (rows_per_second / 100).max(1);
    let total = per_tick * 100 * seconds;
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut id = 0u64;
        while id < total {
            tick.tick().await;
            let sent = now_micros();
            let values: Vec<String> = (id..id + per_tick).map(|i| format!("({i},{sent})")).collect();
            id += per_tick;
            conn.query_drop(format!("INSERT INTO {SCHEMA}.latency VALUES {}", values.join(",")))
                .await
                .expect("latency insert");
        }
    });

    let mut latencies = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(seconds * 4 + 30);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        let message = client
            .get_without_ack(1000, GetWait::Up(Duration::from_millis(1)))
            .await
            .expect("get");
        if message.batch_id == -1 {
            continue;
        }
        let arrived = now_micros();
        for entry in message.entries.iter().filter(|e| e.entry_type() == EntryType::Rowdata) {
            let Ok(change) = RowChange::decode(entry.store_value.clone().unwrap_or_default()) else {
                continue;
            };
            for row in &change.row_datas {
                if let Some(sent) = row
                    .after_columns
                    .iter()
                    .find(|c| c.name() == "sent_us")
                    .and_then(|c| c.value().parse::<i64>().ok())
                {
                    latencies.push((arrived - sent) as f64 / 1000.0);
                }
            }
        }
        client.ack(message.batch_id).await.expect("ack");
    }
    writer.await.expect("writer");
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Latency {
        rows_per_second: per_tick * 100,
        rows: latencies.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
    }
}
