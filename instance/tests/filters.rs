//! Filters in full through a real binlog: field include/exclude lists, the row, statement-DML and DDL toggles,
//! RENAME kept when either name passes, and canal's DDL kinds as the SQL parser reads them.

mod common;

use std::time::Duration;

use canal_e2e::{MariaDb, eventually};
use canal_instance::client::{CanalClient, GetWait};
use canal_instance::protocol::entry::RowChange;
use canal_instance::protocol::{Entry, EntryType, EventType};
use common::{Fixture, changes, exec, setup_schema};
use prost::Message;

/// Replaces the standalone config's filter section.
fn with_filter(config: String, schema: &str, filter: &str) -> String {
    config.replace(
        &format!("filter:\n  include: '{schema}\\..*'\n"),
        &format!("filter:\n{filter}"),
    )
}

/// Gets and acks until an entry satisfies `last`, returning every entry seen.
async fn receive_until(client: &mut CanalClient, last: impl Fn(&Entry) -> bool) -> Vec<Entry> {
    let mut entries = Vec::new();
    eventually(Duration::from_secs(30), "the marker entry", async || {
        let message = client
            .get_without_ack(1000, GetWait::Up(Duration::from_millis(200)))
            .await
            .unwrap();
        if message.batch_id == -1 {
            return Err("the marker did not arrive".to_string());
        }
        client.ack(message.batch_id).await.unwrap();
        let done = message.entries.iter().any(&last);
        entries.extend(message.entries);
        if done {
            Ok(())
        } else {
            Err("the marker did not arrive".into())
        }
    })
    .await;
    entries
}

/// `(event type, table, sql)` of each statement entry.
fn statements(entries: &[Entry]) -> Vec<(EventType, String, String)> {
    entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .filter_map(|e| {
            let change = RowChange::decode(e.store_value.clone().unwrap_or_default()).ok()?;
            let header = e.header.clone().unwrap_or_default();
            change
                .sql
                .clone()
                .map(|sql| (header.event_type(), header.table_name().to_string(), sql))
        })
        .collect()
}

fn is_marker(entry: &Entry) -> bool {
    entry.header.as_ref().is_some_and(|h| h.table_name() == "marker")
}

