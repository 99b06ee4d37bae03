//! Start positions: by time (searched in the binlogs as canal does) and the policy for a purged binlog file.

mod common;

use std::time::Duration;

use canal_e2e::{InstanceProcess, MariaDb, eventually, free_port, standalone_config};
use canal_instance::client::CanalClient;
use common::{BINARY, changes, exec, receive_rows, setup_schema, value_of};
use mysql_async::prelude::Queryable;

const READY: Duration = Duration::from_secs(30);

async fn server_seconds(db: &MariaDb) -> i64 {
    let mut conn = db.admin().await;
    conn.query_first("SELECT UNIX_TIMESTAMP()").await.unwrap().unwrap()
}

async fn current_file(db: &MariaDb) -> String {
    let mut conn = db.admin().await;
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    row.get(0).unwrap()
}

/// How to start (and start again, with the same config and data) an instance reading `schema`, with
/// `source_extra` in its source section and `start` appended to its config.
fn launcher(db: &MariaDb, schema: &str, source_extra: &str, start: &str) -> impl Fn() -> InstanceProcess + use<> {
    let dir = canal_e2e::fresh_dir("canal-positions-");
    let port = free_port();
    let config = standalone_config("example", db, schema, port, &dir.join("data"))
        .replace("  username: canal\n", &format!("  username: canal\n{source_extra}"))
        + start;
    move || InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "canal")])
}

/// Starts an instance reading `schema`; see [`launcher`].
fn spawn(db: &MariaDb, schema: &str, source_extra: &str, start: &str) -> (InstanceProcess, String) {
    let instance = launcher(db, schema, source_extra, start)();
    let address = instance.address();
    (instance, address)
}

async fn flush_binary_logs(db: &MariaDb) {
    let mut conn = db.admin().await;
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
}

async fn ids(address: &str, count: usize) -> Vec<String> {
    let mut client = CanalClient::connect(address, "", "").await.unwrap();
    client.subscribe("example", "1001", "").await.unwrap();
    changes(&receive_rows(&mut client, count, READY).await)
        .iter()
        .map(|c| value_of(&c.row.after_columns, "id").to_string())
        .collect()
}

#[tokio::test]
async fn starts_at_the_first_transaction_of_a_point_in_time() {
    let db = MariaDb::shared();
    setup_schema(db, "by_time_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    exec(
        db,
        "by_time_db",
        &["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"],
    )
    .await;
    // The binlog counts whole seconds: wait for the server's clock to pass the second of the early rows.
    let early = server_seconds(db).await;
    eventually(
        Duration::from_secs(5),
        "the server's clock to pass the early rows' second",
        async || {
            if server_seconds(db).await > early {
                Ok(())
            } else {
                Err("the server's clock does not advance".into())
            }
        },
    )
    .await;
    let since_ms = (early + 1) * 1000;
    exec(
        db,
        "by_time_db",
        &["INSERT INTO t VALUES (3)", "INSERT INTO t VALUES (4)"],
    )
    .await;

    let (instance, address) = spawn(db, "by_time_db", "", &format!("start:\n  timestamp: {since_ms}\n"));
    instance.wait_for_log("found the start time in the binlog", READY).await;
    assert_eq!(
        ids(&address, 2).await,
        ["3", "4"],
        "rows before the time are not delivered"
    );
}

