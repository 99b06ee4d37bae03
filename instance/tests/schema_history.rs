//! Schema history: row events around ADD/DROP/MODIFY/RENAME COLUMN and RENAME TABLE decode with the columns their
//! table had when they were written, live and when the binlog is read again from before the DDL after a restart,
//! with `binlog_row_metadata` FULL (names from the binlog) and MINIMAL (names from the history).

mod common;

use std::time::Duration;

use canal_e2e::{InstanceProcess, MariaDb, ZooKeeper, free_port};
use canal_instance::client::CanalClient;
use canal_instance::protocol::entry::Column;
use common::{BINARY, Change, Fixture, changes, exec, receive_rows, setup_schema, zk_instance_config};
use mysql_async::prelude::Queryable;
use zookeeper_client as zk;

const SCHEMA: &str = "history_db";

/// What each of the seven inserts must look like: table, then `name=value` of every column in order.
fn expected() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("t", vec!["id=1", "a=one", "b=4294967295", "e=2"]),
        ("t", vec!["id=2", "a=two", "c=-5", "b=7", "e=1"]),
        ("t", vec!["id=3", "a=three", "c=-6", "e=2"]),
        ("t", vec!["id=4", "a=four", "c=-9223372036854775808", "e=1"]),
        ("t", vec!["id=5", "title=five", "c=9", "e=2"]),
        ("t2", vec!["id=6", "title=six", "c=10", "e=1"]),
        ("t3", vec!["k=7", "v=seven"]),
    ]
}

const DDL_AND_ROWS: &[&str] = &[
    "INSERT INTO t VALUES (1, 'one', 4294967295, 'y')",
    "ALTER TABLE t ADD COLUMN c INT AFTER a",
    "INSERT INTO t VALUES (2, 'two', -5, 7, 'x')",
    "ALTER TABLE t DROP COLUMN b",
    "INSERT INTO t VALUES (3, 'three', -6, 'y')",
    "ALTER TABLE t MODIFY c BIGINT",
    "INSERT INTO t VALUES (4, 'four', -9223372036854775808, 'x')",
    "ALTER TABLE t RENAME COLUMN a TO title",
    "INSERT INTO t VALUES (5, 'five', 9, 'y')",
    "RENAME TABLE t TO t2",
    "INSERT INTO t2 VALUES (6, 'six', 10, 'x')",
    "CREATE TABLE t3 (k INT PRIMARY KEY, v VARCHAR(10))",
    "INSERT INTO t3 VALUES (7, 'seven')",
];

fn rendered(change: &Change) -> (String, Vec<String>) {
    let columns: &[Column] = &change.row.after_columns;
    (
        change.table.clone(),
        columns.iter().map(|c| format!("{}={}", c.name(), c.value())).collect(),
    )
}

fn assert_decoded(rows: &[Change], when: &str) {
    let got: Vec<(String, Vec<String>)> = rows.iter().map(rendered).collect();
    let want: Vec<(String, Vec<String>)> = expected()
        .into_iter()
        .map(|(t, cs)| (t.to_string(), cs.into_iter().map(str::to_string).collect()))
        .collect();
    assert_eq!(got, want, "{when}");
    for change in rows {
        let key = &change.row.after_columns[0];
        assert!(key.is_key(), "{when}: the first column is the primary key: {key:?}");
        assert!(
            change.row.after_columns[1..].iter().all(|c| !c.is_key()),
            "{when}: only the first column is a key"
        );
    }
}

async fn binlog_end(db: &MariaDb) -> (String, u64) {
    let mut conn = db.admin().await;
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// Writes the DDL and rows, checks them live, then replays them from before the first DDL after a restart that
/// keeps the stored schema history (and drops the cursor). Returns where the rows start.
async fn ddl_between_rows_decodes_live_and_on_replay(db: &MariaDb) -> (String, u64) {
    setup_schema(
        db,
        SCHEMA,
        &["CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10), b INT UNSIGNED, e ENUM('x','y'))"],
    )
    .await;
    let mut fixture = Fixture::start(db, SCHEMA, "").await;
    let (file, position) = binlog_end(db).await;
    exec(db, SCHEMA, DDL_AND_ROWS).await;

    let mut client = fixture.client().await;
    let rows = changes(&receive_rows(&mut client, 7, Duration::from_secs(30)).await);
    assert_decoded(&rows, "live");
    drop(client);

    // Read it all again from before the first DDL: only the stored history knows the old columns now.
    fixture.instance.kill();
    let state = fixture.dir.join("data").join("example");
    assert!(
        state.join("schema-history.json").exists(),
        "the history is stored beside the cursors"
    );
    std::fs::remove_file(state.join("meta.dat")).unwrap();
    fixture
        .config
        .push_str(&format!("start:\n  journalName: {file}\n  position: {position}\n"));
    fixture.restart().await;
    let mut client = fixture.client().await;
    let rows = changes(&receive_rows(&mut client, 7, Duration::from_secs(30)).await);
    assert_decoded(&rows, "replayed after a restart");
    let log = fixture.instance.log();
    assert!(!log.contains("cannot supply"), "every table map was completed:\n{log}");
    (file, position)
}

#[tokio::test]
async fn full_metadata() {
    ddl_between_rows_decodes_live_and_on_replay(MariaDb::shared()).await;
}

#[tokio::test]
async fn minimal_metadata() {
    let db = MariaDb::start(&["--binlog-row-metadata=MINIMAL"]);
    let (file, position) = ddl_between_rows_decodes_live_and_on_replay(&db).await;

    // Without a stored history, a new instance started before the DDL seeds from today's columns. Rows whose table
    // map does not fit them come with positional names, never with wrong ones.
    let fresh = Fixture::start(
        &db,
        SCHEMA,
        &format!("start:\n  journalName: {file}\n  position: {position}\n"),
    )
    .await;
    let mut client = fresh.client().await;
    let rows = changes(&receive_rows(&mut client, 7, Duration::from_secs(30)).await);
    for (change, (table, want)) in rows.iter().zip(expected()) {
        let (got_table, got) = rendered(change);
        assert_eq!(got_table, table);
        let positional: Vec<String> = want
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("@{i}={}", cell.split_once('=').unwrap().1))
            .collect();
        let want: Vec<String> = want.into_iter().map(str::to_string).collect();
        if table == "t" {
            // `t` no longer exists: nothing is known about it.
            assert_eq!(got, positional);
        } else {
            assert_eq!(got, want);
        }
    }
    assert!(fresh.instance.log().contains("cannot supply"), "the gap is logged");
}