#[tokio::test]
async fn field_lists_renames_and_ddl_kinds() {
    let db = MariaDb::shared();
    let schema = "filters_db";
    setup_schema(
        db,
        schema,
        &[
            "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(10), password VARCHAR(10))",
            "CREATE TABLE orders (id INT PRIMARY KEY, total INT, note VARCHAR(10))",
            "CREATE TABLE keep1 (id INT PRIMARY KEY)",
            "CREATE TABLE drop1 (id INT PRIMARY KEY)",
            "CREATE TABLE drop2 (id INT PRIMARY KEY)",
            "CREATE TABLE marker (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let filter = format!(
        "  include: '{schema}\\.(users|orders|keep.*|marker)'\n  includeFields: '{schema}.orders:id/TOTAL'\n  \
         excludeFields: '{schema}.users:password'\n"
    );
    let fixture = Fixture::start_with(db, schema, |c| with_filter(c, schema, &filter)).await;
    exec(
        db,
        schema,
        &[
            "INSERT INTO users VALUES (1, 'ann', 'secret')",
            "INSERT INTO orders VALUES (1, 20, 'gift')",
            "UPDATE orders SET note = 'x', total = 21 WHERE id = 1",
            "RENAME TABLE keep1 TO renamed1",
            "RENAME TABLE drop1 TO keep2",
            "RENAME TABLE drop2 TO gone2",
            "ALTER TABLE users ADD INDEX by_name (name)",
            "ALTER TABLE users DROP INDEX by_name",
            "ALTER TABLE users DROP PRIMARY KEY, ADD PRIMARY KEY (id, name)",
            "CREATE INDEX by_total ON orders (total)",
            "ALTER TABLE orders ADD COLUMN extra INT",
            // Statement-based DML reaches the binlog as a QUERY event, classified INSERT.
            "SET SESSION binlog_format = 'STATEMENT'",
            "INSERT INTO orders (id, total) VALUES (2, 5)",
            "SET SESSION binlog_format = 'ROW'",
            "INSERT INTO marker VALUES (1)",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let entries = receive_until(&mut client, is_marker).await;

    let rows = changes(&entries);
    let names = |table: &str| -> Vec<Vec<String>> {
        rows.iter()
            .filter(|c| c.table == table)
            .map(|c| c.row.after_columns.iter().map(|col| col.name().to_string()).collect())
            .collect()
    };
    assert_eq!(names("users"), [["id", "name"]], "password is excluded");
    assert_eq!(
        names("orders"),
        [["id", "total"], ["id", "total"]],
        "only the listed columns, matched without regard to case"
    );
    let update = rows.iter().find(|c| c.event_type == EventType::Update).unwrap();
    assert_eq!(update.row.before_columns.len(), 2, "the before image is filtered too");

    // QUERY entries (other tests' CREATE DATABASE on the shared server) are not name-filtered, as in canal.
    let kinds: Vec<(EventType, String)> = statements(&entries)
        .into_iter()
        .filter(|(kind, _, _)| *kind != EventType::Query)
        .map(|(kind, table, _)| (kind, table))
        .collect();
    let expected = [
        // A rename is reported under the new name, as canal does.
        (EventType::Rename, "renamed1"),
        (EventType::Rename, "keep2"),
        (EventType::Cindex, "users"),
        (EventType::Dindex, "users"),
        // A change of primary key is ALTER, not DINDEX: the key columns changed.
        (EventType::Alter, "users"),
        (EventType::Cindex, "orders"),
        (EventType::Alter, "orders"),
        (EventType::Insert, "orders"),
    ];
    assert_eq!(
        kinds,
        expected.map(|(k, t)| (k, t.to_string())),
        "renames pass on either name (drop2 -> gone2 passes on neither); ALTER kinds as canal reports them"
    );
}

#[tokio::test]
async fn row_dml_and_ddl_toggles() {
    let db = MariaDb::shared();
    let schema = "toggles_db";
    setup_schema(
        db,
        schema,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY)",
            "CREATE TABLE marker (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let filter = format!("  include: '{schema}\\..*'\n  rows: false\n  dml: false\n  ddl: false\n");
    let fixture = Fixture::start_with(db, schema, |c| with_filter(c, schema, &filter)).await;
    exec(
        db,
        schema,
        &[
            "INSERT INTO t VALUES (1)",
            // Statement-based DML reaches the binlog as a QUERY event.
            "SET SESSION binlog_format = 'STATEMENT'",
            "INSERT INTO t VALUES (2)",
            "SET SESSION binlog_format = 'ROW'",
            "ALTER TABLE t ADD COLUMN v INT",
            // The last statement is the marker: DCL still flows.
            "CREATE DATABASE IF NOT EXISTS toggles_marker_db",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let marker = |e: &Entry| {
        RowChange::decode(e.store_value.clone().unwrap_or_default())
            .is_ok_and(|c| c.sql().contains("toggles_marker_db"))
    };
    let entries = receive_until(&mut client, marker).await;
    assert!(changes(&entries).is_empty(), "rows: false drops row changes");
    // Other tests' CREATE DATABASE on the shared server may come too; they are QUERY like the marker.
    let kinds: Vec<EventType> = statements(&entries)
        .into_iter()
        .map(|(k, _, _)| k)
        .filter(|k| *k != EventType::Query)
        .collect();
    assert!(
        kinds.is_empty(),
        "dml: false drops statement INSERT, ddl: false drops ALTER; only DCL remains: {kinds:?}"
    );
    let texts: Vec<String> = statements(&entries).into_iter().map(|(_, _, sql)| sql).collect();
    assert!(
        !texts.iter().any(|sql| sql.starts_with("INSERT")),
        "dml: false drops the statement text of row events too (canal's filter.query.dml): {texts:?}"
    );
    exec(db, schema, &["DROP DATABASE toggles_marker_db"]).await;
}

#[tokio::test]
async fn statement_text_of_row_events_follows_the_table_filter() {
    let db = MariaDb::shared();
    let schema = "annotate_db";
    setup_schema(db, "annotate_other_db", &["CREATE TABLE o (id INT PRIMARY KEY)"]).await;
    setup_schema(
        db,
        schema,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY)",
            "CREATE TABLE marker (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let fixture = Fixture::start(db, schema, "").await;
    exec(
        db,
        schema,
        &[
            "INSERT INTO annotate_other_db.o VALUES (1)",
            "INSERT INTO t VALUES (1)",
            // One statement, an excluded table first: the text goes with the table that passes.
            "UPDATE annotate_other_db.o, t SET o.id = 2, t.id = 2",
            "INSERT INTO marker VALUES (1)",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let entries = receive_until(&mut client, |e| {
        is_marker(e) && e.header.as_ref().is_some_and(|h| h.event_type() == EventType::Insert)
    })
    .await;
    let texts: Vec<(EventType, String, String)> = statements(&entries)
        .into_iter()
        .filter(|(kind, _, _)| *kind == EventType::Query)
        .collect();
    assert_eq!(
        texts,
        [
            (EventType::Query, String::new(), "INSERT INTO t VALUES (1)".to_string()),
            (
                EventType::Query,
                String::new(),
                "UPDATE annotate_other_db.o, t SET o.id = 2, t.id = 2".to_string()
            ),
            (
                EventType::Query,
                String::new(),
                "INSERT INTO marker VALUES (1)".to_string()
            ),
        ],
        "the text of each statement whose rows pass the filter, and no other (canal would deliver all four)"
    );
    let shape: Vec<EventType> = entries
        .iter()
        .filter(|e| e.entry_type() == EntryType::Rowdata)
        .map(|e| e.header.clone().unwrap_or_default().event_type())
        .collect();
    assert_eq!(
        shape,
        [
            EventType::Query,
            EventType::Insert,
            EventType::Query,
            EventType::Update,
            EventType::Query,
            EventType::Insert
        ],
        "each text comes right before its rows"
    );
}

#[tokio::test]
async fn statement_dml_comes_with_its_context_as_canal_delivers_it() {
    let db = MariaDb::shared();
    let schema = "context_db";
    setup_schema(
        db,
        schema,
        &[
            "CREATE TABLE a (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10), d DOUBLE)",
            "CREATE TABLE marker (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let fixture = Fixture::start(db, schema, "").await;
    exec(
        db,
        schema,
        &[
            "SET SESSION binlog_format = 'STATEMENT'",
            "INSERT INTO a (v) VALUES ('x')",
            "SET @s = 'café', @n = 42, @r = 2.5, @z = NULL",
            "INSERT INTO a (v, d) VALUES (@s, @n + @r + IFNULL(@z, 0))",
            "SET SESSION binlog_format = 'ROW'",
            "INSERT INTO marker VALUES (1)",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let entries = receive_until(&mut client, |e| {
        is_marker(e) && e.header.as_ref().is_some_and(|h| h.event_type() == EventType::Insert)
    })
    .await;
    let texts: Vec<(EventType, String)> = statements(&entries)
        .into_iter()
        // Other tests' CREATE/DROP DATABASE on the shared server come too (DCL passes every table filter).
        .filter(|(_, _, sql)| sql.starts_with("SET ") || sql.starts_with("INSERT INTO a "))
        .map(|(kind, _, sql)| (kind, sql))
        .collect();
    assert_eq!(
        texts,
        [
            (EventType::Query, "SET INSERT_ID = 1".to_string()),
            (EventType::Insert, "INSERT INTO a (v) VALUES ('x')".to_string()),
            (EventType::Query, "SET INSERT_ID = 2".to_string()),
            (EventType::Query, "SET @s := 'café'".to_string()),
            (EventType::Query, "SET @n := 42".to_string()),
            (EventType::Query, "SET @r := 2.5".to_string()),
            (EventType::Query, "SET @z := NULL".to_string()),
            (
                EventType::Insert,
                "INSERT INTO a (v, d) VALUES (@s, @n + @r + IFNULL(@z, 0))".to_string()
            ),
        ],
        "each statement's context first, as canal delivers it"
    );
}
