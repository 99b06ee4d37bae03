//! Wire compatibility with an outside client: canal-python 0.4 from PyPI (protobuf 3.20.x) subscribes, gets, acks
//! and decodes the rows canal-rs serves.

mod common;

use std::process::Command;
use std::time::Duration;

use canal_e2e::{MariaDb, python_with_canal, repo_root};
use common::{Fixture, exec, setup_schema};
use serde_json::Value;

#[tokio::test]
async fn canal_python_receives_the_rows() {
    let python = python_with_canal();
    let db = MariaDb::shared();
    setup_schema(
        db,
        "py_db",
        &["CREATE TABLE orders (id BIGINT UNSIGNED PRIMARY KEY, item VARCHAR(20), price DECIMAL(8,2), note TEXT)"],
    )
    .await;
    let fixture = Fixture::start(db, "py_db", "").await;
    exec(
        db,
        "py_db",
        &[
            "INSERT INTO orders VALUES (1, 'tea 🍵', 3.50, NULL), (18446744073709551615, 'max', 0.00, 'x')",
            "UPDATE orders SET price = 4.00 WHERE id = 1",
            "DELETE FROM orders WHERE id = 18446744073709551615",
        ],
    )
    .await;

    let script = repo_root().join("e2e/python/canal_python_check.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["127.0.0.1", &fixture.port.to_string(), "example", "py_db\\..*", "4"])
            .output()
            .expect("run canal-python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "canal-python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("RESULT line");
    let changes: Vec<Value> = serde_json::from_str(result).unwrap();

    let kinds: Vec<&str> = changes.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["INSERT", "INSERT", "UPDATE", "DELETE"]);
    assert!(
        changes
            .iter()
            .all(|c| c["schema"] == "py_db" && c["table"] == "orders" && c["isDdl"] == false)
    );
    let first = &changes[0]["columns"];
    assert_eq!(first["id"]["value"], "1");
    assert_eq!(first["id"]["isKey"], true);
    assert_eq!(first["id"]["mysqlType"], "bigint(20) unsigned");
    assert_eq!(first["item"]["value"], "tea 🍵");
    assert_eq!(first["price"]["value"], "3.50");
    assert_eq!(first["price"]["sqlType"], 3);
    assert_eq!(first["note"]["isNull"], true);
    assert_eq!(changes[1]["columns"]["id"]["value"], "18446744073709551615");
    assert_eq!(
        changes[1]["columns"]["id"]["sqlType"], 3,
        "unsigned BIGINT beyond i64 is reported as DECIMAL"
    );
    assert_eq!(changes[2]["columns"]["price"]["value"], "4.00");
    assert_eq!(changes[2]["columns"]["price"]["updated"], true);
    assert_eq!(changes[2]["columns"]["item"]["updated"], false);

    // canal-python acknowledged everything: a Rust client with the same id finds nothing left.
    let mut client = fixture.client().await;
    let rest = client
        .get_without_ack(100, canal_instance::client::GetWait::Up(Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(
        common::changes(&rest.entries).is_empty(),
        "acks from canal-python were applied"
    );
}
