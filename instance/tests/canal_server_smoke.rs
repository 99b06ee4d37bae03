//! Smoke test of the differential tests' reference side (canal_e2e::canal_server): canal 1.1.7's own server, its
//! table-meta TSDB on H2 as canal ships it, read with canal-rs's client. It lives here rather than in e2e/tests
//! because the client is canal-instance's, which canal-e2e does not depend on.
//!
//! One binlog: CREATE TABLE, INSERT, INSERT, ALTER TABLE ADD COLUMN (in the middle), INSERT.
//! - Read from the start of the file, canal must decode each row with the structure of its time, which only the
//!   TSDB (history from the binlog's DDL) gives it; and the TSDB must really be the H2 one: its file exists and
//!   holds the DDL history and a snapshot. Restarted on its directory, it resumes from its cursor.
//! - Read by fresh servers from after the first INSERT's commit, this pins what canal 1.1.7 does: without a start
//!   time it starts earlier than asked (here at the file's start); with one it starts there, has no DDL to go by
//!   for the second INSERT and takes the source's current structure for it, which it rejects when the binlog names
//!   the columns (binlog_row_metadata=FULL) and applies blindly when it does not (MINIMAL).

use std::time::Duration;

use canal_e2e::canal_server::{CanalServer, CanalServerOptions};
use canal_e2e::{MariaDb, eventually};
use canal_instance::client::{CanalClient, GetWait};
use canal_instance::protocol::EntryType;
use canal_instance::protocol::entry::RowChange;
use mysql_async::prelude::Queryable;
use prost::Message;

/// One row change as `(event, table, ["name=value", ...])` of its after image.
type Row = (String, String, Vec<String>);

