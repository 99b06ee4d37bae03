//! The instance's Prometheus metrics, served on the metrics port at `/metrics` by [`health`](crate::observe::health).
//!
//! Two sets of names:
//! - canal's (`canal_instance_*`, canal-compat.md §7), with canal's labels, so that canal's Grafana dashboard works
//!   unchanged. canal exports its counters under the bare name, without `_total`; prometheus-client would add the
//!   suffix to a counter, so those are written as `unknown`-typed samples, which Prometheus stores under the name as
//!   written and `rate()` treats like any other series.
//! - canal-rs's own (`canal_rs_*`), in Prometheus style: base units, `_total` on counters.
//!
//! Hot paths only bump atomics in [`Counters`]; everything else (store fill, delays, the HA role) is read when
//! Prometheus scrapes, by the [`InstanceCollector`](super::collector::InstanceCollector), from a [`Snapshot`] of the
//! running instance.
//!
//! Labels are bounded: the destination (one per process), client ids (16-bit, and only those that subscribed),
//! packet types, error codes and error kinds (fixed sets). Addresses are free text and stay out of labels; they are in
//! the logs and the CanalInstance status.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use canal_api::BatchMode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::ha::ZooKeeperSession;
use crate::protocol::packet::PacketType;
use crate::store::StoreStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub destination: String,
    pub client_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

/// canal's request latency buckets, in milliseconds.
const LATENCY_BUCKETS_MS: [f64; 4] = [2.5, 10.0, 25.0, 100.0];

/// Every metric the instance exports, as handles that the parts updating them clone.
pub struct Metrics {
    pub client_connected: Family<ClientLabels, Gauge>,
    pub client_refused: Family<ClientLabels, Counter>,
    pub client_evictions: Family<ClientLabels, Counter>,
    pub counters: std::sync::Arc<Counters>,
}

impl Metrics {
    pub fn new(registry: &mut Registry, destination: &str) -> Self {
        // canal's `canal_instance_client_request_latency`, labelled with the destination like the rest.
        let request_latency =
            Family::<DestinationLabels, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS_MS));
        let latency = request_latency
            .get_or_create(&DestinationLabels {
                destination: destination.to_string(),
            })
            .clone();
        registry.register(
            "canal_instance_client_request_latency",
            "Milliseconds from a client request's arrival to its reply",
            request_latency,
        );
        let metrics = Self {
            client_connected: Family::default(),
            client_refused: Family::default(),
            client_evictions: Family::default(),
            counters: std::sync::Arc::new(Counters::new(latency)),
        };
        let sub = registry.sub_registry_with_prefix("canal_rs");
        sub.register(
            "client_connected",
            "1 while a connection consumes the client id",
            metrics.client_connected.clone(),
        );
        sub.register(
            "client_refused",
            "Requests refused because another connection consumes the client id",
            metrics.client_refused.clone(),
        );
        sub.register(
            "client_evictions",
            "Connections closed because client HA made another consumer of the client id active",
            metrics.client_evictions.clone(),
        );
        metrics
    }
}

/// What the collector needs to know about the running instance, read at every scrape.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The store of the current term; `None` while this instance is not the active one.
    pub store: Option<StoreStats>,
    pub batch_mode: BatchMode,
    /// Source time (ms since the epoch) of the newest event the reader has seen; heartbeats count as their arrival.
    pub reader_event_time_ms: Option<i64>,
    /// Client ids subscribed to the destination.
    pub subscriptions: usize,
    pub role: Role,
    /// The ZooKeeper session, in ZooKeeper mode.
    pub zookeeper: Option<ZooKeeperSession>,
}

/// This instance's part in the destination's active/standby pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    Active,
    Standby,
    /// Not connected to ZooKeeper, so neither.
    #[default]
    Unavailable,
}

impl Role {
    pub(super) const ALL: [Role; 3] = [Role::Active, Role::Standby, Role::Unavailable];

    pub(super) fn label(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Unavailable => "unavailable",
        }
    }
}

/// Counts kept by the parts that do the work: the binlog reader, the canal server and the election.
#[derive(Debug)]
pub struct Counters {
    pub(super) received_binlog_bytes: AtomicU64,
    pub(super) activations: AtomicU64,
    /// Reader failures by [`Error::kind`](crate::error::Error::kind).
    pub(super) source_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Replies by the request's packet type, indexed by its protocol number.
    pub(super) client_packets: [AtomicU64; PACKET_TYPES],
    pub(super) client_bytes: AtomicU64,
    pub(super) client_empty_batches: AtomicU64,
    pub(super) client_errors: Mutex<BTreeMap<i32, u64>>,
    /// Milliseconds per client request.
    pub(super) request_latency: Histogram,
}

/// How many packet types CanalProtocol.proto numbers (0 to CLIENTROLLBACK).
const PACKET_TYPES: usize = PacketType::Clientrollback as usize + 1;

/// How a client request ended, for the client metrics.
pub enum RequestOutcome {
    /// A reply of this many bytes was written (0 for requests canal answers with nothing).
    Replied(usize),
    /// A GET that found nothing to hand out (batch id -1), answered with this many bytes.
    EmptyBatch(usize),
    /// Refused with this error code (400, 401 or 402).
    Refused(i32),
}

impl Counters {
    fn new(request_latency: Histogram) -> Self {
        Self {
            received_binlog_bytes: AtomicU64::new(0),
            activations: AtomicU64::new(0),
            source_errors: Mutex::default(),
            client_packets: Default::default(),
            client_bytes: AtomicU64::new(0),
            client_empty_batches: AtomicU64::new(0),
            client_errors: Mutex::default(),
            request_latency,
        }
    }

    pub fn binlog_bytes(&self, bytes: u64) {
        self.received_binlog_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// This instance became the active one (every term, including the first).
    pub fn activated(&self) {
        self.activations.fetch_add(1, Ordering::Relaxed);
    }

    /// The binlog reader stopped on an error of `kind` and will retry.
    pub fn source_error(&self, kind: &'static str) {
        *lock(&self.source_errors).entry(kind).or_default() += 1;
    }

    /// One client request of protocol type `packet_type` was handled in `elapsed`.
    pub fn request(&self, packet_type: i32, outcome: RequestOutcome, elapsed: std::time::Duration) {
        self.request_latency.observe(elapsed.as_secs_f64() * 1000.0);
        match outcome {
            RequestOutcome::Replied(bytes) => {
                let index = usize::try_from(packet_type).ok().filter(|i| *i < PACKET_TYPES);
                if let Some(index) = index {
                    self.client_packets[index].fetch_add(1, Ordering::Relaxed);
                }
                self.client_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            RequestOutcome::EmptyBatch(bytes) => {
                self.client_empty_batches.fetch_add(1, Ordering::Relaxed);
                self.client_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            RequestOutcome::Refused(code) => *lock(&self.client_errors).entry(code).or_default() += 1,
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters are plain numbers: a panic elsewhere cannot leave them inconsistent.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    text
}
