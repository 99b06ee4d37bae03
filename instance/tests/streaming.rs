//! Transactions through the whole pipeline: entry order and boundaries, and a 100,000-row transaction that overflows
//! a small store, so the binlog reader must wait for the client (backpressure) and still deliver every row once.

mod common;

use std::time::Duration;

use canal_e2e::{MariaDb, eventually, rss_kib};
use canal_instance::client::GetWait;
use canal_instance::protocol::entry::{RowChange, TransactionEnd};
use canal_instance::protocol::{EntryType, EventType};
use common::{Fixture, changes, exec, receive_rows, setup_schema, value_of};
use prost::Message;

#[tokio::test]
async fn transactions_arrive_whole_and_in_order() {
    let db = MariaDb::shared();
    setup_schema(db, "txn_db", &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let fixture = Fixture::start(db, "txn_db", "").await;
    exec(
        db,
        "txn_db",
        &[
            "BEGIN",
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
            "UPDATE t SET v = 'c' WHERE id = 1",
            "COMMIT",
            "BEGIN",
            "INSERT INTO t VALUES (3, 'x')",
            "ROLLBACK",
            "BEGIN",
            "DELETE FROM t WHERE id = 2",
            "INSERT INTO t VALUES (4, 'd')",
            "COMMIT",
            "ALTER TABLE t ADD COLUMN w INT",
            "INSERT INTO t VALUES (5, 'e', 7)",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let entries = receive_rows(&mut client, 6, Duration::from_secs(30)).await;

    // Other tests' transactions on the same server are filtered out, but canal lets such an empty transaction
    // through (BEGIN then END) every few seconds so cursors move; they are not part of the shape.
    let empty_transaction = |i: usize| {
        let kind = |j: usize| entries.get(j).map(|e: &canal_instance::protocol::Entry| e.entry_type());
        (kind(i) == Some(EntryType::Transactionbegin) && kind(i + 1) == Some(EntryType::Transactionend))
            || (i > 0 && kind(i - 1) == Some(EntryType::Transactionbegin) && kind(i) == Some(EntryType::Transactionend))
    };
    let shape: Vec<String> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| !empty_transaction(*i))
        .map(|(_, e)| e)
        .map(|e| match e.entry_type() {
            EntryType::Transactionbegin => "BEGIN".to_string(),
            EntryType::Transactionend => "END".to_string(),
            _ => e
                .header
                .clone()
                .unwrap_or_default()
                .event_type()
                .as_str_name()
                .to_string(),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "BEGIN", "QUERY", "INSERT", "QUERY", "UPDATE", "END", "BEGIN", "QUERY", "DELETE", "QUERY", "INSERT", "END",
            "ALTER", "BEGIN", "QUERY", "INSERT", "END"
        ],
        "the rolled-back transaction never reaches the binlog; each statement's text (MariaDB's annotate rows) comes \
         before its rows"
    );
    let statements: Vec<String> = entries
        .iter()
        .filter(|e| e.header.clone().unwrap_or_default().event_type() == EventType::Query)
        .map(|e| {
            let change = RowChange::decode(e.store_value.clone().unwrap_or_default()).unwrap();
            assert!(!change.is_ddl(), "a statement's text is not DDL");
            assert_eq!(
                e.header.clone().unwrap_or_default().schema_name(),
                "",
                "canal names no schema"
            );
            change.sql().to_string()
        })
        .collect();
    assert_eq!(
        statements,
        [
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
            "UPDATE t SET v = 'c' WHERE id = 1",
            "DELETE FROM t WHERE id = 2",
            "INSERT INTO t VALUES (4, 'd')",
            "INSERT INTO t VALUES (5, 'e', 7)",
        ]
    );
    for end in entries.iter().filter(|e| e.entry_type() == EntryType::Transactionend) {
        let body = TransactionEnd::decode(end.store_value.clone().unwrap_or_default()).unwrap();
        assert!(
            body.transaction_id().parse::<u64>().unwrap() > 0,
            "InnoDB commits carry an XID"
        );
    }
    // Offsets grow through the stream: one position per entry.
    let offsets: Vec<i64> = entries
        .iter()
        .map(|e| e.header.clone().unwrap_or_default().logfile_offset())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");

    let rows = changes(&entries);
    assert_eq!(
        value_of(&rows.last().unwrap().row.after_columns, "w"),
        "7",
        "column added by the ALTER"
    );
}

#[tokio::test]
async fn huge_transaction_streams_through_a_small_store() {
    const ROWS: usize = 100_000;
    let db = MariaDb::shared();
    setup_schema(db, "big_db", &["CREATE TABLE big (id INT PRIMARY KEY, pad CHAR(20))"]).await;
    // 16 entries of store: the transaction's ~150 rows events cannot all fit, so the reader has to wait.
    let fixture = Fixture::start(db, "big_db", "store:\n  bufferSize: 16\n  batchMode: ITEMSIZE\n").await;
    exec(
        db,
        "big_db",
        &["INSERT INTO big SELECT seq, 'padding' FROM seq_1_to_100000"],
    )
    .await;

    let mut client = fixture.client().await;
    let mut next_id = 1usize;
    let mut max_batch = 0;
    let mut peak_rss = 0;
    let what = format!("{ROWS} rows");
    eventually(Duration::from_secs(300), &what, async || {
        let message = client
            .get_without_ack(4, GetWait::Up(Duration::from_millis(500)))
            .await
            .unwrap();
        if message.batch_id == -1 {
            return Err(format!("only {} of {ROWS} rows arrived", next_id - 1));
        }
        max_batch = max_batch.max(message.entries.len());
        for change in changes(&message.entries) {
            assert_eq!(change.event_type, EventType::Insert);
            let id: usize = value_of(&change.row.after_columns, "id").parse().unwrap();
            assert_eq!(id, next_id, "rows arrive once and in order");
            next_id += 1;
        }
        client.ack(message.batch_id).await.unwrap();
        peak_rss = peak_rss.max(rss_kib(fixture.instance.pid()));
        if next_id > ROWS {
            Ok(())
        } else {
            Err(format!("only {} of {ROWS} rows arrived", next_id - 1))
        }
    })
    .await;
    assert!(max_batch <= 4, "ITEMSIZE batches hold at most fetch_size entries");
    assert!(
        peak_rss < 256 * 1024,
        "instance memory stays bounded: peak RSS {peak_rss} KiB"
    );
    let tail = client
        .get_without_ack(100, GetWait::Up(Duration::from_secs(2)))
        .await
        .unwrap();
    let extra = changes(&tail.entries);
    assert!(extra.is_empty(), "no row is delivered twice: {} extra", extra.len());
}

#[tokio::test]
async fn several_clients_connect_at_once() {
    let db = MariaDb::shared();
    setup_schema(db, "multi_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let fixture = Fixture::start(db, "multi_db", "").await;
    let address = fixture.instance.address();
    // Open several connections together; every one completes the handshake, authenticates and is served.
    let sessions = (0..8).map(|i| {
        let address = address.clone();
        tokio::spawn(async move {
            let mut client = canal_instance::client::CanalClient::connect(&address, "", "")
                .await
                .unwrap();
            client.subscribe("example", &(2000 + i).to_string(), "").await.unwrap();
            client.get_without_ack(10, GetWait::No).await.unwrap();
            client
        })
    });
    let mut clients = Vec::new();
    for session in sessions {
        clients.push(session.await.unwrap());
    }
    // While they stay connected, a consumer still gets the data.
    exec(db, "multi_db", &["INSERT INTO t VALUES (1), (2)"]).await;
    let mut consumer = fixture.client().await;
    let entries = receive_rows(&mut consumer, 2, Duration::from_secs(30)).await;
    assert_eq!(changes(&entries).len(), 2);
    drop(clients);
}
