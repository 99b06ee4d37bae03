//! Writes the instance's metrics when Prometheus scrapes: counters from [`Counters`] and everything else from a
//! [`Snapshot`] of the running instance, under canal's names and labels and canal-rs's own.

use std::fmt::{self, Debug};
use std::sync::atomic::{AtomicU64, Ordering};

use canal_api::BatchMode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::metrics::{Counters, Role, Snapshot, lock};
use crate::error::Error;
use crate::ha::ZooKeeperSession;
use crate::protocol::packet::PacketType;
use crate::store::StoreStats;

/// Writes canal's and canal-rs's per-instance metrics at scrape time.
pub struct InstanceCollector {
    destination: String,
    counters: std::sync::Arc<Counters>,
    snapshot: Box<dyn Fn() -> Snapshot + Send + Sync>,
}

impl Debug for InstanceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceCollector")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl InstanceCollector {
    pub fn new(
        destination: &str,
        counters: std::sync::Arc<Counters>,
        snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
    ) -> Self {
        Self {
            destination: destination.to_string(),
            counters,
            snapshot: Box::new(snapshot),
        }
    }
}

/// One metric with its samples: `(extra labels, value)`, each also labelled with the destination.
struct Samples<'a> {
    name: &'a str,
    help: &'a str,
    kind: MetricType,
    samples: Vec<(Vec<(&'a str, String)>, f64)>,
}

impl<'a> Samples<'a> {
    fn new(name: &'a str, help: &'a str, kind: MetricType) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn one(name: &'a str, help: &'a str, kind: MetricType, value: f64) -> Self {
        Self::new(name, help, kind).with(Vec::new(), value)
    }

    fn with(mut self, labels: Vec<(&'a str, String)>, value: f64) -> Self {
        self.samples.push((labels, value));
        self
    }

    /// One sample per `(label value, value)`, all under the label `label`.
    fn by<V: ToString>(mut self, label: &'a str, values: impl IntoIterator<Item = (V, f64)>) -> Self {
        for (v, value) in values {
            self = self.with(vec![(label, v.to_string())], value);
        }
        self
    }
}

const UNTYPED: MetricType = MetricType::Unknown;
const GAUGE: MetricType = MetricType::Gauge;
const COUNTER: MetricType = MetricType::Counter;

fn since_ms(now_ms: i64, then_ms: i64) -> f64 {
    if then_ms <= 0 {
        0.0
    } else {
        (now_ms - then_ms).max(0) as f64
    }
}

impl InstanceCollector {
    /// Every metric of `snapshot` at `now_ms`.
    fn families(&self, snapshot: &Snapshot, now_ms: i64) -> Vec<Samples<'static>> {
        let mut out = canal_families(&self.counters, snapshot);
        if let Some(store) = &snapshot.store {
            out.extend(store_families(store, snapshot, now_ms));
        }
        out.extend(ha_families(&self.counters, snapshot));
        out.extend(source_families(&self.counters));
        out
    }
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// canal's instance and client metrics.
fn canal_families(c: &Counters, snapshot: &Snapshot) -> Vec<Samples<'static>> {
    let mut out = vec![
        Samples::one("canal_instance", "Instance info", GAUGE, 1.0).with_labels(&[("mode", "spring")]),
        Samples::one(
            "canal_instance_subscriptions",
            "Client ids subscribed to the destination",
            GAUGE,
            snapshot.subscriptions as f64,
        ),
        Samples::one("canal_instance_parser_mode", "Parser mode info", GAUGE, 1.0)
            .with_labels(&[("parallel", "false")]),
        Samples::one(
            "canal_instance_received_binlog_bytes",
            "Binlog bytes received from the source",
            UNTYPED,
            load(&c.received_binlog_bytes),
        )
        .with_labels(&[("parser", "0")]),
    ];
    out.push(
        Samples::new(
            "canal_instance_client_packets",
            "Replies to clients by request packet type",
            UNTYPED,
        )
        .by(
            "packetType",
            c.client_packets.iter().enumerate().filter_map(|(number, count)| {
                let count = count.load(Ordering::Relaxed);
                let name = PacketType::try_from(i32::try_from(number).ok()?).ok()?;
                (count > 0).then(|| (name.as_str_name(), count as f64))
            }),
        ),
    );
    out.push(Samples::one(
        "canal_instance_client_bytes",
        "Bytes sent to clients",
        UNTYPED,
        load(&c.client_bytes),
    ));
    out.push(Samples::one(
        "canal_instance_client_empty_batches",
        "GETs that found nothing to hand out",
        UNTYPED,
        load(&c.client_empty_batches),
    ));
    out.push(
        Samples::new(
            "canal_instance_client_request_error",
            "Client requests refused, by error code",
            UNTYPED,
        )
        .by(
            "errorCode",
            lock(&c.client_errors).iter().map(|(code, n)| (code, *n as f64)),
        ),
    );

    out
}

/// The store of the current term, under canal's names and canal-rs's.
fn store_families(store: &StoreStats, snapshot: &Snapshot, now_ms: i64) -> Vec<Samples<'static>> {
    let mut out = Vec::new();
    let batch_mode = match snapshot.batch_mode {
        BatchMode::Itemsize => "ITEMSIZE",
        BatchMode::Memsize => "MEMSIZE",
    };
    let traffic_delay = snapshot.reader_event_time_ms.map_or(0.0, |t| since_ms(now_ms, t));
    out.extend([
        Samples::one("canal_instance_store", "Store info", GAUGE, 1.0).with_labels_owned(vec![
            ("batchMode", batch_mode.to_string()),
            ("size", store.max_entries.to_string()),
        ]),
        Samples::one(
            "canal_instance_traffic_delay",
            "Milliseconds between now and the newest event the reader has seen",
            GAUGE,
            traffic_delay,
        ),
        Samples::one(
            "canal_instance_transactions",
            "Transaction ends put into the store",
            UNTYPED,
            store.transactions as f64,
        ),
        Samples::one(
            "canal_instance_sink_blocking_time",
            "Milliseconds the reader waited for room in the store",
            UNTYPED,
            store.blocked.as_millis() as f64,
        ),
        Samples::one(
            "canal_instance_store_produce_seq",
            "Entries put",
            UNTYPED,
            store.put_total as f64,
        ),
        Samples::one(
            "canal_instance_store_consume_seq",
            "Entries acknowledged",
            UNTYPED,
            store.acked_total as f64,
        ),
        Samples::one("canal_instance_put_rows", "Rows put", UNTYPED, store.put_rows as f64),
        Samples::one(
            "canal_instance_get_rows",
            "Rows handed out",
            UNTYPED,
            store.got_rows as f64,
        ),
        Samples::one(
            "canal_instance_ack_rows",
            "Rows acknowledged",
            UNTYPED,
            store.acked_rows as f64,
        ),
        Samples::one(
            "canal_instance_put_delay",
            "Milliseconds since the event time of the newest entry put",
            GAUGE,
            since_ms(now_ms, store.put_time_ms),
        ),
        Samples::one(
            "canal_instance_get_delay",
            "Milliseconds since the event time of the newest entry handed out",
            GAUGE,
            since_ms(now_ms, store.got_time_ms),
        ),
        Samples::one(
            "canal_instance_ack_delay",
            "Milliseconds since the event time of the newest entry acknowledged",
            GAUGE,
            since_ms(now_ms, store.acked_time_ms),
        ),
    ]);
    if snapshot.batch_mode == BatchMode::Memsize {
        out.extend([
            Samples::one(
                "canal_instance_store_produce_mem",
                "Binlog bytes put",
                UNTYPED,
                store.put_bytes as f64,
            ),
            Samples::one(
                "canal_instance_store_consume_mem",
                "Binlog bytes acknowledged",
                UNTYPED,
                store.acked_bytes as f64,
            ),
        ]);
    }
    out.extend([
        Samples::one(
            "canal_rs_dump_lag_seconds",
            "Seconds between now and the source time of the newest event read (heartbeats count as now)",
            GAUGE,
            traffic_delay / 1000.0,
        ),
        Samples::one(
            "canal_rs_store_entries",
            "Entries in the store",
            GAUGE,
            store.entries as f64,
        ),
        Samples::one(
            "canal_rs_store_bytes",
            "Bytes the entries in the store count against its limit (each the larger of its binlog event and its \
             encoding)",
            GAUGE,
            store.bytes as f64,
        ),
        Samples::one(
            "canal_rs_store_capacity_entries",
            "Entries the store holds before the reader waits (store.bufferSize)",
            GAUGE,
            store.max_entries as f64,
        ),
        Samples::one(
            "canal_rs_store_capacity_bytes",
            "Bytes the store holds before the reader waits (MEMSIZE: bufferSize x memUnit; 0 otherwise)",
            GAUGE,
            store.max_bytes as f64,
        ),
        Samples::one(
            "canal_rs_store_blocked_seconds",
            "Seconds the reader waited for room in the store, this term",
            COUNTER,
            store.blocked.as_secs_f64(),
        ),
        Samples::one(
            "canal_rs_client_unacked_entries",
            "Entries put but not yet acknowledged by the clients",
            GAUGE,
            store.entries as f64,
        ),
        Samples::one(
            "canal_rs_client_lag_seconds",
            "Source-time distance from the oldest unacknowledged entry to the newest entry put; 0 when clients \
             have acknowledged everything",
            GAUGE,
            if store.entries == 0 || store.oldest_time_ms <= 0 {
                0.0
            } else {
                (store.put_time_ms - store.oldest_time_ms).max(0) as f64 / 1000.0
            },
        ),
    ]);
    out
}

