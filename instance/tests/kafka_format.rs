//! canal-rs's Kafka records against canal 1.1.7's own: the oracle (`e2e/canal-mq`, canal's `CanalKafkaProducer`
//! with its Kafka client replaced by a recording one) reads batches from a canal-rs instance and prints, for each,
//! the entries it received and the records canal would publish. The same entries go through canal-rs's
//! [`MqFormat`], and every record must be the same: topic, partition, no key, and the value byte for byte (in a
//! FlatMessage but for `ts`, the time of building). Scenarios: defaults; `partitionHash` by
//! columns, by primary key and by table over `partitionsNum`, with and without `database.hash`; `dynamicTopic` with
//! `dynamicTopicPartitionNum`; protobuf whole, hashed and split by topic. Needs `java` and `mvn` on the PATH and
//! Maven Central for the first build.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use bytes::Bytes;
use canal_api::sink::KafkaSink;
use canal_e2e::{MariaDb, repo_root};
use canal_instance::sink::mq::{MqFormat, Record};
use common::{Fixture, exec, setup_schema};
use serde_json::Value;

const SCHEMA: &str = "mq_format_db";

/// Builds `e2e/canal-mq` once per test process (build.sh skips an up-to-date build) and returns its output dir.
fn oracle_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo_root().join("e2e/canal-mq/build.sh"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run e2e/canal-mq/build.sh (Maven 3 and a JDK are needed): {e}"));
        assert!(
            output.status.success(),
            "e2e/canal-mq/build.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(stdout.lines().last().expect("build.sh prints its output dir").trim())
    })
    .clone()
}

