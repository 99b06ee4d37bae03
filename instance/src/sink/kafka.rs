//! The Kafka side of the sink: a transactional producer that publishes one canal batch per Kafka transaction, with
//! the destination's binlog position written in the same transaction, and reads that position back.
//!
//! Exactly once rests on three facts of Kafka's transactions: a `read_committed` consumer sees a batch's records
//! and its position together or not at all; the position read back at start is therefore exactly where the
//! published records end; and `init_transactions` under the same `transactional.id` fences every earlier producer,
//! so an instance that lost its role (paused past its ZooKeeper session, say) cannot commit after the next one
//! started. The position lives in partition 0 of a compacted topic, keyed by destination.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::mq::Record;
use crate::error::{Error, Result};

/// How long one transaction step (init, commit, abort) may take before it is reported as failed.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the sink publishes and how it identifies itself.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    pub bootstrap_servers: String,
    pub destination: String,
    pub positions_topic: String,
    /// `Some`: transactions under this id (exactly once). `None`: an idempotent producer without transactions.
    pub transactional_id: Option<String>,
    /// Further librdkafka settings (`acks`, `linger.ms`, ...), applied before the sink's own.
    pub settings: BTreeMap<String, String>,
}

/// The `transactional.id` of a destination's sink: one per destination, shared by all its instances, so that the
/// next active instance fences the previous one.
pub fn transactional_id(destination: &str) -> String {
    format!("canal-rs-{destination}")
}

/// Publishes batches to Kafka.
pub struct Publisher {
    producer: Arc<FutureProducer>,
    config: PublisherConfig,
}

fn is_fencing(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced | RDKafkaErrorCode::InvalidProducerEpoch)
    )
}

fn kafka_error(what: &str, config: &PublisherConfig, e: &KafkaError) -> Error {
    if is_fencing(e.rdkafka_error_code()) {
        return Error::SinkFenced {
            transactional_id: config.transactional_id.clone().unwrap_or_default(),
        };
    }
    Error::Sink(format!("{what} (brokers {}): {e}", config.bootstrap_servers))
}

