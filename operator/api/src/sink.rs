//! Where changes go besides canal's TCP protocol: a Kafka sink in canal's MQ format (canal's `canal.serverMode =
//! kafka`). The routing keys keep canal's names and syntax (`canal.mq.topic`, `canal.mq.dynamicTopic`, ...), so a
//! canal configuration carries over key by key; credentials come from [`SecretSource`]s, never from the YAML.

use std::collections::BTreeMap;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SecretSource;
use crate::validate::{ConfigError, canal_regex};

/// The sinks of a destination. With a sink set, the canal TCP server is optional (`server.enabled`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkConfig {
    /// Publish every change to Kafka in canal's MQ format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSink>,
}

/// A Kafka sink: canal's MQ settings, the delivery guarantee and the producer's connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSink {
    /// `host:port[,host:port...]` of the brokers (canal's `kafka.bootstrap.servers`).
    pub bootstrap_servers: String,
    /// The topic of every change no `dynamicTopic` item routes elsewhere (`canal.mq.topic`).
    pub topic: String,
    /// canal's `canal.mq.dynamicTopic`: items separated by `,` or `;`, each `regex` or `topicName:regex`, matched
    /// against `schema.table` and then `schema`; without a topic name the topic is the matched name in lowercase.
    /// When set, TRANSACTIONBEGIN/END entries are not published.
    #[serde(default)]
    pub dynamic_topic: String,
    /// The partition when no hash applies (`canal.mq.partition`).
    #[serde(default)]
    pub partition: u32,
    /// Partition count for hashing (`canal.mq.partitionsNum`); used with `partitionHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions_num: Option<u32>,
    /// canal's `canal.mq.partitionHash`: items `schema.table:col1^col2`, `schema.table:$pk$`, or a bare regex that
    /// hashes by table name. Rows are placed by Java's `String.hashCode`, as canal places them.
    #[serde(default)]
    pub partition_hash: String,
    /// canal's `canal.mq.dynamicTopicPartitionNum`: `topicRegex:N,...`, the partition count per dynamic topic.
    #[serde(default)]
    pub dynamic_topic_partition_num: String,
    /// Mix the database name into row hashes (`canal.mq.database.hash`).
    #[serde(default = "default_true")]
    pub database_hash: bool,
    /// JSON FlatMessages (canal's default for Kafka) rather than protobuf canal Messages (`canal.mq.flatMessage`).
    #[serde(default = "default_true")]
    pub flat_message: bool,
    /// exactlyOnce: one Kafka transaction per canal batch, with the binlog position committed in it, fenced across
    /// failover (consumers read with `isolation.level=read_committed`). atLeastOnce: an idempotent producer without
    /// transactions, for brokers or quotas that forbid them; a crash may repeat the last batches.
    #[serde(default)]
    pub delivery: Delivery,
    /// The compacted topic that holds the destination's committed binlog position (exactlyOnce and atLeastOnce).
    #[serde(default = "default_positions_topic")]
    pub positions_topic: String,
    /// librdkafka producer settings passed through as they are (`acks`, `compression.type`, `linger.ms`,
    /// `batch.size`, `message.max.bytes`, ...). Settings the sink owns (`transactional.id`, `enable.idempotence`,
    /// `bootstrap.servers`, security) are refused here.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// How to authenticate and encrypt the connection to the brokers.
    #[serde(default)]
    pub security: KafkaSecurity,
}

/// Delivery guarantee of the Kafka sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    /// Transactions: every committed row exactly once for `read_committed` consumers.
    #[default]
    ExactlyOnce,
    /// Idempotent producer, no transactions: nothing lost, the last batches may repeat after a crash.
    AtLeastOnce,
}

/// TLS and SASL towards the brokers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSecurity {
    /// PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL (librdkafka's `security.protocol`).
    #[serde(default)]
    pub protocol: KafkaProtocol,
    /// PEM file of the CA that signed the brokers' certificates (TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate and key files, for brokers that authenticate clients by certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// Where the SASL password is read from (environment variable or file; in Kubernetes a Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_password_from: Option<SecretSource>,
}

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KafkaProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaProtocol::Plaintext => "plaintext",
            KafkaProtocol::Ssl => "ssl",
            KafkaProtocol::SaslPlaintext => "sasl_plaintext",
            KafkaProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, KafkaProtocol::SaslPlaintext | KafkaProtocol::SaslSsl)
    }
}

