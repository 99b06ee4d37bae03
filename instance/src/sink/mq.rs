//! From a canal batch to the Kafka records canal 1.1.7 publishes for it (its Kafka producer on top of
//! MQMessageUtils): which topic (`dynamicTopic`), which partition (`partition`, or `partitionHash` over
//! `partitionsNum` / `dynamicTopicPartitionNum`), and the value: a FlatMessage per entry, or the whole batch as a
//! protobuf canal `Packet{MESSAGES}`. Records carry no key. Moving from canal keeps each row in the partition canal
//! put it in, because the hash is Java's `String.hashCode` with canal's arithmetic.

use bytes::Bytes;
use canal_api::sink::{
    DynamicTopicRule, HashBy, KafkaSink, PartitionHashRule, TopicPartitionsRule, dynamic_topic_rules, java_partition,
    java_string_hash, partition_hash_rules, topic_partitions_rules,
};
use prost::Message;

use super::flat::{FlatMessage, flat_message, row_value};
use crate::error::{Error, Result};
use crate::protocol::entry::{Entry, RowChange};
use crate::protocol::frame;
use crate::protocol::{EntryType, EventType};

/// One Kafka record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub value: Vec<u8>,
}

/// canal's MQ routing and format settings, compiled.
#[derive(Clone, Debug)]
pub struct MqFormat {
    topic: String,
    dynamic_topics: Vec<DynamicTopicRule>,
    partition: i32,
    partitions: Option<u32>,
    hash_rules: Vec<PartitionHashRule>,
    topic_partitions: Vec<TopicPartitionsRule>,
    database_hash: bool,
    flat: bool,
}

/// An entry with its RowChange read once.
struct Decoded<'a> {
    entry: Entry,
    bytes: &'a Bytes,
    change: RowChange,
}

impl MqFormat {
    pub fn new(sink: &KafkaSink) -> Result<Self> {
        Ok(Self {
            topic: sink.topic.clone(),
            dynamic_topics: dynamic_topic_rules(&sink.dynamic_topic)?,
            partition: i32::try_from(sink.partition).unwrap_or(i32::MAX),
            partitions: sink.partitions_num,
            hash_rules: partition_hash_rules(&sink.partition_hash)?,
            topic_partitions: topic_partitions_rules(&sink.dynamic_topic_partition_num)?,
            database_hash: sink.database_hash,
            flat: sink.flat_message,
        })
    }

