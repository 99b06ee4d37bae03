//! The local service scripts: each server starts ready to use and stops without leaving a process behind.

use std::time::Duration;

use canal_e2e::{MariaDb, ZooKeeper, four_letter, process_alive, wait_until};
use mysql_async::prelude::Queryable;

#[tokio::test]
async fn mariadb_starts_with_binlog_settings_and_stops_cleanly() {
    let db = MariaDb::start(&[]);
    let mut conn = db.admin().await;
    let (format, image, metadata): (String, String, String) = conn
        .query_first("SELECT @@binlog_format, @@binlog_row_image, @@binlog_row_metadata")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (format.as_str(), image.as_str(), metadata.as_str()),
        ("ROW", "FULL", "FULL")
    );
    let version: String = conn.query_first("SELECT VERSION()").await.unwrap().unwrap();
    assert!(version.starts_with("10.11"), "{version}");
    drop(conn);

    let replica = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db.port)
        .user(Some("canal"))
        .pass(Some("canal"))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(replica)
        .await
        .expect("replication user connects");
    let status: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await.unwrap();
    assert!(status.is_some(), "the replication user may read the binlog position");
    drop(conn);

    let pid = db.pid;
    assert!(process_alive(pid));
    drop(db);
    wait_until(Duration::from_secs(30), "mariadbd to exit", || !process_alive(pid)).await;
}

#[tokio::test]
async fn zookeeper_standalone_answers_and_stops_cleanly() {
    let zk = ZooKeeper::standalone();
    assert_eq!(four_letter(&zk.servers, "ruok").unwrap(), "imok");
    assert!(four_letter(&zk.servers, "srvr").unwrap().contains("Mode: standalone"));
    let pids = zk.pids();
    assert_eq!(pids.len(), 1);
    zk.stop();
    wait_until(Duration::from_secs(30), "ZooKeeper to exit", || {
        pids.iter().all(|p| !process_alive(*p))
    })
    .await;
}

#[tokio::test]
async fn zookeeper_ensemble_elects_one_leader_and_stops_cleanly() {
    let zk = ZooKeeper::ensemble();
    let servers: Vec<&str> = zk.servers.split(',').collect();
    assert_eq!(servers.len(), 3);
    let modes: Vec<String> = servers
        .iter()
        .map(|s| {
            let srvr = four_letter(s, "srvr").unwrap();
            srvr.lines()
                .find_map(|l| l.strip_prefix("Mode: "))
                .unwrap_or("unknown")
                .to_string()
        })
        .collect();
    assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1, "{modes:?}");
    assert_eq!(modes.iter().filter(|m| *m == "follower").count(), 2, "{modes:?}");
    let pids = zk.pids();
    assert_eq!(pids.len(), 3);
    zk.stop();
    wait_until(Duration::from_secs(30), "every ZooKeeper node to exit", || {
        pids.iter().all(|p| !process_alive(*p))
    })
    .await;
}