/// Producer settings the sink sets itself; a `producer` entry may not override them.
pub const KAFKA_OWNED_SETTINGS: &[&str] = &[
    "bootstrap.servers",
    "transactional.id",
    "enable.idempotence",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
];

fn default_true() -> bool {
    true
}

fn default_positions_topic() -> String {
    "canal-rs-positions".into()
}

/// A name in canal's MQ settings: written without regex characters it is a name compared without regard to case,
/// otherwise a regex that must match the whole name, in any case (canal's `isWildCard` and AviaterRegexFilter).
#[derive(Clone, Debug)]
pub enum NamePattern {
    Name(String),
    Regex(Regex),
}

impl NamePattern {
    pub fn parse(field: &str, text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        const REGEX_CHARACTERS: &[char] = &['*', '?', '+', '|', '(', ')', '{', '}', '[', ']', '\\', '$', '^'];
        if text.contains(REGEX_CHARACTERS) {
            Ok(NamePattern::Regex(canal_regex(field, text)?))
        } else {
            Ok(NamePattern::Name(text.to_string()))
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Name(n) => n.eq_ignore_ascii_case(name),
            NamePattern::Regex(r) => r.is_match(name),
        }
    }
}

/// canal splits every MQ list on `,` and `;` alike, with no escaping.
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split([',', ';']).map(str::trim).filter(|i| !i.is_empty())
}

/// One `canal.mq.dynamicTopic` item.
#[derive(Clone, Debug)]
pub struct DynamicTopicRule {
    /// The topic it names; `None`: the matched name itself, in lowercase.
    pub topic: Option<String>,
    pattern: NamePattern,
    /// A regex applies to `schema.table` when it contains an escaped dot (`\.`), else to the schema alone.
    tables: bool,
}

impl DynamicTopicRule {
    /// Whether the rule matches `name`, a `schema.table` or a `schema`.
    pub fn matches(&self, name: &str) -> bool {
        match &self.pattern {
            NamePattern::Name(_) => self.pattern.matches(name),
            NamePattern::Regex(_) => self.tables == name.contains('.') && self.pattern.matches(name),
        }
    }
}

/// Parses `canal.mq.dynamicTopic`.
pub fn dynamic_topic_rules(list: &str) -> Result<Vec<DynamicTopicRule>, ConfigError> {
    const FIELD: &str = "sink.kafka.dynamicTopic";
    items(list)
        .map(|item| {
            let (topic, pattern) = match item.split_once(':') {
                Some((topic, pattern)) => (Some(topic.trim().to_string()), pattern.trim()),
                None => (None, item),
            };
            if topic.as_deref() == Some("") || pattern.is_empty() {
                return Err(ConfigError::Invalid {
                    field: FIELD.into(),
                    message: format!("`{item}`: each item is `regex` or `topicName:regex`"),
                });
            }
            Ok(DynamicTopicRule {
                topic,
                pattern: NamePattern::parse(FIELD, pattern)?,
                tables: pattern.contains("\\."),
            })
        })
        .collect()
}

/// How rows of a table are spread over partitions (one `canal.mq.partitionHash` item).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashBy {
    /// By the table name: every row of the table in one partition.
    Table,
    /// By the primary key columns.
    PrimaryKey,
    /// By these columns (names compared without regard to case).
    Columns(Vec<String>),
}

/// One `canal.mq.partitionHash` item.
#[derive(Clone, Debug)]
pub struct PartitionHashRule {
    pattern: NamePattern,
    pub by: HashBy,
}

impl PartitionHashRule {
    /// Whether the rule applies to `schema.table`.
    pub fn matches(&self, table: &str) -> bool {
        self.pattern.matches(table)
    }
}