    /// The records of batch `batch_id`, whose entries are `entries` (encoded as the store holds them), in the
    /// order canal sends them; `now_ms` is the FlatMessages' `ts`.
    pub fn records(&self, batch_id: i64, entries: &[Bytes], now_ms: i64) -> Result<Vec<Record>> {
        let mut decoded = Vec::with_capacity(entries.len());
        for bytes in entries {
            let entry =
                Entry::decode(bytes.as_ref()).map_err(|e| Error::Sink(format!("entry of batch {batch_id}: {e}")))?;
            // canal reads every entry's storeValue as a RowChange; for BEGIN/END it is unused.
            let change = match entry.entry_type() {
                EntryType::Rowdata => RowChange::decode(entry.store_value())
                    .map_err(|e| Error::Sink(format!("row change of batch {batch_id}: {e}")))?,
                _ => RowChange::default(),
            };
            decoded.push(Decoded { entry, bytes, change });
        }
        let mut records = Vec::new();
        if self.dynamic_topics.is_empty() {
            let all: Vec<&Decoded<'_>> = decoded.iter().collect();
            self.topic_records(&self.topic, batch_id, &all, now_ms, &mut records);
        } else {
            // Topics in order of first appearance; BEGIN/END are not published with dynamic topics.
            let mut topics: Vec<(String, Vec<&Decoded<'_>>)> = Vec::new();
            for d in &decoded {
                if matches!(
                    d.entry.entry_type(),
                    EntryType::Transactionbegin | EntryType::Transactionend
                ) {
                    continue;
                }
                let topic = self.topic_of(&d.entry);
                match topics.iter_mut().find(|(t, _)| *t == topic) {
                    Some((_, list)) => list.push(d),
                    None => topics.push((topic, vec![d])),
                }
            }
            for (topic, list) in topics {
                self.topic_records(&topic, batch_id, &list, now_ms, &mut records);
            }
        }
        Ok(records)
    }

    /// canal's `messageTopics`: `schema.table`, then `schema`, against the dynamic topic items; else the default. A
    /// topic named by the match itself is the name in lowercase with `.` as `_`.
    fn topic_of(&self, entry: &Entry) -> String {
        let header = entry.header.clone().unwrap_or_default();
        let (schema, table) = (header.schema_name(), header.table_name());
        if schema.is_empty() || table.is_empty() {
            return self.topic.clone();
        }
        let full = format!("{schema}.{table}");
        for name in [full.as_str(), schema] {
            if let Some(rule) = self.dynamic_topics.iter().find(|r| r.matches(name)) {
                return rule
                    .topic
                    .clone()
                    .unwrap_or_else(|| name.to_lowercase().replace('.', "_"));
            }
        }
        self.topic.clone()
    }

    fn partitions_of(&self, topic: &str) -> u32 {
        self.topic_partitions
            .iter()
            .find(|r| r.matches(topic))
            .map(|r| r.partitions)
            .or(self.partitions)
            .unwrap_or(1)
    }

    fn topic_records(&self, topic: &str, batch_id: i64, entries: &[&Decoded<'_>], now_ms: i64, out: &mut Vec<Record>) {
        let partitions = self.partitions_of(topic);
        let hashing = !self.hash_rules.is_empty();
        if !self.flat {
            // The batch as it came (BEGIN/END included) is one record; a batch canal had to take apart (hashed, or
            // split by topic) is rebuilt, and then carries canal's version field and no batch id.
            if hashing {
                for (partition, list) in self.partitioned_entries(entries, partitions).into_iter().enumerate() {
                    if let Some(list) = list {
                        out.push(Record {
                            topic: topic.to_string(),
                            partition: partition as i32,
                            value: frame::rebuilt_messages_packet(&list),
                        });
                    }
                }
            } else {
                let list: Vec<Bytes> = entries.iter().map(|d| d.bytes.clone()).collect();
                let value = if self.dynamic_topics.is_empty() {
                    frame::messages_packet(batch_id, &list)
                } else {
                    frame::rebuilt_messages_packet(&list)
                };
                out.push(Record {
                    topic: topic.to_string(),
                    partition: self.partition,
                    value,
                });
            }
            return;
        }
        for d in entries {
            let Some(message) = flat_message(batch_id, &d.entry, &d.change, now_ms) else {
                continue;
            };
            if hashing {
                for (partition, part) in self.partitioned_flat(message, partitions).into_iter().enumerate() {
                    if let Some(part) = part {
                        out.push(Record {
                            topic: topic.to_string(),
                            partition: partition as i32,
                            value: part.to_json(),
                        });
                    }
                }
            } else {
                out.push(Record {
                    topic: topic.to_string(),
                    partition: self.partition,
                    value: message.to_json(),
                });
            }
        }
    }

    fn rule_for(&self, schema: &str, table: &str) -> Option<&PartitionHashRule> {
        let name = format!("{schema}.{table}");
        self.hash_rules.iter().find(|r| r.matches(&name))
    }

    /// canal's `messagePartition` for FlatMessages: DDL, unmatched tables and statements without rows to partition 0;
    /// a table hash keeps the message whole; a row hash splits its rows (and their `old`) over the partitions.
    fn partitioned_flat(&self, message: FlatMessage, partitions: u32) -> Vec<Option<FlatMessage>> {
        let mut parts: Vec<Option<FlatMessage>> = vec![None; partitions.max(1) as usize];
        let rows = message.data.clone().unwrap_or_default();
        if message.is_ddl || rows.is_empty() {
            parts[0] = Some(message);
            return parts;
        }
        let Some(rule) = self.rule_for(&message.database, &message.table) else {
            parts[0] = Some(message);
            return parts;
        };
        let columns: Vec<String> = match &rule.by {
            HashBy::Table => {
                let partition = java_partition(java_string_hash(&message.table), partitions) as usize;
                parts[partition] = Some(message);
                return parts;
            }
            HashBy::PrimaryKey => message.pk_names.clone().unwrap_or_default(),
            HashBy::Columns(columns) => columns.clone(),
        };
        let old = message.old.clone().unwrap_or_default();
        for (i, row) in rows.into_iter().enumerate() {
            let mut hash = if self.database_hash {
                java_string_hash(&message.database)
            } else {
                0
            };
            for column in &columns {
                hash ^= java_string_hash(row_value(&row, column));
            }
            let partition = java_partition(hash, partitions) as usize;
            let part = parts[partition].get_or_insert_with(|| message.without_rows());
            part.data.get_or_insert_with(Vec::new).push(row);
            if !old.is_empty()
                && let Some(before) = old.get(i)
            {
                part.old.get_or_insert_with(Vec::new).push(before.clone());
            }
        }
        parts
    }

    /// canal's `messagePartition` for protobuf batches: BEGIN/END dropped, DDL and statements to partition 0, a
    /// table hash keeps the entry whole, a row hash makes one entry per row in its partition.
    fn partitioned_entries(&self, entries: &[&Decoded<'_>], partitions: u32) -> Vec<Option<Vec<Bytes>>> {
        let mut parts: Vec<Option<Vec<Bytes>>> = vec![None; partitions.max(1) as usize];
        let mut put = |partition: usize, bytes: Bytes| parts[partition].get_or_insert_with(Vec::new).push(bytes);
        for d in entries {
            if matches!(
                d.entry.entry_type(),
                EntryType::Transactionbegin | EntryType::Transactionend
            ) {
                continue;
            }
            if d.change.is_ddl() || d.change.row_datas.is_empty() {
                put(0, d.bytes.clone());
                continue;
            }
            let header = d.entry.header.clone().unwrap_or_default();
            let (database, table) = (header.schema_name(), header.table_name());
            let Some(rule) = self.rule_for(database, table) else {
                put(0, d.bytes.clone());
                continue;
            };
            if rule.by == HashBy::Table {
                put(
                    java_partition(java_string_hash(table), partitions) as usize,
                    d.bytes.clone(),
                );
                continue;
            }
            let event_type = d.change.event_type();
            for row in &d.change.row_datas {
                let columns = if event_type == EventType::Delete {
                    &row.before_columns
                } else {
                    &row.after_columns
                };
                let mut hash = if self.database_hash {
                    java_string_hash(database)
                } else {
                    0
                };
                for column in columns {
                    let hashed = match &rule.by {
                        HashBy::PrimaryKey => column.is_key(),
                        HashBy::Columns(names) => names.iter().any(|n| n.eq_ignore_ascii_case(column.name())),
                        HashBy::Table => false,
                    };
                    if hashed {
                        hash ^= java_string_hash(column.value());
                    }
                }
                let one_row = RowChange {
                    row_datas: vec![row.clone()],
                    ..d.change.clone()
                };
                let entry = Entry {
                    store_value: Some(one_row.encode_to_vec().into()),
                    ..d.entry.clone()
                };
                put(java_partition(hash, partitions) as usize, entry.encode_to_vec().into());
            }
        }
        parts
    }
}
