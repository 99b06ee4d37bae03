//! Crash and restart: after SIGKILL the instance resumes from the acknowledged cursor. Rows whose ack the server
//! processed are never delivered again, and nothing is missing, even when the crash falls inside a transaction.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use canal_e2e::{MariaDb, eventually};
use canal_instance::client::{CanalClient, GetWait};
use common::{Fixture, changes, exec, setup_schema, value_of};

fn ids(entries: &[canal_instance::protocol::Entry]) -> Vec<u32> {
    changes(entries)
        .iter()
        .map(|c| value_of(&c.row.after_columns, "id").parse().unwrap())
        .collect()
}

async fn get(client: &mut CanalClient) -> (i64, Vec<u32>) {
    let message = client
        .get_without_ack(3, GetWait::Up(Duration::from_millis(300)))
        .await
        .unwrap();
    (message.batch_id, ids(&message.entries))
}

#[tokio::test]
async fn sigkill_mid_transaction_loses_and_repeats_nothing() {
    let db = MariaDb::shared();
    setup_schema(db, "restart_db", &["CREATE TABLE t (id INT PRIMARY KEY, pad CHAR(20))"]).await;
    // Small ITEMSIZE batches so acknowledgements land between the rows events of the big transaction.
    let mut fixture = Fixture::start(db, "restart_db", "store:\n  batchMode: ITEMSIZE\n").await;
    let mut statements = Vec::new();
    for i in 0..10 {
        let values: Vec<String> = (1..=50).map(|k| format!("({}, 'x')", i * 50 + k)).collect();
        statements.push(format!("INSERT INTO t VALUES {}", values.join(",")));
    }
    statements.push("INSERT INTO t SELECT seq, 'big' FROM seq_501_to_3500".into());
    for i in 0..10 {
        let values: Vec<String> = (1..=50).map(|k| format!("({}, 'y')", 3500 + i * 50 + k)).collect();
        statements.push(format!("INSERT INTO t VALUES {}", values.join(",")));
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    exec(db, "restart_db", &statements).await;
    const TOTAL: usize = 4000;

    // Consume into the middle of the big transaction, acknowledging as we go. Its rows events hold 700-900 rows
    // each, so the batch of three entries that passes 1000 rows ends inside it, wherever the batches fall.
    let mut client = fixture.client().await;
    let mut acked: Vec<u32> = Vec::new();
    eventually(Duration::from_secs(60), "1000 acknowledged rows", async || {
        let (batch, rows) = get(&mut client).await;
        if batch != -1 {
            acked.extend(rows);
            client.ack(batch).await.unwrap();
        }
        if acked.len() >= 1000 {
            Ok(())
        } else {
            Err(format!("stalled at {} rows", acked.len()))
        }
    })
    .await;
    // One more get: its answer proves the server processed the last ack; its rows stay unacknowledged.
    let (_, unacked) = get(&mut client).await;
    let last_acked = *acked.last().unwrap();
    assert!(
        (501..3500).contains(&last_acked),
        "the crash falls inside the big transaction (last acked {last_acked}, {} acked)",
        acked.len()
    );

    fixture.instance.kill();
    fixture.restart().await;

    let mut client = fixture.client().await;
    let mut after: Vec<u32> = Vec::new();
    eventually(
        Duration::from_secs(60),
        "the rest of the rows after the restart",
        async || {
            let (batch, rows) = get(&mut client).await;
            if batch != -1 {
                after.extend(rows);
                client.ack(batch).await.unwrap();
            }
            if acked.len() + after.len() >= TOTAL {
                Ok(())
            } else {
                Err(format!("after restart only {} rows arrived", after.len()))
            }
        },
    )
    .await;
    let (_, extra) = get(&mut client).await;
    assert!(extra.is_empty(), "nothing beyond the table's rows: {extra:?}");

    let acked_set: BTreeSet<u32> = acked.iter().copied().collect();
    let repeated: Vec<u32> = after.iter().copied().filter(|id| acked_set.contains(id)).collect();
    assert!(
        repeated.is_empty(),
        "acknowledged rows delivered again: {:?}",
        &repeated[..repeated.len().min(10)]
    );
    assert_eq!(
        after.first(),
        Some(&(last_acked + 1)),
        "resumes right after the last acknowledged row"
    );
    assert!(after.starts_with(&unacked), "unacknowledged rows come again");
    let mut all: Vec<u32> = acked.iter().chain(&after).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=TOTAL as u32).collect::<Vec<_>>(), "every row exactly once");
}

#[tokio::test]
async fn graceful_stop_keeps_the_cursor() {
    let db = MariaDb::shared();
    setup_schema(db, "stop_db", &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let mut fixture = Fixture::start(db, "stop_db", "").await;
    exec(db, "stop_db", &["INSERT INTO t VALUES (1), (2), (3)"]).await;
    let mut client = fixture.client().await;
    let entries = common::receive_rows(&mut client, 3, Duration::from_secs(30)).await;
    assert_eq!(ids(&entries), [1, 2, 3]);
    let _ = get(&mut client).await;
    drop(client);

    assert_eq!(fixture.instance.terminate().await, Some(0), "SIGTERM is a clean exit");
    assert!(fixture.instance.log().contains("every acknowledged cursor is stored"));
    exec(db, "stop_db", &["INSERT INTO t VALUES (4)"]).await;
    fixture.restart().await;
    let mut client = fixture.client().await;
    let entries = common::receive_rows(&mut client, 1, Duration::from_secs(30)).await;
    assert_eq!(
        ids(&entries),
        [4],
        "resumes after the acknowledged rows, including ones written while stopped"
    );
}