/// Parses `canal.mq.partitionHash`.
pub fn partition_hash_rules(list: &str) -> Result<Vec<PartitionHashRule>, ConfigError> {
    const FIELD: &str = "sink.kafka.partitionHash";
    items(list)
        .map(|item| {
            let (pattern, by) = match item.rsplit_once(':') {
                Some((pattern, columns)) if !pattern.is_empty() => {
                    let by = if columns.trim().eq_ignore_ascii_case("$pk$") {
                        HashBy::PrimaryKey
                    } else {
                        let columns: Vec<String> = (columns.split('^').map(str::trim))
                            .filter(|c| !c.is_empty())
                            .map(String::from)
                            .collect();
                        if columns.is_empty() {
                            return Err(ConfigError::Invalid {
                                field: FIELD.into(),
                                message: format!("`{item}`: no columns after `:`; write `col1^col2` or `$pk$`"),
                            });
                        }
                        HashBy::Columns(columns)
                    };
                    (pattern, by)
                }
                _ => (item, HashBy::Table),
            };
            Ok(PartitionHashRule {
                pattern: NamePattern::parse(FIELD, pattern)?,
                by,
            })
        })
        .collect()
}

/// One `canal.mq.dynamicTopicPartitionNum` item: the partition count of the topics it matches.
#[derive(Clone, Debug)]
pub struct TopicPartitionsRule {
    pattern: NamePattern,
    pub partitions: u32,
}

impl TopicPartitionsRule {
    pub fn matches(&self, topic: &str) -> bool {
        self.pattern.matches(topic)
    }
}

/// Parses `canal.mq.dynamicTopicPartitionNum`.
pub fn topic_partitions_rules(list: &str) -> Result<Vec<TopicPartitionsRule>, ConfigError> {
    const FIELD: &str = "sink.kafka.dynamicTopicPartitionNum";
    items(list)
        .map(|item| {
            let refuse = || ConfigError::Invalid {
                field: FIELD.into(),
                message: format!("`{item}`: each item is `topicRegex:partitionCount` with a count of at least 1"),
            };
            let (pattern, count) = item.rsplit_once(':').ok_or_else(refuse)?;
            let partitions: u32 = count.trim().parse().map_err(|_| refuse())?;
            if partitions == 0 || pattern.trim().is_empty() {
                return Err(refuse());
            }
            Ok(TopicPartitionsRule {
                pattern: NamePattern::parse(FIELD, pattern)?,
                partitions,
            })
        })
        .collect()
}