async fn binlog_end(conn: &mut mysql_async::Conn) -> (String, u64) {
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// Reads from canal's server until the row with `id=last_id` arrives; returns the DDL statements and rows seen.
async fn read_until(server: &CanalServer, destination: &str, last_id: &str) -> (Vec<String>, Vec<Row>) {
    let mut client = eventually(
        Duration::from_secs(30),
        "canal's server to accept a client",
        async || {
            CanalClient::connect(&server.address(), "", "")
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    client.subscribe(destination, "1001", "").await.unwrap();
    let mut ddl = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let want = format!("id={last_id}");
    let what = format!("the row {want} from canal's server");
    eventually(Duration::from_secs(40), &what, async || {
        let message = client
            .get_without_ack(100, GetWait::Up(Duration::from_millis(500)))
            .await
            .map_err(|e| format!("get: {e}\n{}", server.log_tail(40)))?;
        if message.batch_id != -1 {
            for entry in &message.entries {
                if entry.entry_type() != EntryType::Rowdata {
                    continue;
                }
                let header = entry.header.clone().unwrap_or_default();
                let change = RowChange::decode(entry.store_value.clone().unwrap_or_default()).unwrap();
                if change.is_ddl() {
                    ddl.push(change.sql().to_string());
                    continue;
                }
                for row in &change.row_datas {
                    rows.push((
                        format!("{:?}", change.event_type()),
                        header.table_name().to_string(),
                        row.after_columns
                            .iter()
                            .map(|c| format!("{}={}", c.name(), c.value()))
                            .collect(),
                    ));
                }
            }
            client.ack(message.batch_id).await.map_err(|e| e.to_string())?;
        }
        if rows.iter().any(|(_, _, columns)| columns.first() == Some(&want)) {
            Ok(())
        } else {
            Err(format!("rows so far: {rows:?}\n{}", server.log_tail(40)))
        }
    })
    .await;
    (ddl, rows)
}

/// canal's log lines that say the TSDB failed (canal logs these and carries on with less).
fn tsdb_trouble(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains(" ERROR ")
                || l.contains("failed to build TableMetaTSDB")
                || l.contains("init meta_history failed")
                || l.contains("init meta_snapshot failed")
                || l.contains("apply failed")
                || l.contains("compare failed")
        })
        .collect()
}

/// An INSERT into diff.t as [`read_until`] renders it.
fn insert(columns: &[&str]) -> Row {
    (
        "Insert".into(),
        "t".into(),
        columns.iter().map(|c| c.to_string()).collect(),
    )
}

/// Writes the test's binlog into a fresh file; returns the file and the offset after the first INSERT's commit.
async fn write_binlog(db: &MariaDb) -> (String, u64) {
    let mut conn = db.admin().await;
    conn.query_drop("CREATE DATABASE diff").await.unwrap();
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let (journal, _) = binlog_end(&mut conn).await;
    for sql in [
        "CREATE TABLE diff.t (id INT PRIMARY KEY, a VARCHAR(20))",
        "INSERT INTO diff.t VALUES (0, 'zero')",
    ] {
        conn.query_drop(sql).await.unwrap();
    }
    let (_, after_first_commit) = binlog_end(&mut conn).await;
    for sql in [
        "INSERT INTO diff.t VALUES (1, 'one')",
        "ALTER TABLE diff.t ADD COLUMN b INT AFTER id",
        "INSERT INTO diff.t VALUES (2, 22, 'two')",
    ] {
        conn.query_drop(sql).await.unwrap();
    }
    (journal, after_first_commit)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canal_server_decodes_rows_with_its_h2_tsdb() {
    let db = MariaDb::start(&[]);
    let (journal, after_first_commit) = write_binlog(&db).await;

    // From the start of the file: the CREATE TABLE and the ALTER are in the binlog read.
    let options = CanalServerOptions {
        mysql_address: db.address(),
        journal: journal.clone(),
        position: 4,
        filter_regex: "diff\\..*".into(),
        destination: "diff".into(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let mut server = CanalServer::start(&options);
    eprintln!("start took {:.1} s", started.elapsed().as_secs_f64());
    let (ddl, rows) = read_until(&server, "diff", "2").await;
    eprintln!("from offset 4: ddl {ddl:?}\nrows {rows:?}");
    let all_rows = vec![
        insert(&["id=0", "a=zero"]),
        insert(&["id=1", "a=one"]),
        insert(&["id=2", "b=22", "a=two"]),
    ];
    assert_eq!(rows, all_rows, "{}", server.log_tail(60));
    assert!(
        ddl.iter().any(|s| s.contains("ADD COLUMN b")),
        "no ALTER entry: {ddl:?}"
    );
    let h2 = server.tsdb_file();
    assert!(h2.is_file(), "no H2 file at {}", h2.display());
    let log = server.log();
    assert!(
        log.contains("init TableMetaTSDB with classpath:spring/tsdb/h2-tsdb.xml"),
        "canal did not build the H2 TSDB:\n{log}"
    );
    assert_eq!(tsdb_trouble(&log), Vec::<&str>::new(), "{log}");
    // What canal stored: the binlog's two DDL statements, and the snapshot of the source's tables it took at start.
    server.stop();
    let history = server.query_tsdb("SELECT binlog_file, binlog_offest, sql_type, sql_text FROM meta_history");
    eprintln!("meta_history:\n{history}");
    assert!(history.contains("CREATE TABLE diff.t"), "meta_history:\n{history}");
    assert!(history.contains("ADD COLUMN b"), "meta_history:\n{history}");
    let snapshots = server.query_tsdb("SELECT binlog_file, binlog_offest, binlog_timestamp FROM meta_snapshot");
    eprintln!("meta_snapshot:\n{snapshots}");
    assert!(snapshots.contains("(1 row"), "one snapshot:\n{snapshots}");
    // Restarted on the same directory, canal resumes from its cursor with the structures its TSDB rebuilds.
    server.restart();
    db.admin()
        .await
        .query_drop("INSERT INTO diff.t VALUES (3, 33, 'three')")
        .await
        .unwrap();
    let (_, rows) = read_until(&server, "diff", "3").await;
    assert_eq!(
        rows,
        vec![insert(&["id=3", "b=33", "a=three"])],
        "{}",
        server.log_tail(60)
    );
    assert_eq!(tsdb_trouble(&server.log()), Vec::<&str>::new(), "{}", server.log());
    drop(server);

    // From after the first INSERT's commit, no start time: canal looks the position's time up by scanning the file
    // and starts at the last transaction boundary before the event that ends at the offset. On MariaDB only XID
    // commits count and the first one ends exactly at the offset, so that is the file's start: the CREATE TABLE and
    // the first INSERT come again.
    let rounded = CanalServer::start(&CanalServerOptions {
        position: after_first_commit,
        destination: "rounded".into(),
        ..options.clone()
    });
    let (ddl, rows) = read_until(&rounded, "rounded", "2").await;
    eprintln!("from after the first commit, no time: ddl {ddl:?}\nrows {rows:?}");
    // (then the row of the restart check above)
    assert_eq!(rows.get(..3), Some(&all_rows[..]), "{}", rounded.log_tail(60));
    assert!(
        ddl.iter().any(|s| s.starts_with("CREATE TABLE")),
        "no CREATE TABLE: {ddl:?}"
    );
    drop(rounded);

    // The same offset with a start time: canal starts exactly there, its fresh TSDB holding the source's current
    // structure (id, b, a). The binlog has nothing before the second INSERT to correct that, and names the
    // columns of its row (id, a): canal sees the mismatch, fails the row and retries for ever, delivering nothing.
    let late = CanalServer::start(&CanalServerOptions {
        position: after_first_commit,
        timestamp: Some(now_ms()),
        destination: "late".into(),
        ..options.clone()
    });
    let mut client = CanalClient::connect(&late.address(), "", "").await.unwrap();
    client.subscribe("late", "1001", "").await.unwrap();
    let needle = "unmatch column metadata";
    eventually(Duration::from_secs(30), "canal to reject the row", async || {
        if late.log().contains(needle) {
            Ok(())
        } else {
            Err(late.log_tail(30))
        }
    })
    .await;
    let message = client.get_without_ack(100, GetWait::No).await.unwrap();
    let rows: Vec<_> = message
        .entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .collect();
    assert!(rows.len() <= 1, "at most the ALTER was delivered: {rows:?}");
    drop(late);
}

/// The fresh-TSDB case of the test above on a MariaDB that writes no column names into the binlog: canal cannot
/// tell, and decodes the row written as (id, a) with the structure (id, b, a), so its second value comes out under
/// the name `b`, with b's mysqlType `int(11)` (its sqlType, 12, and value, `one`, come from the binlog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canal_server_with_a_fresh_tsdb_takes_the_current_structure_for_old_rows() {
    let db = MariaDb::start(&["--binlog-row-metadata=MINIMAL"]);
    let (journal, after_first_commit) = write_binlog(&db).await;
    let late = CanalServer::start(&CanalServerOptions {
        mysql_address: db.address(),
        journal,
        position: after_first_commit,
        timestamp: Some(now_ms()),
        filter_regex: "diff\\..*".into(),
        destination: "minimal".into(),
        ..Default::default()
    });
    let (ddl, rows) = read_until(&late, "minimal", "2").await;
    eprintln!("MINIMAL, from after the first commit, with a time: ddl {ddl:?}\nrows {rows:?}");
    let want = vec![insert(&["id=1", "b=one"]), insert(&["id=2", "b=22", "a=two"])];
    assert_eq!(rows, want, "{}", late.log_tail(60));
}