/// Runs the oracle against `server` until a row of the marker table; returns its records.
async fn oracle(server: &str, props: &[String]) -> Vec<Value> {
    let jar = oracle_dir().join("canal-mq-oracle.jar");
    let mut command = Command::new("java");
    command
        .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar"])
        .arg(jar)
        .args(["--server", server, "--destination", "example"])
        .args(["--until-table", &format!("{SCHEMA}.marker"), "--timeout-seconds", "30"]);
    for prop in props {
        command.args(["--prop", prop]);
    }
    let output = tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output().expect("run java"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the oracle failed ({}) with {props:?}:\n{}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    println!("--- oracle {props:?}");
    stdout
        .lines()
        .map(|line| {
            println!("{line}");
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect()
}

/// The sink settings that canal's `canal.mq.*` properties stand for.
fn sink(props: &[String]) -> KafkaSink {
    let mut yaml = String::from("bootstrapServers: unused:9092\ntopic: example\n");
    for prop in props {
        let (key, value) = prop.split_once('=').unwrap();
        let field = match key {
            "canal.mq.topic" => "topic",
            "canal.mq.dynamicTopic" => "dynamicTopic",
            "canal.mq.partition" => "partition",
            "canal.mq.partitionsNum" => "partitionsNum",
            "canal.mq.partitionHash" => "partitionHash",
            "canal.mq.dynamicTopicPartitionNum" => "dynamicTopicPartitionNum",
            "canal.mq.flatMessage" => "flatMessage",
            "canal.mq.database.hash" => "databaseHash",
            other => panic!("no sink setting for {other}"),
        };
        let scalar = value.parse::<u64>().is_ok() || value == "true" || value == "false";
        if scalar {
            yaml.push_str(&format!("{field}: {value}\n"));
        } else {
            yaml.push_str(&format!("{field}: '{value}'\n"));
        }
    }
    serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

/// One record as compared: topic, partition, and the value (flat JSON without `ts`, or the protobuf bytes).
#[derive(Debug, PartialEq)]
struct Compared {
    topic: String,
    partition: i64,
    value: Value,
}

/// A FlatMessage's JSON text, byte for byte, but for `ts` (the time of building), which must be a positive number.
fn flat_value(bytes: &[u8]) -> Value {
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 JSON");
    let at = text.find(",\"ts\":").unwrap_or_else(|| panic!("no ts in {text}")) + ",\"ts\":".len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    assert!(digits > 0, "ts is the time of building: {text}");
    Value::from(format!("{}<ts>{}", &text[..at], &text[at + digits..]))
}

/// Runs the oracle with `props`, feeds each batch's entries to canal-rs's format with the same settings, and
/// compares the records. Returns how many records were compared.
async fn same_records_as_canal(server: &str, props: &[String]) -> usize {
    let lines = oracle(server, props).await;
    let format = MqFormat::new(&sink(props)).unwrap();
    let flat = !props.iter().any(|p| p == "canal.mq.flatMessage=false");
    let mut compared = 0;
    let mut batches = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(entries) = line["entries"].as_array() else {
            continue;
        };
        batches += 1;
        let batch = line["batch"].as_i64().unwrap();
        let entries: Vec<Bytes> = entries
            .iter()
            .map(|e| Bytes::from(base64(e.as_str().unwrap())))
            .collect();
        let theirs: Vec<Compared> = lines[i + 1..]
            .iter()
            .take_while(|l| l.get("entries").is_none())
            .map(|r| {
                assert!(r["key"].is_null(), "canal's records have no key: {r}");
                let value = if flat {
                    flat_value(r["value"].as_str().unwrap().as_bytes())
                } else {
                    Value::from(base64(r["valueBase64"].as_str().unwrap()))
                };
                Compared {
                    topic: r["topic"].as_str().unwrap().to_string(),
                    partition: r["partition"].as_i64().unwrap(),
                    value,
                }
            })
            .collect();
        let mut ours: Vec<Record> = format.records(batch, &entries, 1).unwrap();
        // canal sends each dynamic topic from its own thread; the oracle groups the records by topic, keeping each
        // topic's order.
        ours.sort_by(|a, b| a.topic.cmp(&b.topic));
        let ours: Vec<Compared> = ours
            .into_iter()
            .map(|r| Compared {
                topic: r.topic,
                partition: i64::from(r.partition),
                value: if flat {
                    flat_value(&r.value)
                } else {
                    Value::from(r.value)
                },
            })
            .collect();
        assert_eq!(ours, theirs, "batch {batch} with {props:?}");
        compared += ours.len();
    }
    assert!(batches > 0, "the oracle printed no batch");
    compared
}

/// Rows `first..first+3` in t1 and t2 (one multi-row INSERT each, one transaction), an UPDATE to NULL, an UPDATE to
/// text JSON escapes, a DELETE, a DDL, then a marker row.
async fn write(db: &MariaDb, first: u32) {
    let rows = |table: &str| {
        let values: Vec<String> = (first..first + 3)
            .map(|i| format!("({i}, 'v{i}', {})", i * 7))
            .collect();
        format!("INSERT INTO {table} VALUES {}", values.join(", "))
    };
    exec(
        db,
        SCHEMA,
        &[
            "BEGIN",
            &rows("t1"),
            &rows("t2"),
            "COMMIT",
            &format!("UPDATE t1 SET v = NULL, n = n + 1 WHERE id >= {first}"),
            // Text that JSON must escape, and beyond ASCII: the bytes must still be canal's.
            &format!("UPDATE t2 SET n = 0, v = CONCAT('é\"/', CHAR(92), CHAR(10), CHAR(9), CHAR(1), '😀<') WHERE id = {first}"),
            &format!("DELETE FROM t2 WHERE id = {}", first + 1),
            &format!("ALTER TABLE t2 COMMENT 'round {first}'"),
            &format!("INSERT INTO marker VALUES ({first})"),
        ],
    )
    .await;
}

#[tokio::test]
async fn kafka_records_equal_canals() {
    let db = MariaDb::shared();
    setup_schema(
        db,
        SCHEMA,
        &[
            "CREATE TABLE t1 (id INT PRIMARY KEY, v VARCHAR(10), n INT)",
            "CREATE TABLE t2 (id INT, v VARCHAR(10), n INT, PRIMARY KEY (id, v))",
            "CREATE TABLE marker (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let fixture = Fixture::start(db, SCHEMA, "").await;
    let server = fixture.instance.address();
    oracle_dir();
    let hash = format!("canal.mq.partitionHash={SCHEMA}.t1:id^n,{SCHEMA}.t2:$pk$,{SCHEMA}\\.mark.*");
    let scenarios: Vec<Vec<String>> = vec![
        vec![],
        vec!["canal.mq.partition=2".into()],
        vec!["canal.mq.partitionsNum=3".into(), hash.clone()],
        vec![
            "canal.mq.partitionsNum=5".into(),
            hash.clone(),
            "canal.mq.database.hash=false".into(),
        ],
        vec![
            format!("canal.mq.dynamicTopic={SCHEMA}.t1,special:{SCHEMA}.t2,{SCHEMA}"),
            "canal.mq.dynamicTopicPartitionNum=special:4".into(),
            "canal.mq.partitionsNum=2".into(),
            hash.clone(),
        ],
        vec!["canal.mq.flatMessage=false".into()],
        vec![
            "canal.mq.flatMessage=false".into(),
            "canal.mq.partitionsNum=3".into(),
            hash.clone(),
        ],
        vec![
            "canal.mq.flatMessage=false".into(),
            format!("canal.mq.dynamicTopic={SCHEMA}.t1"),
        ],
    ];
    for (round, props) in scenarios.iter().enumerate() {
        write(db, 100 * (round as u32 + 1)).await;
        let compared = same_records_as_canal(&server, props).await;
        assert!(compared > 0, "{props:?}");
        println!("{props:?}: {compared} records equal canal's");
    }
}

/// Standard base64 (with padding) to bytes.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {text}"),
    };
    let mut out = Vec::new();
    for chunk in text.trim_end_matches('=').as_bytes().chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (value(c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&bits.to_be_bytes()[1..chunk.len()]);
    }
    out
}