/// Checks a Kafka sink's settings: the names and regexes, the partition counts, and producer settings that the
/// sink owns.
pub fn validate_kafka(sink: &KafkaSink) -> Result<(), ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        field: field.into(),
        message,
    };
    if sink.bootstrap_servers.trim().is_empty() {
        return Err(invalid(
            "sink.kafka.bootstrapServers",
            "must name at least one broker, host:port".into(),
        ));
    }
    if sink.topic.trim().is_empty() {
        return Err(invalid("sink.kafka.topic", "must not be empty".into()));
    }
    dynamic_topic_rules(&sink.dynamic_topic)?;
    partition_hash_rules(&sink.partition_hash)?;
    topic_partitions_rules(&sink.dynamic_topic_partition_num)?;
    match sink.partitions_num {
        Some(0) => return Err(invalid("sink.kafka.partitionsNum", "must be at least 1".into())),
        None if !sink.partition_hash.trim().is_empty() => {
            return Err(invalid(
                "sink.kafka.partitionsNum",
                "must be set when partitionHash is: the rows are hashed over that many partitions".into(),
            ));
        }
        _ => {}
    }
    if sink.positions_topic.trim().is_empty() {
        return Err(invalid("sink.kafka.positionsTopic", "must not be empty".into()));
    }
    if let Some(owned) = sink
        .producer
        .keys()
        .find(|k| KAFKA_OWNED_SETTINGS.contains(&k.as_str()))
    {
        return Err(invalid(
            &format!("sink.kafka.producer.{owned}"),
            "is set by the sink itself (see bootstrapServers, delivery and security)".into(),
        ));
    }
    let security = &sink.security;
    if security.protocol.uses_sasl() && (security.sasl_username.is_none() || security.sasl_password_from.is_none()) {
        return Err(invalid(
            "sink.kafka.security",
            "SASL needs saslUsername and saslPasswordFrom (an environment variable or a file)".into(),
        ));
    }
    Ok(())
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over the UTF-16 code units, wrapping, as canal hashes
/// rows to partitions.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// canal's partition for a hash: `Math.abs(hash) % partitions`, made positive once more (`Math.abs` of
/// `Integer.MIN_VALUE` is negative).
pub fn java_partition(hash: i32, partitions: u32) -> u32 {
    let partitions = i32::try_from(partitions.max(1)).unwrap_or(i32::MAX);
    (hash.wrapping_abs() % partitions).unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hashes_as_the_jvm_computes_them() {
        // Values from the JVM: "".hashCode(), "a".hashCode(), "test".hashCode(), "中文".hashCode(), "😀".hashCode()
        // and a string whose hash is Integer.MIN_VALUE ("polygenelubricants").
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("test"), 3556498);
        assert_eq!(java_string_hash("中文"), 646394);
        assert_eq!(java_string_hash("😀"), 1772899);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_partition(i32::MIN, 3), 2);
        assert_eq!(java_partition(-7, 3), 1);
        assert_eq!(java_partition(7, 1), 0);
    }

    #[test]
    fn dynamic_topics_read_as_canal_reads_them() {
        let rules = dynamic_topic_rules("shop\\.orders.*;audit:ops\\..*,test, metrics:stat").unwrap();
        assert_eq!(rules.len(), 4);
        assert!(rules[0].matches("shop.orders_2024") && !rules[0].matches("shop"));
        assert_eq!(rules[1].topic.as_deref(), Some("audit"));
        assert!(rules[1].matches("OPS.users"));
        assert!(rules[2].matches("TEST") && rules[2].matches("test"));
        assert!(rules[3].matches("stat") && !rules[3].matches("stat.t"));
        assert!(dynamic_topic_rules("shop\\.(orders").is_err());
        assert!(dynamic_topic_rules(":x").is_err());
    }

    #[test]
    fn partition_hash_items_choose_table_key_or_columns() {
        let rules = partition_hash_rules("shop.orders:id^shop_id, shop.items:$pk$, logs\\..*").unwrap();
        assert_eq!(rules[0].by, HashBy::Columns(vec!["id".into(), "shop_id".into()]));
        assert!(rules[0].matches("SHOP.ORDERS"));
        assert_eq!(rules[1].by, HashBy::PrimaryKey);
        assert_eq!(rules[2].by, HashBy::Table);
        assert!(rules[2].matches("logs.2024"));
        assert!(partition_hash_rules("shop.orders:").is_err());
    }

    #[test]
    fn invalid_sink_settings_name_the_key() {
        let sink = |extra: &str| -> KafkaSink {
            serde_yaml::from_str(&format!("bootstrapServers: k:9092\ntopic: example\n{extra}")).unwrap()
        };
        assert_eq!(validate_kafka(&sink("")), Ok(()));
        let cases = [
            ("dynamicTopic: 'a(b'", "sink.kafka.dynamicTopic"),
            ("partitionHash: 'shop.t:id'", "sink.kafka.partitionsNum"),
            ("partitionsNum: 0", "sink.kafka.partitionsNum"),
            (
                "dynamicTopicPartitionNum: 'shop:x'",
                "sink.kafka.dynamicTopicPartitionNum",
            ),
            (
                "producer: {transactional.id: x}",
                "sink.kafka.producer.transactional.id",
            ),
            ("security: {protocol: SASL_SSL}", "sink.kafka.security"),
        ];
        for (extra, field) in cases {
            let error = validate_kafka(&sink(extra)).unwrap_err().to_string();
            assert!(error.contains(field), "{extra}: {error}");
        }
        assert!(serde_yaml::from_str::<KafkaSink>("bootstrapServers: k\ntopic: t\nflat: true\n").is_err());
    }

    #[test]
    fn topic_partition_counts_need_a_count() {
        let rules = topic_partitions_rules("shop.*:3,audit:1").unwrap();
        assert!(rules[0].matches("shop_orders") && rules[0].partitions == 3);
        for bad in ["shop", "shop:0", "shop:x", ":2"] {
            assert!(topic_partitions_rules(bad).is_err(), "{bad}");
        }
    }
}
