//! XA transactions arrive as canal delivers them: the first phase as a transaction whose BEGIN and END carry
//! `XA_TYPE`/`XA_XID` props (the END at `XA END`), the second phase as an XACOMMIT or XAROLLBACK entry of its own.
//! A restart or a failover in the middle of an XA transaction loses and repeats nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use canal_e2e::{InstanceProcess, MariaDb, ZooKeeper, eventually, free_port};
use canal_instance::client::{CanalClient, ClusterClient, GetWait};
use canal_instance::protocol::entry::{Pair, RowChange, TransactionBegin, TransactionEnd};
use canal_instance::protocol::{Entry, EntryType};
use common::{BINARY, Fixture, changes, exec, setup_schema, value_of};
use prost::Message;

fn props(pairs: &[Pair]) -> String {
    let pairs: Vec<String> = pairs.iter().map(|p| format!("{}={}", p.key(), p.value())).collect();
    pairs.join(";")
}

/// One line per entry: its kind, and what canal's consumers read from it.
fn describe(entry: &Entry) -> String {
    let header = entry.header.clone().unwrap_or_default();
    let value = entry.store_value.clone().unwrap_or_default();
    match entry.entry_type() {
        EntryType::Transactionbegin => {
            let begin = TransactionBegin::decode(value).unwrap();
            format!("BEGIN [{}]", props(&begin.props))
        }
        EntryType::Transactionend => {
            let end = TransactionEnd::decode(value).unwrap();
            format!("END {} [{}]", end.transaction_id(), props(&end.props))
        }
        EntryType::Rowdata => {
            let change = RowChange::decode(value).unwrap();
            if change.row_datas.is_empty() {
                format!(
                    "{:?} {}.{} sql={:?} ddl={} [{}]",
                    header.event_type(),
                    header.schema_name(),
                    header.table_name(),
                    change.sql(),
                    change.is_ddl(),
                    props(&change.props)
                )
            } else {
                format!(
                    "{:?} {}.{} rows={}",
                    change.event_type(),
                    header.schema_name(),
                    header.table_name(),
                    change.row_datas.len()
                )
            }
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn xa_phases_arrive_as_canal_delivers_them() {
    let db = MariaDb::shared();
    setup_schema(db, "xa_db", &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let fixture = Fixture::start(db, "xa_db", "").await;
    exec(
        db,
        "xa_db",
        &[
            "XA START 'g1','b1',7",
            "INSERT INTO t VALUES (1, 'a')",
            "XA END 'g1','b1',7",
            "XA PREPARE 'g1','b1',7",
            "XA COMMIT 'g1','b1',7",
            "XA START 'g2'",
            "INSERT INTO t VALUES (2, 'b')",
            "XA END 'g2'",
            "XA PREPARE 'g2'",
            "XA ROLLBACK 'g2'",
            // One phase: MariaDB logs it as an ordinary transaction.
            "XA START 'g3'",
            "INSERT INTO t VALUES (3, 'c')",
            "XA END 'g3'",
            "XA COMMIT 'g3' ONE PHASE",
            "INSERT INTO t VALUES (4, 'd')",
        ],
    )
    .await;
    let mut client = fixture.client().await;
    let mut seen: Vec<String> = Vec::new();
    eventually(Duration::from_secs(30), "every entry up to row 4", async || {
        let message = client
            .get_without_ack(100, GetWait::Up(Duration::from_millis(200)))
            .await
            .unwrap();
        // Tests running beside this one write XA transactions and plain ones of their own: their XA markers and
        // their (filtered, so empty) transactions pass the table filter, as in canal.
        seen.extend(message.entries.iter().map(describe).filter(|d| {
            let ours = !d.contains("XA_TYPE") || d.contains("X'6731'") || d.contains("X'6732'");
            let empty_transaction = (d.starts_with("BEGIN") || d.starts_with("END")) && d.ends_with("[]");
            ours && !empty_transaction
        }));
        if message.batch_id != -1 {
            client.ack(message.batch_id).await.unwrap();
        }
        if seen.iter().filter(|s| s.starts_with("Insert")).count() >= 4 {
            Ok(())
        } else {
            Err(format!("so far: {seen:#?}"))
        }
    })
    .await;
    let xa = |kind: &str, xid: &str| format!("XA_TYPE={kind};XA_XID={xid}");
    let expected = [
        format!("BEGIN [{}]", xa("XA START", " X'6731',X'6231',7")),
        "Query . sql=\"INSERT INTO t VALUES (1, 'a')\" ddl=false []".to_string(),
        "Insert xa_db.t rows=1".to_string(),
        format!("END 0 [{}]", xa("XA END", " X'6731',X'6231',7")),
        format!(
            "Xacommit . sql=\"XA COMMIT X'6731',X'6231',7\" ddl=false [{}]",
            xa("XA COMMIT", " X'6731',X'6231',7")
        ),
        format!("BEGIN [{}]", xa("XA START", " X'6732',X'',1")),
        "Query . sql=\"INSERT INTO t VALUES (2, 'b')\" ddl=false []".to_string(),
        "Insert xa_db.t rows=1".to_string(),
        format!("END 0 [{}]", xa("XA END", " X'6732',X'',1")),
        format!(
            "Xarollback . sql=\"XA ROLLBACK X'6732',X'',1\" ddl=false [{}]",
            xa("XA ROLLBACK", " X'6732',X'',1")
        ),
    ];
    assert_eq!(seen[..expected.len()], expected[..], "all entries: {seen:#?}");
    let rest = &seen[expected.len()..];
    assert_eq!(
        rest.iter().filter(|s| s.starts_with("Insert")).count(),
        2,
        "the one-phase transaction and the plain one follow: {rest:#?}"
    );
    assert!(
        rest.iter().all(|s| !s.contains("XA_TYPE")),
        "a one-phase XA commit is an ordinary transaction in MariaDB's binlog: {rest:#?}"
    );
}

const ROWS: u32 = 3000;

/// One XA transaction `xid` of `ROWS` rows (many rows events), prepared and committed, then a plain row after it.
async fn write_big_xa_transaction(db: &MariaDb, schema: &str, xid: &str) {
    let fill = format!("INSERT INTO t SELECT seq, 'x' FROM seq_1_to_{ROWS}");
    exec(
        db,
        schema,
        &[
            &format!("XA START '{xid}'"),
            &fill,
            &format!("XA END '{xid}'"),
            &format!("XA PREPARE '{xid}'"),
            &format!("XA COMMIT '{xid}'"),
            &format!("INSERT INTO t VALUES ({}, 'after')", ROWS + 1),
        ],
    )
    .await;
}

/// What a consumer received: row ids in order, and the XA markers of one XID.
struct Received {
    /// The XID as the binlog prints it (hex).
    xid: String,
    ids: Vec<u32>,
    markers: Vec<String>,
}

impl Received {
    fn of(xid: &str) -> Self {
        Self {
            xid: format!("X'{}'", xid.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
            ids: Vec::new(),
            markers: Vec::new(),
        }
    }

    fn take(&mut self, entries: &[Entry]) {
        for change in changes(entries) {
            self.ids
                .push(value_of(&change.row.after_columns, "id").parse().unwrap());
        }
        // XA markers pass every table filter, so those of the tests beside this one arrive too.
        self.markers.extend(
            entries
                .iter()
                .map(describe)
                .filter(|d| d.contains("XA_TYPE") && d.contains(&self.xid)),
        );
    }
}

/// Checks that two consumers' receipts, split by a restart after `acked`, hold every row and marker once.
fn assert_once_each(acked: &Received, after: &Received) {
    let acked_ids: BTreeSet<u32> = acked.ids.iter().copied().collect();
    let repeated: Vec<u32> = after.ids.iter().copied().filter(|id| acked_ids.contains(id)).collect();
    assert!(
        repeated.is_empty(),
        "acknowledged rows delivered again: {:?}",
        &repeated[..repeated.len().min(10)]
    );
    let last = *acked.ids.last().unwrap();
    assert!(
        (1..ROWS).contains(&last),
        "the cut falls inside the XA transaction (last acked row {last})"
    );
    assert_eq!(
        after.ids.first(),
        Some(&(last + 1)),
        "resumes right after the last acknowledged row"
    );
    let mut all: Vec<u32> = acked.ids.iter().chain(&after.ids).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=ROWS + 1).collect::<Vec<_>>(), "every row exactly once");
    let markers: Vec<&str> = acked
        .markers
        .iter()
        .chain(&after.markers)
        .map(|m| m.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        markers,
        ["BEGIN", "END", "Xacommit"],
        "each XA marker once, in order: {:?} then {:?}",
        acked.markers,
        after.markers
    );
}

/// The two consumers of these tests (one server, or the active one through ZooKeeper) behind one face.
trait Consumer {
    async fn fetch(&mut self, size: i32) -> Result<canal_instance::client::Message, String>;
    async fn acknowledge(&mut self, batch_id: i64);
}

impl Consumer for CanalClient {
    async fn fetch(&mut self, size: i32) -> Result<canal_instance::client::Message, String> {
        self.get_without_ack(size, GetWait::Up(Duration::from_millis(300)))
            .await
            .map_err(|e| e.to_string())
    }

    async fn acknowledge(&mut self, batch_id: i64) {
        self.ack(batch_id).await.unwrap();
    }
}

impl Consumer for ClusterClient {
    async fn fetch(&mut self, size: i32) -> Result<canal_instance::client::Message, String> {
        self.get_without_ack(size, GetWait::Up(Duration::from_millis(300)))
            .await
            .map_err(|e| e.to_string())
    }

    async fn acknowledge(&mut self, batch_id: i64) {
        self.ack(batch_id).await.unwrap();
    }
}

/// Gets batches of `size` entries and acks them into `received` until `done` holds (a failed get, as while a
/// standby takes over, is retried).
async fn consume_until(
    client: &mut impl Consumer,
    received: &mut Received,
    size: i32,
    what: &str,
    done: impl Fn(&Received) -> bool,
) {
    eventually(Duration::from_secs(90), what, async || {
        let message = client.fetch(size).await?;
        if message.batch_id != -1 {
            received.take(&message.entries);
            client.acknowledge(message.batch_id).await;
        }
        if done(received) {
            Ok(())
        } else {
            Err(format!("{} rows so far", received.ids.len()))
        }
    })
    .await;
}

#[tokio::test]
async fn sigkill_in_the_middle_of_an_xa_transaction_loses_and_repeats_nothing() {
    let db = MariaDb::shared();
    setup_schema(
        db,
        "xa_restart_db",
        &["CREATE TABLE t (id INT PRIMARY KEY, pad CHAR(20))"],
    )
    .await;
    let mut fixture = Fixture::start(db, "xa_restart_db", "store:\n  batchMode: ITEMSIZE\n").await;
    write_big_xa_transaction(db, "xa_restart_db", "restart").await;

    let mut client = fixture.client().await;
    let mut acked = Received::of("restart");
    consume_until(&mut client, &mut acked, 3, "1000 acknowledged rows", |r| {
        r.ids.len() >= 1000
    })
    .await;
    // Its answer proves the server processed the last ack.
    client.get_without_ack(1, GetWait::No).await.unwrap();
    fixture.instance.kill();
    fixture.restart().await;

    let mut client = fixture.client().await;
    let mut after = Received::of("restart");
    consume_until(&mut client, &mut after, 100, "the rest after the restart", |r| {
        r.ids.contains(&(ROWS + 1))
    })
    .await;
    assert_once_each(&acked, &after);
}

#[tokio::test]
async fn failover_in_the_middle_of_an_xa_transaction_loses_and_repeats_nothing() {
    let zookeeper = ZooKeeper::standalone();
    let db = MariaDb::shared();
    setup_schema(
        db,
        "xa_failover_db",
        &["CREATE TABLE t (id INT PRIMARY KEY, pad CHAR(20))"],
    )
    .await;
    let spawn = |port: u16| {
        let dir = canal_e2e::fresh_dir("canal-xa-failover-");
        let config = common::zk_instance_config(db, "xa_failover_db", port, &zookeeper.servers, &dir)
            + "store:\n  batchMode: ITEMSIZE\n";
        InstanceProcess::spawn(BINARY, &dir, &config, port, &[("CANAL_SOURCE_PASSWORD", "canal")])
    };
    let mut a = spawn(free_port());
    a.wait_for_log("binlog dump started", Duration::from_secs(30)).await;
    let b = spawn(free_port());
    b.wait_for_log("connected to ZooKeeper", Duration::from_secs(30)).await;
    write_big_xa_transaction(db, "xa_failover_db", "failover").await;

    let mut client = ClusterClient::new(&zookeeper.servers, "example", "1001", "");
    client.retry_delay = Duration::from_millis(200);
    let mut acked = Received::of("failover");
    consume_until(&mut client, &mut acked, 3, "1000 acknowledged rows", |r| {
        r.ids.len() >= 1000
    })
    .await;
    client.get_without_ack(1, GetWait::No).await.unwrap();
    a.kill();

    let mut after = Received::of("failover");
    consume_until(&mut client, &mut after, 100, "the rest from the standby", |r| {
        r.ids.contains(&(ROWS + 1))
    })
    .await;
    drop(b);
    assert_once_each(&acked, &after);
}
