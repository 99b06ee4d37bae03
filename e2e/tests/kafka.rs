//! The local Kafka broker (`e2e/services/kafka.sh`): it starts ready to use, takes plain and transactional records
//! through Kafka's own console tools, keeps them across a restart on the same port, and stops without leaving a
//! process behind.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canal_e2e::kafka::Kafka;
use canal_e2e::{eventually_blocking, process_alive};

/// Runs a tool to completion, fails the test with its output if it fails, and returns its stdout.
fn run(mut command: Command, what: &str, stdin: &str, kafka: &Kafka) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: run java: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: write stdin: {e}"));
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}\n---- broker log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        tail(&kafka.log()),
    );
    stdout
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Reads `count` records of `topic` from the beginning (the tool itself waits for them, 30 s at most) and returns
/// them as `key\tvalue` lines.
fn consume(kafka: &Kafka, topic: &str, count: usize, extra: &[&str]) -> Vec<String> {
    let mut command = kafka.tool("org.apache.kafka.tools.consumer.ConsoleConsumer");
    command
        .args([
            "--bootstrap-server",
            &kafka.bootstrap,
            "--topic",
            topic,
            "--from-beginning",
        ])
        .args(["--max-messages", &count.to_string(), "--timeout-ms", "30000"])
        .args(["--formatter-property", "print.key=true"])
        .args(extra);
    let out = run(command, &format!("consume {count} from {topic}"), "", kafka);
    out.lines().map(str::to_string).collect()
}

#[test]
fn kafka_broker_serves_transactions_and_survives_a_restart() {
    let started = Instant::now();
    let mut kafka = Kafka::start();
    let start_time = started.elapsed();
    assert!(process_alive(kafka.pid));
    assert!(kafka.version().starts_with("4."), "{}", kafka.version());

    kafka.create_topic("smoke", 1, false);
    kafka.create_topic("smoke-compacted", 1, true);
    kafka.create_topic("smoke-tx", 2, false);
    let mut describe = kafka.tool("org.apache.kafka.tools.TopicCommand");
    describe.args([
        "--bootstrap-server",
        &kafka.bootstrap,
        "--describe",
        "--topic",
        "smoke-compacted",
    ]);
    let description = run(describe, "describe smoke-compacted", "", &kafka);
    assert!(description.contains("cleanup.policy=compact"), "{description}");

    // One plain record, written with acks=all and read back.
    let mut produce = kafka.tool("org.apache.kafka.tools.ConsoleProducer");
    produce
        .args(["--bootstrap-server", &kafka.bootstrap, "--topic", "smoke"])
        .args([
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "key.separator=:",
        ]);
    run(produce, "produce to smoke", "k1:hello kafka\n", &kafka);
    assert_eq!(consume(&kafka, "smoke", 1, &[]), ["k1\thello kafka"]);

    // Transactions: 200 records in transactions of 50 ms, all of them committed.
    let mut perf = kafka.tool("org.apache.kafka.tools.ProducerPerformance");
    perf.args([
        "--topic",
        "smoke-tx",
        "--num-records",
        "200",
        "--record-size",
        "16",
        "--throughput",
        "-1",
    ])
    .args(["--transactional-id", "smoke-tx", "--transaction-duration-ms", "50"])
    .args(["--command-property", &format!("bootstrap.servers={}", kafka.bootstrap)]);
    run(perf, "transactional ProducerPerformance", "", &kafka);
    let committed = consume(&kafka, "smoke-tx", 200, &["--isolation-level", "read_committed"]);
    assert_eq!(committed.len(), 200, "{committed:?}");

    // A restart on the same data and port keeps every record.
    let restarted = Instant::now();
    let (old_pid, old_bootstrap) = (kafka.pid, kafka.bootstrap.clone());
    kafka.stop_broker();
    assert!(!process_alive(old_pid), "the broker exited");
    kafka.start_broker();
    let restart_time = restarted.elapsed();
    assert_eq!(kafka.bootstrap, old_bootstrap);
    assert_ne!(kafka.pid, old_pid);
    assert_eq!(consume(&kafka, "smoke", 1, &[]), ["k1\thello kafka"]);
    let committed = consume(&kafka, "smoke-tx", 200, &["--isolation-level", "read_committed"]);
    assert_eq!(committed.len(), 200);
    assert!(kafka.log().contains("Kafka Server started"), "{}", tail(&kafka.log()));

    println!(
        "kafka {}: start {start_time:?}, restart {restart_time:?}, whole test {:?}",
        kafka.version(),
        started.elapsed()
    );
    let pid = kafka.pid;
    drop(kafka);
    eventually_blocking(Duration::from_secs(30), "the broker to exit", || {
        if process_alive(pid) {
            Err(format!("pid {pid} alive"))
        } else {
            Ok(())
        }
    });
}