#[tokio::test]
async fn a_purged_binlog_is_named_and_the_policy_decides() {
    // Purging binlogs would pull the ground from under the other tests: this one has its own server.
    let db = MariaDb::start(&[]);
    setup_schema(&db, "purged_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let purged = current_file(&db).await;
    flush_binary_logs(&db).await;
    let kept = current_file(&db).await;
    exec(&db, "purged_db", &["INSERT INTO t VALUES (1)"]).await;
    {
        let mut conn = db.admin().await;
        conn.query_drop(format!("PURGE BINARY LOGS TO '{kept}'")).await.unwrap();
    }
    let start = format!("start:\n  journalName: {purged}\n");

    // Default policy: the instance says what is missing and what the choices are, and keeps waiting.
    let (mut failing, _) = spawn(&db, "purged_db", "", &start);
    failing
        .wait_for_log(&format!("binlog file {purged} is not on the server any more"), READY)
        .await;
    let log = failing.log();
    assert!(log.contains(&format!("the oldest it has is {kept}")), "{log}");
    assert!(log.contains("source.onMissingBinlog to Earliest"), "{log}");
    assert!(failing.running(), "a missing binlog is reported, not a crash");
    failing.kill();

    // Earliest: continue from the oldest file the server has; the row written there arrives.
    let (earliest, address) = spawn(&db, "purged_db", "  onMissingBinlog: Earliest\n", &start);
    earliest
        .wait_for_log("skipping ahead as source.onMissingBinlog says", READY)
        .await;
    assert_eq!(ids(&address, 1).await, ["1"]);
    drop(earliest);

    // Latest: continue from the end; only what is written afterwards arrives.
    let (latest, address) = spawn(&db, "purged_db", "  onMissingBinlog: Latest\n", &start);
    latest.wait_for_log("binlog dump started", READY).await;
    exec(&db, "purged_db", &["INSERT INTO t VALUES (2)"]).await;
    assert_eq!(ids(&address, 1).await, ["2"]);
}

#[tokio::test]
async fn cursors_carry_the_mariadb_gtid_position() {
    let db = MariaDb::shared();
    setup_schema(db, "gtid_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let fixture = common::Fixture::start(db, "gtid_db", "").await;
    exec(db, "gtid_db", &["INSERT INTO t VALUES (1)"]).await;
    let mut client = fixture.client().await;
    // Fetch until the row's transaction has ended, acknowledging every batch.
    let mut row_gtid = None;
    let (row_gtid, end) = eventually(READY, "the row and its transaction end", async || {
        let message = client
            .get_without_ack(100, canal_instance::client::GetWait::Up(Duration::from_millis(200)))
            .await
            .unwrap();
        if message.batch_id == -1 {
            return Err("the row and its transaction end did not arrive".into());
        }
        let mut last_boundary = None;
        for entry in &message.entries {
            let header = entry.header.clone().unwrap_or_default();
            if !changes(std::slice::from_ref(entry)).is_empty() {
                row_gtid = Some(header.gtid().to_string());
            }
            if row_gtid.is_some() && entry.entry_type() == canal_instance::protocol::EntryType::Transactionend {
                last_boundary = Some(header);
            }
        }
        client.ack(message.batch_id).await.unwrap();
        match (&row_gtid, last_boundary) {
            (Some(gtid), Some(end)) => Ok((gtid.clone(), end)),
            _ => Err("the row and its transaction end did not arrive".into()),
        }
    })
    .await;
    let parts: Vec<u64> = row_gtid.split('-').filter_map(|p| p.parse().ok()).collect();
    assert_eq!(parts.len(), 3, "domain-server-seq: {row_gtid}");

    // The cursor's GTID is MariaDB's own GTID position right after the acknowledged transaction end.
    let after = end.logfile_offset() + end.event_length();
    let mut conn = db.admin().await;
    let expected: String = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (end.logfile_name(), after))
        .await
        .unwrap()
        .unwrap();
    // A fresh request makes sure the ack was processed before the cursor file is read.
    client
        .get_without_ack(1, canal_instance::client::GetWait::No)
        .await
        .unwrap();
    let meta = std::fs::read_to_string(fixture.dir.join("data/example/meta.dat")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    let cursor = &meta["clientDatas"][0]["cursor"]["postion"];
    assert_eq!(cursor["position"], end.logfile_offset(), "{meta}");
    assert_eq!(cursor["gtid"], expected.as_str(), "{meta}");
}

/// Purges every binlog file but the current one. The server keeps a file a replica is still reading, and a
/// stopped instance's dump connection may take a moment to go, so this purges until the old files are gone.
async fn purge_all_but_the_current_file(db: &MariaDb) {
    let current = current_file(db).await;
    eventually(READY, "the old binlog files to be purged", async || {
        let mut conn = db.admin().await;
        conn.query_drop(format!("PURGE BINARY LOGS TO '{current}'"))
            .await
            .unwrap();
        let files: Vec<String> = conn
            .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
                row.get::<String, _>(0).unwrap()
            })
            .await
            .unwrap();
        if files == [current.clone()] {
            Ok(())
        } else {
            Err(format!("the old binlog files are not purged: {files:?}"))
        }
    })
    .await;
}

