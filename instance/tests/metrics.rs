//! `/metrics` on the metrics port, scraped from running instances and parsed by Prometheus's own Python client
//! (prometheus-client from PyPI), so that an exposition Prometheus would reject fails here.
//!
//! Standalone: after rows flow through a real client, canal's `canal_instance_*` names (no `_total`, canal's labels)
//! count exactly what was put, handed out and acknowledged, and the request, error and empty-batch counts follow
//! the requests made. ZooKeeper mode: the active and the standby show their roles and a connected session, and
//! both show the session disconnected (and no role) once ZooKeeper goes away.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use canal_e2e::{InstanceProcess, MariaDb, ZooKeeper, eventually, free_port, http_get, python_with_canal, repo_root};
use canal_instance::client::GetWait;
use common::{BINARY, Fixture, exec, receive_rows, setup_schema};

const READY: Duration = Duration::from_secs(30);

/// One parsed sample.
#[derive(Clone, Debug, serde::Deserialize)]
struct Sample {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Scrapes `/metrics` and parses it with prometheus-client's OpenMetrics parser; `None` while nothing listens.
fn scrape(metrics_port: u16) -> Option<Vec<Sample>> {
    let (status, text) = http_get(&format!("127.0.0.1:{metrics_port}"), "/metrics").ok()?;
    assert_eq!(status, 200, "{text}");
    let mut child = Command::new(python_with_canal())
        .arg(repo_root().join("e2e/python/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the OpenMetrics parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let output = child.wait_with_output().expect("parser output");
    assert!(
        output.status.success(),
        "Prometheus's parser rejects /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("parser JSON"))
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn expect(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
}

/// Scrapes until `done` holds for the samples, or panics with the last scrape after `timeout`.
async fn scrape_until(metrics_port: u16, timeout: Duration, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    eventually(timeout, "the metrics to get there", async || {
        let samples = scrape(metrics_port);
        if let Some(samples) = samples.as_deref()
            && done(samples)
        {
            return Ok(samples.to_vec());
        }
        Err(format!("metrics never got there: {samples:#?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canal_metrics_count_what_clients_received() {
    let db = MariaDb::shared();
    setup_schema(
        db,
        "metrics_db",
        &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"],
    )
    .await;
    let metrics_port = free_port();
    let fixture = Fixture::start_with(db, "metrics_db", |config| {
        config.replace("metricsPort: 0", &format!("metricsPort: {metrics_port}"))
    })
    .await;
    let mut client = fixture.client().await;

    // Three transactions with five rows; an empty GET first, and a refused GET for an unsubscribed client id.
    let empty = client.get_without_ack(100, GetWait::No).await.unwrap();
    assert_eq!(empty.batch_id, -1);
    exec(
        db,
        "metrics_db",
        &[
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
            "INSERT INTO t VALUES (3, 'c')",
            "UPDATE t SET v = 'z' WHERE id IN (1, 2)",
        ],
    )
    .await;
    receive_rows(&mut client, 5, READY).await;
    let mut stranger = canal_instance::client::CanalClient::connect(&fixture.instance.address(), "", "")
        .await
        .unwrap();
    stranger.subscribe("example", "1002", "").await.unwrap();
    stranger.unsubscribe().await.unwrap();
    assert!(stranger.get_without_ack(10, GetWait::No).await.is_err());

    let d = ("destination", "example");
    // Acks have no reply: wait until the last one is counted.
    let samples = scrape_until(metrics_port, READY, |s| {
        value(s, "canal_instance_ack_rows", &[d]) == Some(5.0)
    })
    .await;
    for name in [
        "canal_instance_put_rows",
        "canal_instance_get_rows",
        "canal_instance_ack_rows",
    ] {
        assert_eq!(expect(&samples, name, &[d]), 5.0, "{name}");
    }
    assert!(expect(&samples, "canal_instance_transactions", &[d]) >= 3.0);
    assert_eq!(
        expect(&samples, "canal_instance_store_produce_seq", &[d]),
        expect(&samples, "canal_instance_store_consume_seq", &[d]),
        "every entry put was acknowledged"
    );
    assert_eq!(expect(&samples, "canal_instance", &[d, ("mode", "spring")]), 1.0);
    assert_eq!(expect(&samples, "canal_instance_subscriptions", &[d]), 1.0);
    assert_eq!(
        expect(
            &samples,
            "canal_instance_store",
            &[d, ("batchMode", "MEMSIZE"), ("size", "16384")]
        ),
        1.0
    );
    assert!(expect(&samples, "canal_instance_received_binlog_bytes", &[d, ("parser", "0")]) > 0.0);
    assert!(expect(&samples, "canal_instance_client_packets", &[d, ("packetType", "GET")]) >= 1.0);
    assert!(
        expect(
            &samples,
            "canal_instance_client_packets",
            &[d, ("packetType", "CLIENTACK")]
        ) >= 1.0
    );
    assert!(expect(&samples, "canal_instance_client_empty_batches", &[d]) >= 1.0);
    assert_eq!(
        expect(
            &samples,
            "canal_instance_client_request_error",
            &[d, ("errorCode", "400")]
        ),
        1.0,
        "the stranger's GET"
    );
    assert!(expect(&samples, "canal_instance_client_bytes", &[d]) > 0.0);
    assert!(expect(&samples, "canal_instance_client_request_latency_count", &[d]) >= 5.0);
    assert!(expect(&samples, "canal_instance_traffic_delay", &[d]) >= 0.0);
    // canal's counters keep canal's names: Prometheus reads them as written, without a `_total`.
    let canal_counter = samples
        .iter()
        .find(|s| s.name == "canal_instance_transactions")
        .expect("transactions");
    assert_eq!(canal_counter.kind, "unknown");
    assert!(
        !samples
            .iter()
            .any(|s| s.name.starts_with("canal_instance") && s.name.ends_with("_total")),
        "{samples:#?}"
    );

    assert_eq!(expect(&samples, "canal_rs_ha_role", &[d, ("role", "active")]), 1.0);
    assert_eq!(expect(&samples, "canal_rs_ha_activations_total", &[d]), 1.0);
    assert_eq!(expect(&samples, "canal_rs_store_entries", &[d]), 0.0);
    assert_eq!(expect(&samples, "canal_rs_client_lag_seconds", &[d]), 0.0);
    assert_eq!(expect(&samples, "canal_rs_decode_errors_total", &[d]), 0.0);
    assert!(expect(&samples, "canal_rs_dump_lag_seconds", &[d]) >= 0.0);
    assert!(
        value(&samples, "canal_rs_zookeeper_session", &[d]).is_none(),
        "no ZooKeeper in standalone mode"
    );
}

fn zk_instance(db: &MariaDb, zookeeper: &str) -> (InstanceProcess, u16) {
    let dir = canal_e2e::fresh_dir("canal-metrics-");
    let port = free_port();
    let metrics = free_port();
    let config = common::zk_instance_config_with(db, "metrics_zk_db", port, metrics, zookeeper, &dir);
    let instance = InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "canal")]);
    (instance, metrics)
}

fn role(samples: &[Sample]) -> Option<String> {
    samples
        .iter()
        .find(|s| s.name == "canal_rs_ha_role" && s.value == 1.0)
        .map(|s| s.labels["role"].clone())
}

fn session(samples: &[Sample]) -> Option<String> {
    samples
        .iter()
        .find(|s| s.name == "canal_rs_zookeeper_session" && s.value == 1.0)
        .map(|s| s.labels["state"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_the_zookeeper_session_are_shown() {
    let db = MariaDb::shared();
    setup_schema(db, "metrics_zk_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let zookeeper = ZooKeeper::standalone();
    let (_a, metrics_a) = zk_instance(db, &zookeeper.servers);
    let (_b, metrics_b) = zk_instance(db, &zookeeper.servers);

    let decided = |s: &[Sample]| role(s).is_some_and(|r| r != "unavailable");
    let a = scrape_until(metrics_a, READY, decided).await;
    let b = scrape_until(metrics_b, READY, decided).await;
    let mut roles = [role(&a).unwrap(), role(&b).unwrap()];
    roles.sort();
    assert_eq!(roles, ["active", "standby"]);
    for samples in [&a, &b] {
        assert_eq!(session(samples).as_deref(), Some("connected"));
    }
    let (active, standby) = if role(&a).as_deref() == Some("active") {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let d = ("destination", "example");
    assert_eq!(expect(active, "canal_rs_ha_activations_total", &[d]), 1.0);
    assert!(value(active, "canal_instance_store_produce_seq", &[d]).is_some());
    assert_eq!(expect(standby, "canal_rs_ha_activations_total", &[d]), 0.0);
    assert!(
        value(standby, "canal_instance_store_produce_seq", &[d]).is_none(),
        "a standby has no store"
    );

    // ZooKeeper goes away: both say so, and neither claims a role.
    zookeeper.stop();
    for port in [metrics_a, metrics_b] {
        let samples = scrape_until(port, READY, |s| session(s).as_deref() == Some("disconnected")).await;
        let samples = if role(&samples).as_deref() == Some("unavailable") {
            samples
        } else {
            scrape_until(port, READY, |s| role(s).as_deref() == Some("unavailable")).await
        };
        assert!(value(&samples, "canal_instance_store_produce_seq", &[d]).is_none());
    }
}