/// The HA role, activations and the ZooKeeper session.
fn ha_families(c: &Counters, snapshot: &Snapshot) -> Vec<Samples<'static>> {
    let mut out = Vec::new();
    out.push(
        Samples::new(
            "canal_rs_ha_role",
            "1 for this instance's current role in the destination's active/standby pair",
            GAUGE,
        )
        .by(
            "role",
            Role::ALL.map(|r| (r.label(), f64::from(u8::from(r == snapshot.role)))),
        ),
    );
    out.push(Samples::one(
        "canal_rs_ha_activations",
        "Times this instance became the active one",
        COUNTER,
        load(&c.activations),
    ));
    if let Some(session) = snapshot.zookeeper {
        out.push(
            Samples::new(
                "canal_rs_zookeeper_session",
                "1 for the current state of the ZooKeeper session",
                GAUGE,
            )
            .by(
                "state",
                ZooKeeperSession::ALL.map(|s| (s.label(), f64::from(u8::from(s == session)))),
            ),
        );
    }
    out
}

/// What stopped the binlog reader.
fn source_families(c: &Counters) -> Vec<Samples<'static>> {
    let errors = lock(&c.source_errors);
    vec![
        Samples::one(
            "canal_rs_decode_errors",
            "Binlog events that could not be decoded (the reader stops there and retries)",
            COUNTER,
            // The reader's decode failures are its source errors of that kind.
            errors.get(Error::DECODE_KIND).copied().unwrap_or(0) as f64,
        ),
        Samples::new(
            "canal_rs_source_errors",
            "Times the binlog reader stopped on an error and retried, by kind",
            COUNTER,
        )
        .by("kind", errors.iter().map(|(kind, n)| (kind, *n as f64))),
    ]
}

