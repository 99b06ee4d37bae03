//! A MySQL failover behind one address: the primary dies, the address moves to its replica (another server_id,
//! binlog files of the same names, other offsets). The instance must notice that the position it holds was recorded
//! on another server and resume by GTID, delivering every row once.

mod common;

use std::time::Duration;

use canal_e2e::{MariaDb, TcpProxy, eventually};
use common::{Fixture, changes, receive_rows, setup_schema, value_of};
use mysql_async::prelude::Queryable;

const SCHEMA: &str = "failover_db";

async fn insert(db: &MariaDb, ids: std::ops::RangeInclusive<u32>) {
    let mut conn = db.admin().await;
    for id in ids {
        conn.query_drop(format!("INSERT INTO `{SCHEMA}`.t VALUES ({id}, 'row {id}')"))
            .await
            .unwrap();
    }
}

async fn row_count(db: &MariaDb) -> u64 {
    let mut conn = db.admin().await;
    conn.query_first(format!("SELECT COUNT(*) FROM `{SCHEMA}`.t"))
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test]
async fn failover_to_a_replica_behind_the_same_address_resumes_by_gtid() {
    let primary = MariaDb::start(&[]);
    let replica = MariaDb::start(&["--server-id=2", "--log-slave-updates"]);
    {
        let mut conn = replica.admin().await;
        // Something of the replica's own in its binlog first, in its own GTID domain: its files have the primary's
        // names but every later offset differs.
        for sql in [
            "SET SESSION gtid_domain_id = 2",
            "CREATE DATABASE replica_local",
            "CREATE TABLE replica_local.pad (x VARCHAR(200))",
            "INSERT INTO replica_local.pad VALUES (REPEAT('x', 200)), (REPEAT('y', 200))",
        ] {
            conn.query_drop(sql).await.unwrap();
        }
        conn.query_drop(format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root', \
             MASTER_PASSWORD = 'root', MASTER_USE_GTID = slave_pos",
            primary.port
        ))
        .await
        .unwrap();
        conn.query_drop("START SLAVE").await.unwrap();
    }
    setup_schema(
        &primary,
        SCHEMA,
        &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))"],
    )
    .await;

    let proxy = TcpProxy::start(&primary.address()).await;
    let fixture = Fixture::start_with(&primary, SCHEMA, |config| {
        config.replace(&primary.address(), &proxy.address)
    })
    .await;
    let mut client = fixture.client().await;
    insert(&primary, 1..=5).await;
    let before = changes(&receive_rows(&mut client, 5, Duration::from_secs(30)).await);

    // The replica has everything; then the primary dies and the address moves to the promoted replica.
    eventually(Duration::from_secs(30), "the replica to catch up", async || {
        if row_count(&replica).await >= 5 {
            Ok(())
        } else {
            Err("the replica never caught up".into())
        }
    })
    .await;
    proxy.retarget(&replica.address());
    primary.stop_server();
    replica.admin().await.query_drop("STOP SLAVE").await.unwrap();
    insert(&replica, 6..=10).await;

    let after = changes(&receive_rows(&mut client, 5, Duration::from_secs(60)).await);
    let ids: Vec<&str> = before
        .iter()
        .chain(&after)
        .map(|c| value_of(&c.row.after_columns, "id"))
        .collect();
    assert_eq!(
        ids,
        ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
        "every row once, in order"
    );
    fixture
        .instance
        .wait_for_log("recorded on another server; resuming by GTID", Duration::from_secs(5))
        .await;
}