/// A new instance (no stored history) started before a table's CREATE TABLE on a MINIMAL binlog: the CREATE read
/// from the binlog defines the table from its position on and the ALTERs after it evolve it, so every row has its
/// names, although the `information_schema` seed describes only the final columns.
#[tokio::test]
async fn a_new_instance_follows_create_and_alters_read_before_its_seed() {
    let db = MariaDb::start(&["--binlog-row-metadata=MINIMAL"]);
    setup_schema(&db, "replay_db", &[]).await;
    let (file, position) = binlog_end(&db).await;
    exec(
        &db,
        "replay_db",
        &[
            "CREATE TABLE r (a INT PRIMARY KEY, b VARCHAR(10))",
            "INSERT INTO r VALUES (1, 'one')",
            "ALTER TABLE r ADD c INT AFTER a",
            "INSERT INTO r VALUES (2, 20, 'two')",
            "ALTER TABLE r DROP b",
            "INSERT INTO r VALUES (3, 30)",
        ],
    )
    .await;
    let fresh = Fixture::start(
        &db,
        "replay_db",
        &format!("start:\n  journalName: {file}\n  position: {position}\n"),
    )
    .await;
    let mut client = fresh.client().await;
    let rows = changes(&receive_rows(&mut client, 3, Duration::from_secs(30)).await);
    let got: Vec<Vec<String>> = rows.iter().map(|c| rendered(c).1).collect();
    assert_eq!(
        got,
        [vec!["a=1", "b=one"], vec!["a=2", "c=20", "b=two"], vec!["a=3", "c=30"]],
        "each row with the columns of its time"
    );
    let log = fresh.instance.log();
    assert!(
        !log.contains("cannot supply") && !log.contains("does not arrive"),
        "{log}"
    );
}

/// NO_LOG is what MySQL 5.7 sends: no signedness or charsets either, so `b = 4294967295` comes out right only through
/// the history's `INT UNSIGNED`.
#[tokio::test]
async fn no_metadata() {
    let db = MariaDb::start(&["--binlog-row-metadata=NO_LOG"]);
    ddl_between_rows_decodes_live_and_on_replay(&db).await;
}

/// In ZooKeeper mode the history lives in `{dest}/schema-history`, so the next active instance, on another machine,
/// decodes a replay from before the DDL with the columns of the time.
#[tokio::test]
async fn history_in_zookeeper_serves_the_next_active_instance() {
    let db = MariaDb::start(&["--binlog-row-metadata=MINIMAL"]);
    let zookeeper = ZooKeeper::standalone();
    setup_schema(
        &db,
        SCHEMA,
        &["CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10), b INT UNSIGNED, e ENUM('x','y'))"],
    )
    .await;
    let spawn = |port: u16, extra: &str| {
        let dir = canal_e2e::fresh_dir("canal-history-");
        let config = zk_instance_config(&db, SCHEMA, port, &zookeeper.servers, &dir) + extra;
        InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "canal")])
    };
    let first_port = free_port();
    let mut first = spawn(first_port, "");
    first.wait_for_log("binlog dump started", Duration::from_secs(30)).await;
    let (file, position) = binlog_end(&db).await;
    exec(&db, SCHEMA, DDL_AND_ROWS).await;
    let mut client = CanalClient::connect(&first.address(), "", "").await.unwrap();
    client.subscribe("example", "1001", "").await.unwrap();
    assert_decoded(
        &changes(&receive_rows(&mut client, 7, Duration::from_secs(30)).await),
        "first instance",
    );
    drop(client);
    assert_eq!(first.terminate().await, Some(0));

    let zk = zk::Client::connect(&zookeeper.servers).await.unwrap();
    let mut nodes = zk
        .list_children("/otter/canal/destinations/example/schema-history")
        .await
        .unwrap();
    nodes.sort();
    assert_eq!(nodes, ["history_db.t", "history_db.t2", "history_db.t3"]);
    // Forget the cursor, so the next instance starts where its config says: before the DDL.
    canal_instance::ha::zk::delete_recursive(&zk, "/otter/canal/destinations/example/1001")
        .await
        .unwrap();

    let second_port = free_port();
    let second = spawn(
        second_port,
        &format!("start:\n  journalName: {file}\n  position: {position}\n"),
    );
    second
        .wait_for_log("binlog dump started", Duration::from_secs(30))
        .await;
    let mut client = CanalClient::connect(&second.address(), "", "").await.unwrap();
    client.subscribe("example", "1001", "").await.unwrap();
    assert_decoded(
        &changes(&receive_rows(&mut client, 7, Duration::from_secs(30)).await),
        "second instance, replaying with the history from ZooKeeper",
    );
    assert!(
        !second.log().contains("seeded from information_schema"),
        "the stored history was used"
    );
}
