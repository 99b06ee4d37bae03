//! The sink's transactional publisher on a real Kafka broker (KRaft, started by `e2e/services/kafka.sh`): each batch
//! and its position are one transaction that a `read_committed` consumer sees whole or not at all; a batch that fails
//! half way leaves nothing behind; the position read back is the last committed one; and a second producer with
//! the same transactional id fences the first, which then commits nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use canal_e2e::kafka::Kafka;
use canal_instance::error::Error;
use canal_instance::sink::kafka::{Publisher, PublisherConfig, committed_position, transactional_id};
use canal_instance::sink::mq::Record;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const TOPIC: &str = "changes";
const POSITIONS: &str = "canal-rs-positions";

fn config(kafka: &Kafka) -> PublisherConfig {
    PublisherConfig {
        bootstrap_servers: kafka.bootstrap.clone(),
        destination: "example".into(),
        positions_topic: POSITIONS.into(),
        transactional_id: Some(transactional_id("example")),
        // A record for a topic that does not exist fails after 5 s instead of librdkafka's 5 minutes.
        settings: BTreeMap::from([("message.timeout.ms".to_string(), "5000".to_string())]),
    }
}

fn records(batch: u32, count: u32) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            topic: TOPIC.into(),
            partition: (i % 2) as i32,
            value: format!("batch {batch} row {i}").into_bytes(),
        })
        .collect()
}

/// Everything a `read_committed` consumer reads from both partitions of the topic, in offset order per partition.
fn committed_values(kafka: &Kafka) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .set("group.id", "kafka-publisher-test")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..2 {
        partitions
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&partitions).unwrap();
    let mut values = Vec::new();
    let mut ended = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ended < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the topic did not end: {values:?}"
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => panic!("consume: {e}"),
            Some(Ok(m)) => values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
        }
    }
    values.sort();
    values
}

#[tokio::test]
async fn batches_commit_whole_and_a_new_producer_fences_the_old() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let kafka = Kafka::start();
    kafka.create_topic(TOPIC, 2, false);
    kafka.create_topic(POSITIONS, 1, true);
    assert_eq!(
        committed_position(&kafka.bootstrap, POSITIONS, "example")
            .await
            .unwrap(),
        None,
        "nothing published yet"
    );

    let first = Publisher::connect(config(&kafka)).await.unwrap();
    first.publish(&records(1, 3), "position-1").await.unwrap();
    first.publish(&records(2, 2), "position-2").await.unwrap();
    assert_eq!(
        committed_position(&kafka.bootstrap, POSITIONS, "example")
            .await
            .unwrap()
            .as_deref(),
        Some("position-2")
    );

    // A batch with a record for a topic that does not exist fails, and its other records are never seen.
    let mut broken = records(3, 2);
    broken.push(Record {
        topic: "no-such-topic".into(),
        partition: 0,
        value: b"lost".to_vec(),
    });
    let error = first.publish(&broken, "position-3").await.unwrap_err();
    assert!(
        error.to_string().contains("no-such-topic"),
        "the error names the topic: {error}"
    );
    assert_eq!(
        committed_position(&kafka.bootstrap, POSITIONS, "example")
            .await
            .unwrap()
            .as_deref(),
        Some("position-2"),
        "the failed batch's position is not committed"
    );
    // The same batch again, now without the bad record: the publisher is usable after an aborted transaction.
    first.publish(&records(3, 2), "position-3").await.unwrap();

    // The next active instance claims the transactional id: the first one can commit nothing more.
    let second = Publisher::connect(config(&kafka)).await.unwrap();
    let fenced = first.publish(&records(4, 1), "position-4-stale").await.unwrap_err();
    assert!(matches!(fenced, Error::SinkFenced { .. }), "{fenced}");
    second.publish(&records(4, 2), "position-4").await.unwrap();

    assert_eq!(
        committed_position(&kafka.bootstrap, POSITIONS, "example")
            .await
            .unwrap()
            .as_deref(),
        Some("position-4")
    );
    let mut want: Vec<String> = [(1, 3), (2, 2), (3, 2), (4, 2)]
        .iter()
        .flat_map(|&(batch, count)| records(batch, count))
        .map(|r| String::from_utf8(r.value).unwrap())
        .collect();
    want.sort();
    assert_eq!(
        committed_values(&kafka),
        want,
        "every committed record once; nothing of the failed or the fenced batch"
    );
}
