//! ZooKeeper mode details: canal's node layout and JSON, what happens when ZooKeeper cannot be reached or the chroot
//! is missing, and cursors written on shutdown when a flush period is configured.

mod common;

use std::time::Duration;

use canal_e2e::{InstanceProcess, MariaDb, ZooKeeper, eventually, free_port, http_get};
use canal_instance::client::{CanalClient, running_server};
use canal_instance::error::Error;
use common::{BINARY, exec, receive_rows, setup_schema};
use zookeeper_client as zk;

fn config(db: &MariaDb, schema: &str, port: u16, metrics: u16, zookeeper: &str, extra: &str) -> String {
    let dir = canal_e2e::fresh_dir("canal-zk-test-");
    common::zk_instance_config_with(db, schema, port, metrics, zookeeper, &dir) + extra
}

fn spawn(config: &str, port: u16) -> InstanceProcess {
    let dir = canal_e2e::fresh_dir("canal-zk-test-");
    InstanceProcess::spawn(BINARY, &dir, config, port, &[("CANAL_SOURCE_PASSWORD", "canal")])
}

async fn zk_client(servers: &str) -> zk::Client {
    zk::Client::connect(servers)
        .await
        .expect("connect to the test ZooKeeper")
}

#[tokio::test]
async fn nodes_and_json_follow_canal_layout() {
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    setup_schema(db, "layout_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let port = free_port();
    let instance = spawn(&config(db, "layout_db", port, 0, &zookeeper.servers, ""), port);
    instance
        .wait_for_log("binlog dump started", Duration::from_secs(30))
        .await;
    let address = format!("127.0.0.1:{port}");

    let zk = zk_client(&zookeeper.servers).await;
    let (running, stat) = zk.get_data("/otter/canal/destinations/example/running").await.unwrap();
    assert_eq!(
        String::from_utf8(running).unwrap(),
        format!(r#"{{"active":true,"address":"{address}"}}"#)
    );
    assert_ne!(stat.ephemeral_owner, 0, "running is ephemeral");
    for member in [
        format!("/otter/canal/destinations/example/cluster/{address}"),
        format!("/otter/canal/cluster/{address}"),
    ] {
        let stat = zk
            .check_stat(&member)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{member} exists"));
        assert_ne!(stat.ephemeral_owner, 0, "{member} is ephemeral");
    }
    assert_eq!(running_server(&zookeeper.servers, "example").await.unwrap(), address);

    let mut client = CanalClient::connect(&address, "", "").await.unwrap();
    client.subscribe("example", "1001", "layout_db\\..*").await.unwrap();
    exec(db, "layout_db", &["INSERT INTO t VALUES (1)"]).await;
    receive_rows(&mut client, 1, Duration::from_secs(30)).await;
    client
        .get_without_ack(1, canal_instance::client::GetWait::No)
        .await
        .unwrap();

    let (filter, _) = zk
        .get_data("/otter/canal/destinations/example/1001/filter")
        .await
        .unwrap();
    assert_eq!(filter, b"layout_db\\..*", "the filter is stored as raw text");
    let (cursor, _) = zk
        .get_data("/otter/canal/destinations/example/1001/cursor")
        .await
        .unwrap();
    let cursor: serde_json::Value = serde_json::from_slice(&cursor).unwrap();
    let text = serde_json::to_string(&cursor).unwrap();
    assert!(
        text.starts_with(r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition""#),
        "{text}"
    );
    assert_eq!(cursor["identity"]["slaveId"], -1);
    assert_eq!(cursor["postion"]["included"], false);
    assert!(
        cursor["postion"]["journalName"]
            .as_str()
            .unwrap()
            .starts_with("mysql-bin.")
    );
    assert!(cursor["postion"]["position"].as_i64().unwrap() > 4);
    assert!(
        cursor["postion"]["timestamp"].as_i64().unwrap() > 1_600_000_000_000,
        "milliseconds"
    );
}

#[tokio::test]
async fn unreachable_zookeeper_is_named_and_nothing_is_served() {
    let db = MariaDb::shared();
    let port = free_port();
    let metrics = free_port();
    let dead = format!("127.0.0.1:{}", free_port());
    let mut instance = spawn(&config(db, "nothing_db", port, metrics, &dead, ""), port);
    instance
        .wait_for_log("ZooKeeper unavailable; not serving", Duration::from_secs(30))
        .await;
    assert!(
        instance.log().contains(&dead) && instance.log().contains("zookeeper.servers"),
        "{}",
        instance.log()
    );
    assert!(instance.running());
    let (code, body) = http_get(&format!("127.0.0.1:{metrics}"), "/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.starts_with("not serving:") && body.contains(&dead), "{body}");
    let mut client = CanalClient::connect(&format!("127.0.0.1:{port}"), "", "")
        .await
        .unwrap();
    match client.subscribe("example", "1001", "").await {
        Err(Error::Server { code: 400, message }) => assert!(message.contains("should start first"), "{message}"),
        other => panic!("a standby must not serve: {other:?}"),
    }
}

#[tokio::test]
async fn missing_chroot_is_named() {
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    let port = free_port();
    let servers = format!("{}/no-such-chroot", zookeeper.servers);
    let mut instance = spawn(&config(db, "chroot_db", port, 0, &servers, ""), port);
    instance
        .wait_for_log("the chroot /no-such-chroot does not exist", Duration::from_secs(30))
        .await;
    assert!(instance.running());
}

#[tokio::test]
async fn flush_period_cursors_are_written_on_shutdown() {
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    setup_schema(db, "flush_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let port = free_port();
    let extra = "  cursorFlushPeriodMs: 600000\n";
    let mut instance = spawn(&config(db, "flush_db", port, 0, &zookeeper.servers, extra), port);
    instance
        .wait_for_log("binlog dump started", Duration::from_secs(30))
        .await;
    let mut client = CanalClient::connect(&format!("127.0.0.1:{port}"), "", "")
        .await
        .unwrap();
    client.subscribe("example", "1001", "").await.unwrap();
    let zk = zk_client(&zookeeper.servers).await;
    let cursor_path = "/otter/canal/destinations/example/1001/cursor";
    let (initial, _) = zk.get_data(cursor_path).await.unwrap();

    exec(db, "flush_db", &["INSERT INTO t VALUES (1)"]).await;
    receive_rows(&mut client, 1, Duration::from_secs(30)).await;
    client
        .get_without_ack(1, canal_instance::client::GetWait::No)
        .await
        .unwrap();
    let (unflushed, _) = zk.get_data(cursor_path).await.unwrap();
    assert_eq!(
        unflushed, initial,
        "within the flush period the cursor is not written yet"
    );

    assert_eq!(instance.terminate().await, Some(0));
    let flushed = zk.get_data(cursor_path).await.unwrap().0;
    assert_ne!(flushed, initial, "shutdown writes the pending cursor");
}

#[tokio::test]
async fn active_false_asks_the_owner_to_step_down() {
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    let (port_a, port_b) = (free_port(), free_port());
    let a = spawn(&config(db, "step_db", port_a, 0, &zookeeper.servers, ""), port_a);
    a.wait_for_log("became the active instance", Duration::from_secs(30))
        .await;
    let b = spawn(&config(db, "step_db", port_b, 0, &zookeeper.servers, ""), port_b);
    b.wait_for_log("connected to ZooKeeper", Duration::from_secs(30)).await;

    let zk = zk_client(&zookeeper.servers).await;
    let running = "/otter/canal/destinations/example/running";
    let released = format!(r#"{{"active":false,"address":"127.0.0.1:{port_a}"}}"#);
    zk.set_data(running, released.as_bytes(), None).await.unwrap();

    a.wait_for_log("asked to step down", Duration::from_secs(30)).await;
    b.wait_for_log("became the active instance", Duration::from_secs(30))
        .await;
    assert_eq!(
        running_server(&zookeeper.servers, "example").await.unwrap(),
        format!("127.0.0.1:{port_b}")
    );
}

#[tokio::test]
async fn nobody_serves_while_the_whole_ensemble_is_down() {
    let zookeeper = ZooKeeper::ensemble();
    let db = MariaDb::shared();
    let ports = [(free_port(), free_port()), (free_port(), free_port())];
    let a = spawn(
        &config(db, "down_db", ports[0].0, ports[0].1, &zookeeper.servers, ""),
        ports[0].0,
    );
    a.wait_for_log("became the active instance", Duration::from_secs(30))
        .await;
    let b = spawn(
        &config(db, "down_db", ports[1].0, ports[1].1, &zookeeper.servers, ""),
        ports[1].0,
    );
    b.wait_for_log("connected to ZooKeeper", Duration::from_secs(30)).await;
    let ready = |metrics: u16| http_get(&format!("127.0.0.1:{metrics}"), "/readyz").unwrap_or((0, String::new()));

    for node in 1..=3 {
        zookeeper.stop_node(node);
    }
    canal_e2e::wait_until(
        Duration::from_secs(30),
        "both instances to report why they do not serve",
        || ports.iter().all(|(_, metrics)| ready(*metrics).0 == 503),
    )
    .await;
    for (port, metrics) in ports {
        let (_, body) = ready(metrics);
        assert!(body.starts_with("not serving:"), "{body}");
        let mut client = CanalClient::connect(&format!("127.0.0.1:{port}"), "", "")
            .await
            .unwrap();
        match client.subscribe("example", "1001", "").await {
            Err(Error::Server { message, .. }) => assert!(message.contains("should start first"), "{message}"),
            other => panic!("nobody may serve without ZooKeeper: {other:?}"),
        }
    }
    assert!(a.log().contains("no longer the active instance"), "{}", a.log());

    for node in 1..=3 {
        zookeeper.start_node(node);
    }
    canal_e2e::wait_until(Duration::from_secs(60), "one instance to serve again", || {
        ports
            .iter()
            .filter(|(_, metrics)| ready(*metrics).0 == 200 && ready(*metrics).1.starts_with("active"))
            .count()
            == 1
    })
    .await;
}

#[tokio::test]
async fn cluster_client_follows_a_handover() {
    use canal_instance::client::{ClusterClient, GetWait};
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    setup_schema(db, "follow_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = spawn(&config(db, "follow_db", port_a, 0, &zookeeper.servers, ""), port_a);
    a.wait_for_log("binlog dump started", Duration::from_secs(30)).await;
    let b = spawn(&config(db, "follow_db", port_b, 0, &zookeeper.servers, ""), port_b);
    b.wait_for_log("connected to ZooKeeper", Duration::from_secs(30)).await;

    let mut client = ClusterClient::new(&zookeeper.servers, "example", "1001", "");
    client.retry_delay = Duration::from_millis(200);
    let mut ids = Vec::new();
    exec(db, "follow_db", &["INSERT INTO t VALUES (1)"]).await;
    let mut handed_over = false;
    eventually(
        Duration::from_secs(60),
        "rows 1 and 2 through the cluster client",
        async || {
            let message = client
                .get_without_ack(100, GetWait::Up(Duration::from_millis(200)))
                .await
                .unwrap();
            for change in common::changes(&message.entries) {
                ids.push(common::value_of(&change.row.after_columns, "id").to_string());
            }
            if message.batch_id != -1 {
                client.ack(message.batch_id).await.unwrap();
            }
            if ids.len() == 1 && !handed_over {
                handed_over = true;
                // Make sure the ack was processed before the handover: the next get answers after it.
                client.get_without_ack(1, GetWait::No).await.unwrap();
                assert_eq!(a.terminate().await, Some(0));
                exec(db, "follow_db", &["INSERT INTO t VALUES (2)"]).await;
            }
            if ids.len() >= 2 {
                Ok(())
            } else {
                Err(format!("received only {ids:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        ids,
        ["1", "2"],
        "row 1 once before the handover, row 2 from the new active server"
    );
}