impl Samples<'static> {
    fn with_labels(self, labels: &[(&'static str, &'static str)]) -> Self {
        self.with_labels_owned(labels.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    fn with_labels_owned(mut self, labels: Vec<(&'static str, String)>) -> Self {
        for sample in &mut self.samples {
            sample.0.extend(labels.iter().cloned());
        }
        self
    }
}

impl Collector for InstanceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = (self.snapshot)();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        for family in self.families(&snapshot, now_ms) {
            if family.samples.is_empty() {
                continue;
            }
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                let mut set: Vec<(&str, &str)> = vec![("destination", self.destination.as_str())];
                set.extend(labels.iter().map(|(k, v)| (*k, v.as_str())));
                let mut sample = metric.encode_family(&set)?;
                // Whole numbers (most of them: counts, bytes, milliseconds) are written without a fraction.
                let whole = value.fract() == 0.0 && value.abs() < 9e15;
                match (matches!(family.kind, MetricType::Counter), whole) {
                    (true, true) => sample.encode_counter::<NoLabelSet, _, f64>(&(*value as u64), None)?,
                    (true, false) => sample.encode_counter::<NoLabelSet, _, f64>(value, None)?,
                    (false, true) => sample.encode_gauge(&(*value as i64))?,
                    (false, false) => sample.encode_gauge(value)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::{Metrics, RequestOutcome, encode};
    use prometheus_client::registry::Registry;
    use std::sync::Arc;
    use std::time::Duration;

    fn exposition(snapshot: Snapshot, counters: impl FnOnce(&Counters)) -> String {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry, "example");
        counters(&metrics.counters);
        registry.register_collector(Box::new(InstanceCollector::new(
            "example",
            Arc::clone(&metrics.counters),
            move || snapshot.clone(),
        )));
        encode(&registry)
    }

    fn has(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }

    #[test]
    fn canal_names_have_no_total_suffix_and_canal_rs_counters_do() {
        let now = jiff::Timestamp::now().as_millisecond();
        let store = StoreStats {
            entries: 2,
            bytes: 300,
            put_total: 12,
            acked_total: 10,
            put_rows: 7,
            got_rows: 6,
            acked_rows: 5,
            transactions: 3,
            put_time_ms: now - 2_000,
            oldest_time_ms: now - 5_000,
            blocked: Duration::from_millis(1500),
            max_entries: 16384,
            ..StoreStats::default()
        };
        let snapshot = Snapshot {
            store: Some(store),
            reader_event_time_ms: Some(now - 1_000),
            subscriptions: 1,
            role: Role::Active,
            zookeeper: Some(ZooKeeperSession::Connected),
            ..Snapshot::default()
        };
        let text = exposition(snapshot, |c| {
            c.binlog_bytes(4096);
            c.activated();
            c.source_error("decode");
            c.source_error("connect");
            c.request(6, RequestOutcome::Replied(100), Duration::from_millis(3));
            c.request(6, RequestOutcome::EmptyBatch(20), Duration::from_millis(1));
            c.request(8, RequestOutcome::Replied(0), Duration::from_micros(50));
            c.request(6, RequestOutcome::Refused(400), Duration::from_micros(50));
        });
        let d = "destination=\"example\"";
        for line in [
            format!("canal_instance{{{d},mode=\"spring\"}} 1"),
            format!("canal_instance_subscriptions{{{d}}} 1"),
            format!("canal_instance_transactions{{{d}}} 3"),
            format!("canal_instance_received_binlog_bytes{{{d},parser=\"0\"}} 4096"),
            format!("canal_instance_store{{{d},batchMode=\"MEMSIZE\",size=\"16384\"}} 1"),
            format!("canal_instance_store_produce_seq{{{d}}} 12"),
            format!("canal_instance_store_consume_seq{{{d}}} 10"),
            format!("canal_instance_put_rows{{{d}}} 7"),
            format!("canal_instance_get_rows{{{d}}} 6"),
            format!("canal_instance_ack_rows{{{d}}} 5"),
            format!("canal_instance_sink_blocking_time{{{d}}} 1500"),
            format!("canal_instance_client_packets{{{d},packetType=\"GET\"}} 1"),
            format!("canal_instance_client_packets{{{d},packetType=\"CLIENTACK\"}} 1"),
            format!("canal_instance_client_bytes{{{d}}} 120"),
            format!("canal_instance_client_empty_batches{{{d}}} 1"),
            format!("canal_instance_client_request_error{{{d},errorCode=\"400\"}} 1"),
            format!("canal_instance_client_request_latency_count{{{d}}} 4"),
            format!("canal_instance_client_request_latency_bucket{{le=\"2.5\",{d}}} 3"),
            format!("canal_rs_ha_role{{{d},role=\"active\"}} 1"),
            format!("canal_rs_ha_role{{{d},role=\"standby\"}} 0"),
            format!("canal_rs_ha_activations_total{{{d}}} 1"),
            format!("canal_rs_zookeeper_session{{{d},state=\"connected\"}} 1"),
            format!("canal_rs_decode_errors_total{{{d}}} 1"),
            format!("canal_rs_source_errors_total{{{d},kind=\"connect\"}} 1"),
            format!("canal_rs_store_entries{{{d}}} 2"),
            format!("canal_rs_store_blocked_seconds_total{{{d}}} 1.5"),
            format!("canal_rs_client_lag_seconds{{{d}}} 3"),
        ] {
            has(&text, &line);
        }
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("canal_instance") && l.contains("_total")),
            "canal's names carry no _total:\n{text}"
        );
        assert!(text.contains("# TYPE canal_instance_transactions unknown"), "{text}");
        // Delays are measured from now, so only their range is fixed.
        let traffic_delay: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("canal_instance_traffic_delay{{{d}}} ")))
            .and_then(|v| v.parse().ok())
            .expect("traffic delay");
        assert!((1_000.0..60_000.0).contains(&traffic_delay), "{traffic_delay}");
    }

    #[test]
    fn a_standby_shows_its_role_but_no_store() {
        let text = exposition(
            Snapshot {
                role: Role::Standby,
                zookeeper: Some(ZooKeeperSession::Connected),
                ..Snapshot::default()
            },
            |_| {},
        );
        has(&text, "canal_rs_ha_role{destination=\"example\",role=\"standby\"} 1");
        assert!(!text.contains("canal_instance_store_produce_seq"), "{text}");
        assert!(!text.contains("canal_rs_store_entries"), "{text}");
    }
}
