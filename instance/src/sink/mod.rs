//! The sinks: where batches go besides canal's TCP clients, in canal's MQ formats. [`mq`] turns a batch into the
//! Kafka records canal 1.1.7 would publish for it (topics, partitions, values), [`flat`] is canal's FlatMessage, and
//! [`kafka`] publishes a batch's records and position in one Kafka transaction.

pub mod flat;
pub mod kafka;
pub mod mq;
