//! The server admits one connection per client id: a second consumer of 1001 is refused with an error that names
//! the first, which `/metrics` shows too. The second is admitted as soon as the first goes, even when the first
//! was waiting in a long GET, and it receives every row that the first did not acknowledge.
//!
//! The ZooKeeper side (client HA evicting a paused consumer's lingering connection) is exercised by `client_ha.rs`.

mod common;

use std::time::Duration;

use canal_e2e::{MariaDb, eventually, free_port, http_get};
use canal_instance::client::{CanalClient, GetWait};
use common::{Fixture, changes, exec, receive_rows, setup_schema, value_of};

const READY: Duration = Duration::from_secs(30);

fn refusal(result: canal_instance::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(canal_instance::Error::Server { code, message }) => {
            assert_eq!(code, 400, "{message}");
            message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_has_one_connection_until_it_goes() {
    let db = MariaDb::shared();
    setup_schema(db, "one_consumer_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let metrics_port = free_port();
    let fixture = Fixture::start_with(db, "one_consumer_db", |config| {
        config.replace("metricsPort: 0", &format!("metricsPort: {metrics_port}"))
    })
    .await;
    let address = fixture.instance.address();

    let mut first = fixture.client().await;
    exec(db, "one_consumer_db", &["INSERT INTO t VALUES (1), (2)"]).await;
    receive_rows(&mut first, 2, READY).await;
    let first_address = first.local_address().expect("connected").to_string();

    let mut second = CanalClient::connect(&address, "", "").await.unwrap();
    let message = refusal(second.subscribe("example", "1001", "").await);
    assert!(
        message.contains(&format!(
            "clientId 1001 of destination example is already consumed by the connection from {first_address}"
        )),
        "{message}"
    );
    assert!(message.contains("client HA"), "the error names the fixes: {message}");
    // Nothing else on 1001 either: a stray rollback would hand the first consumer's batches to the second.
    refusal(second.get_without_ack(10, GetWait::No).await);
    // Another client id is another consumer.
    second.subscribe("example", "1002", "").await.unwrap();

    let (status, metrics) = http_get(&format!("127.0.0.1:{metrics_port}"), "/metrics").unwrap();
    assert_eq!(status, 200);
    for line in [
        "canal_rs_client_connected{destination=\"example\",client_id=\"1001\"} 1",
        "canal_rs_client_connected{destination=\"example\",client_id=\"1002\"} 1",
        "canal_rs_client_refused_total{destination=\"example\",client_id=\"1001\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in\n{metrics}");
    }

    // The first consumer fetches a batch it never acknowledges, then waits in a GET for a full batch that does
    // not come (the timeout below only proves the GET is outstanding), and goes away in the middle of it.
    exec(db, "one_consumer_db", &["INSERT INTO t VALUES (3)"]).await;
    let unacked = receive_unacked(&mut first).await;
    assert_eq!(unacked, ["3"]);
    let outstanding = tokio::time::timeout(
        Duration::from_millis(500),
        first.get_without_ack(1000, GetWait::Up(Duration::from_secs(3600))),
    )
    .await;
    assert!(outstanding.is_err(), "the long GET is still waiting");
    drop(first);

    // Its client id is free at once, without waiting for the GET's hour; the new consumer rolls back and gets
    // what the first did not acknowledge, then what comes next.
    let mut third = CanalClient::connect(&address, "", "").await.unwrap();
    third
        .subscribe("example", "1001", "")
        .await
        .expect("admitted once the first is gone");
    third.rollback(0).await.unwrap();
    exec(db, "one_consumer_db", &["INSERT INTO t VALUES (4)"]).await;
    let rows = changes(&receive_rows(&mut third, 2, READY).await);
    let ids: Vec<&str> = rows.iter().map(|c| value_of(&c.row.after_columns, "id")).collect();
    assert_eq!(ids, ["3", "4"]);

    let (_, metrics) = http_get(&format!("127.0.0.1:{metrics_port}"), "/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "canal_rs_client_connected{destination=\"example\",client_id=\"1001\"} 1"),
        "{metrics}"
    );
    assert!(
        fixture
            .instance
            .log()
            .contains("is already consumed by the connection from")
    );
}

/// Gets until a batch with rows arrives and returns their ids, without acknowledging it.
async fn receive_unacked(client: &mut CanalClient) -> Vec<String> {
    eventually(READY, "a batch with rows", async || {
        let message = client
            .get_without_ack(1000, GetWait::Up(Duration::from_millis(200)))
            .await
            .unwrap();
        let rows = changes(&message.entries);
        if !rows.is_empty() {
            return Ok(rows
                .iter()
                .map(|c| value_of(&c.row.after_columns, "id").to_string())
                .collect());
        }
        if message.batch_id != -1 {
            client.ack(message.batch_id).await.unwrap();
        }
        Err("no rows arrived".into())
    })
    .await
}