/// Runs an instance on `schema` until it has delivered row 1 (and its cursor is stored), stops it, and returns how
/// to start it again with the same config and data.
async fn consume_row_one_then_stop(db: &MariaDb, schema: &str, source_extra: &str) -> impl Fn() -> InstanceProcess {
    let start = launcher(db, schema, source_extra, "");
    let mut instance = start();
    instance.wait_for_log("binlog dump started", READY).await;
    exec(db, schema, &["INSERT INTO t VALUES (1)"]).await;
    assert_eq!(ids(&instance.address(), 1).await, ["1"]);
    assert_eq!(instance.terminate().await, Some(0));
    start
}

async fn gtid_binlog_pos(db: &MariaDb) -> String {
    let mut conn = db.admin().await;
    conn.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap()
}

#[tokio::test]
async fn starts_after_a_mariadb_gtid_position() {
    let db = MariaDb::start(&[]);
    setup_schema(&db, "by_gtid_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    exec(
        &db,
        "by_gtid_db",
        &["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"],
    )
    .await;
    let after_two = gtid_binlog_pos(&db).await;
    exec(&db, "by_gtid_db", &["INSERT INTO t VALUES (3)"]).await;

    let (instance, address) = spawn(&db, "by_gtid_db", "", &format!("start:\n  gtid: '{after_two}'\n"));
    instance.wait_for_log("binlog dump started", READY).await;
    exec(&db, "by_gtid_db", &["INSERT INTO t VALUES (4)"]).await;
    assert_eq!(
        ids(&address, 2).await,
        ["3", "4"],
        "only what follows the GTID position"
    );
}

#[tokio::test]
async fn a_cursor_whose_file_is_gone_resumes_by_gtid() {
    let db = MariaDb::start(&[]);
    setup_schema(&db, "resume_gtid_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let restart = consume_row_one_then_stop(&db, "resume_gtid_db", "").await;

    // The cursor's file goes away (as after a purge, or on another server): the GTID in the cursor is the way on,
    // since the transactions after it are in a file the server still has.
    flush_binary_logs(&db).await;
    exec(&db, "resume_gtid_db", &["INSERT INTO t VALUES (2)"]).await;
    purge_all_but_the_current_file(&db).await;
    let instance = restart();
    instance.wait_for_log("resuming by GTID", READY).await;
    // Row 2 follows row 1, which does not come again.
    assert_eq!(ids(&instance.address(), 1).await, ["2"]);
}

#[tokio::test]
async fn a_gtid_resume_past_purged_transactions_follows_the_policy() {
    let db = MariaDb::start(&[]);
    setup_schema(&db, "gtid_gone_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let restart = consume_row_one_then_stop(&db, "gtid_gone_db", "  onMissingBinlog: Earliest\n").await;

    // Row 2 follows the cursor's GTID in the file that is then purged: no GTID resume can reach it.
    exec(&db, "gtid_gone_db", &["INSERT INTO t VALUES (2)"]).await;
    flush_binary_logs(&db).await;
    exec(&db, "gtid_gone_db", &["INSERT INTO t VALUES (3)"]).await;
    purge_all_but_the_current_file(&db).await;
    let instance = restart();
    instance
        .wait_for_log("skipping ahead as source.onMissingBinlog says", READY)
        .await;
    assert!(instance.log().contains("transactions after GTID"), "{}", instance.log());
    assert_eq!(
        ids(&instance.address(), 1).await,
        ["3"],
        "Earliest continues in the oldest file left"
    );
}
