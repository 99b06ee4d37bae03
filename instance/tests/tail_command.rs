//! The `canal-instance tail` command prints each change as one JSON line and acknowledges what it printed.

mod common;

use std::process::Command;
use std::time::Duration;

use canal_e2e::MariaDb;
use canal_instance::client::GetWait;
use common::{BINARY, Fixture, exec, setup_schema};
use serde_json::Value;

#[tokio::test]
async fn tail_prints_json_lines_and_acks() {
    let db = MariaDb::shared();
    setup_schema(db, "tail_db", &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let fixture = Fixture::start(db, "tail_db", "").await;
    exec(
        db,
        "tail_db",
        &[
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
            "UPDATE t SET v = 'c' WHERE id = 1",
            "DELETE FROM t WHERE id = 2",
        ],
    )
    .await;
    let server = fixture.instance.address();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .args([
                "tail",
                "--server",
                &server,
                "--destination",
                "example",
                "--max-changes",
                "4",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    // MariaDB's annotate rows: each statement's text comes as a QUERY line before its rows, as canal delivers it.
    assert_eq!(
        kinds,
        ["QUERY", "INSERT", "INSERT", "QUERY", "UPDATE", "QUERY", "DELETE"]
    );
    assert!(
        lines[0]["sql"].as_str().unwrap().starts_with("INSERT INTO"),
        "{}",
        lines[0]
    );
    let lines: Vec<Value> = lines.into_iter().filter(|l| l["type"] != "QUERY").collect();
    assert_eq!(lines[0]["after"]["v"], "a");
    assert_eq!(lines[2]["before"]["v"], "a");
    assert_eq!(lines[2]["after"]["v"], "c");
    assert_eq!(lines[2]["updated"], serde_json::json!(["v"]));
    assert_eq!(lines[3]["after"], Value::Null);
    assert!(lines.iter().all(|l| l["schema"] == "tail_db" && l["table"] == "t"));

    // Everything printed was acknowledged.
    let mut client = fixture.client().await;
    let rest = client
        .get_without_ack(100, GetWait::Up(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(common::changes(&rest.entries).is_empty());
}