impl Publisher {
    /// Creates the producer and, for exactly once, claims the transactional id (fencing earlier holders).
    pub async fn connect(config: PublisherConfig) -> Result<Self> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.settings {
            client.set(key, value);
        }
        client.set("bootstrap.servers", &config.bootstrap_servers);
        client.set("enable.idempotence", "true");
        if let Some(id) = &config.transactional_id {
            client.set("transactional.id", id);
        }
        let producer: FutureProducer = client
            .create()
            .map_err(|e| kafka_error("cannot create the Kafka producer", &config, &e))?;
        let producer = Arc::new(producer);
        if config.transactional_id.is_some() {
            let claimant = producer.clone();
            tokio::task::spawn_blocking(move || claimant.init_transactions(TRANSACTION_TIMEOUT))
                .await
                .map_err(|e| Error::Sink(format!("init_transactions did not finish: {e}")))?
                .map_err(|e| kafka_error("cannot initialise Kafka transactions", &config, &e))?;
        }
        Ok(Self { producer, config })
    }

    /// Publishes `records` and the destination's `position` (written after them) as one transaction, or with an
    /// idempotent producer when there are no transactions. On an error nothing of the batch is committed: the
    /// transaction is aborted, and the caller publishes the batch again (or stops, when fenced).
    pub async fn publish(&self, records: &[Record], position: &str) -> Result<()> {
        let transactional = self.config.transactional_id.is_some();
        if transactional {
            self.producer
                .begin_transaction()
                .map_err(|e| self.failure("cannot begin a Kafka transaction", &e))?;
        }
        match self.send_all(records, position).await {
            Ok(()) if transactional => {
                let producer = self.producer.clone();
                let committed = tokio::task::spawn_blocking(move || producer.commit_transaction(TRANSACTION_TIMEOUT))
                    .await
                    .map_err(|e| Error::Sink(format!("commit did not finish: {e}")))?;
                match committed {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let error = self.failure("cannot commit the Kafka transaction", &e);
                        self.abort().await;
                        Err(error)
                    }
                }
            }
            Ok(()) => Ok(()),
            Err(error) => {
                if transactional {
                    self.abort().await;
                }
                Err(error)
            }
        }
    }

    /// The error of a failed step. A fenced producer fails whatever it was doing (its queued records are purged), so
    /// its fatal error, not the step's, says why.
    fn failure(&self, what: &str, e: &KafkaError) -> Error {
        if let Some((code, _)) = self.producer.client().fatal_error()
            && is_fencing(Some(code))
        {
            return Error::SinkFenced {
                transactional_id: self.config.transactional_id.clone().unwrap_or_default(),
            };
        }
        kafka_error(what, &self.config, e)
    }

    async fn send_all(&self, records: &[Record], position: &str) -> Result<()> {
        let timeout = Duration::from_secs(60);
        let mut deliveries = Vec::with_capacity(records.len() + 1);
        for record in records {
            let message = FutureRecord::<[u8], [u8]>::to(&record.topic)
                .partition(record.partition)
                .payload(&record.value);
            deliveries.push((record.topic.as_str(), self.producer.send(message, timeout)));
        }
        let position_record = FutureRecord::to(&self.config.positions_topic)
            .partition(0)
            .key(self.config.destination.as_bytes())
            .payload(position.as_bytes());
        deliveries.push((
            self.config.positions_topic.as_str(),
            self.producer.send(position_record, timeout),
        ));
        for (topic, delivery) in deliveries {
            if let Err((e, _)) = delivery.await {
                return Err(self.failure(&format!("cannot publish to topic `{topic}`"), &e));
            }
        }
        Ok(())
    }

    async fn abort(&self) {
        let producer = self.producer.clone();
        let aborted = tokio::task::spawn_blocking(move || producer.abort_transaction(TRANSACTION_TIMEOUT)).await;
        match aborted {
            Ok(Ok(())) => tracing::info!("Kafka transaction aborted"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot abort the Kafka transaction; the broker aborts it when it times out")
            }
            Err(e) => tracing::warn!(error = %e, "aborting the Kafka transaction did not finish"),
        }
    }
}

/// The position last committed for `destination` in `positions_topic` (partition 0), as a `read_committed`
/// consumer sees it; `None` when nothing was published yet.
pub async fn committed_position(
    bootstrap_servers: &str,
    positions_topic: &str,
    destination: &str,
) -> Result<Option<String>> {
    let (bootstrap, topic, key) = (
        bootstrap_servers.to_string(),
        positions_topic.to_string(),
        destination.to_string(),
    );
    tokio::task::spawn_blocking(move || read_position(&bootstrap, &topic, &key))
        .await
        .map_err(|e| Error::Sink(format!("reading the committed position did not finish: {e}")))?
}

fn read_position(bootstrap: &str, topic: &str, key: &str) -> Result<Option<String>> {
    let fail = |what: &str, e: KafkaError| {
        Error::Sink(format!(
            "cannot read the committed position from topic `{topic}` (brokers {bootstrap}): {what}: {e}"
        ))
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("canal-rs-positions-{key}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| fail("creating a consumer", e))?;
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| fail("choosing partition 0", e))?;
    consumer
        .assign(&partitions)
        .map_err(|e| fail("assigning partition 0", e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .map_err(|e| fail("reading the partition's offsets", e))?;
    let mut position = None;
    if high <= low {
        return Ok(None);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::time::Instant::now() > deadline {
            return Err(Error::Sink(format!(
                "reading the committed position from topic `{topic}` (brokers {bootstrap}) took more than 60 s"
            )));
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(position),
            Some(Err(e)) => return Err(fail("reading", e)),
            Some(Ok(message)) => {
                if message.key() == Some(key.as_bytes()) {
                    position = message.payload().map(|p| String::from_utf8_lossy(p).into_owned());
                }
                if message.offset() + 1 >= high {
                    return Ok(position);
                }
            }
        }
    }
}
