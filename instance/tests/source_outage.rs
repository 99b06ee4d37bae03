//! The source going away: while MariaDB is down the instance logs the cause and keeps serving; when it is back the
//! dump resumes where it stopped, with no row lost or repeated.

mod common;

use std::time::Duration;

use canal_e2e::MariaDb;
use canal_instance::client::GetWait;
use common::{Fixture, changes, exec, receive_rows, setup_schema, value_of};

fn ids(entries: &[canal_instance::protocol::Entry]) -> Vec<u32> {
    changes(entries)
        .iter()
        .map(|c| value_of(&c.row.after_columns, "id").parse().unwrap())
        .collect()
}

#[tokio::test]
async fn mysql_restart_is_survived_without_loss_or_duplicates() {
    let mut db = MariaDb::start(&[]);
    setup_schema(&db, "outage_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let mut fixture = Fixture::start(&db, "outage_db", "").await;
    exec(
        &db,
        "outage_db",
        &["INSERT INTO t VALUES (1), (2)", "INSERT INTO t VALUES (3)"],
    )
    .await;
    let mut client = fixture.client().await;
    let first = receive_rows(&mut client, 3, Duration::from_secs(30)).await;
    assert_eq!(ids(&first), [1, 2, 3]);

    db.stop_server();
    fixture
        .instance
        .wait_for_log("binlog source unavailable", Duration::from_secs(60))
        .await;
    assert!(fixture.instance.running(), "the instance survives the outage");
    // Clients are still served while the source is away.
    let idle = client.get_without_ack(10, GetWait::No).await.unwrap();
    assert_eq!(idle.batch_id, -1);

    db.start_server();
    exec(
        &db,
        "outage_db",
        &["INSERT INTO t VALUES (4)", "INSERT INTO t VALUES (5), (6)"],
    )
    .await;
    let second = receive_rows(&mut client, 3, Duration::from_secs(90)).await;
    assert_eq!(ids(&second), [4, 5, 6], "resumed exactly after the last event read");
    let log = fixture.instance.log();
    assert!(
        log.matches("binlog dump started").count() >= 2,
        "the dump restarted:\n{log}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_found_dead_by_the_heartbeat() {
    // A partition drops nothing and closes nothing: only the missing heartbeats show that the dump is dead.
    let db = MariaDb::shared();
    setup_schema(db, "partition_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let proxy = canal_e2e::TcpProxy::start(&db.address()).await;
    let fixture = Fixture::start_with(db, "partition_db", |config| {
        config.replace(&db.address(), &proxy.address)
    })
    .await;
    exec(db, "partition_db", &["INSERT INTO t VALUES (1)"]).await;
    let mut client = fixture.client().await;
    assert_eq!(ids(&receive_rows(&mut client, 1, Duration::from_secs(30)).await), [1]);

    proxy.cut();
    exec(db, "partition_db", &["INSERT INTO t VALUES (2)"]).await;
    fixture
        .instance
        .wait_for_log("no event or heartbeat for", Duration::from_secs(60))
        .await;
    proxy.restore();
    let after = receive_rows(&mut client, 1, Duration::from_secs(90)).await;
    assert_eq!(
        ids(&after),
        [2],
        "the row written during the partition arrives once, and row 1 not again"
    );
}
