//! The dump loop of one term: binlog events are read ahead, converted into entries, and put into the store, with
//! reconnection and backoff after failures, `source.onMissingBinlog` applied to a purged start, and progress logged
//! and published for status reporting. The schema history's new versions are stored before any entry that follows
//! the DDL which made them.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use canal_api::MissingBinlogPolicy;
use tokio_util::sync::CancellationToken;

use crate::binlog::position::ResumePoint;
use crate::binlog::readahead::{Next, ReadAhead};
use crate::binlog::source::{BinlogSource, HEARTBEAT_PERIOD};
use crate::config::Settings;
use crate::convert::filter::TableFilter;
use crate::convert::{ConvertOptions, Converter};
use crate::error::{Error, Result};
use crate::ha::Lease;
use crate::meta::Meta;
use crate::observe::metrics::Counters;
use crate::observe::report::{ReaderPosition, SharedPosition};
use crate::schema::SchemaTracker;
use crate::store::Store;

/// How often the reader logs where it is while rows flow, and while nothing happens.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
const IDLE_PROGRESS_INTERVAL: Duration = Duration::from_secs(300);
/// How often the position is made available to status reporting.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts to the source.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) fn convert_options(settings: &Settings) -> ConvertOptions {
    let config = &settings.config;
    ConvertOptions {
        ddl: config.filter.ddl,
        dcl: config.filter.dcl,
        dml: config.filter.dml,
        rows: config.filter.rows,
        transaction_entries: config.filter.transaction_entries,
        fields: settings.fields.clone(),
        time_zone: settings.time_zone.clone(),
    }
}

/// Where the dump starts: the earliest client cursor, else the configured start, else the end of the binlog.
pub(super) async fn start_position(
    settings: &Settings,
    meta: &Meta,
    source: &BinlogSource,
    counters: &Counters,
    shutdown: &CancellationToken,
) -> Option<ResumePoint> {
    if let Some(resume) = meta.min_resume() {
        tracing::info!(position = %resume, "resuming from the earliest acknowledged cursor");
        return Some(resume);
    }
    let start = settings.config.start.as_ref();
    if let Some(start) = start.filter(|s| !s.journal_name.is_empty()) {
        return Some(ResumePoint::at(&start.journal_name, start.position));
    }
    if let Some(gtid) = start.and_then(|s| s.gtid.as_ref()) {
        return Some(ResumePoint::after_gtid(gtid));
    }
    let timestamp = start.and_then(|s| s.timestamp);
    let mut backoff = Backoff::new(counters);
    loop {
        let found = match timestamp {
            Some(ms) => source.position_at(ms).await,
            None => source.current_end().await,
        };
        match found {
            Ok(point) => {
                if let Some(ms) = timestamp {
                    tracing::info!(timestamp_ms = ms, position = %point, "found the start time in the binlog");
                }
                return Some(point);
            }
            Err(e) => {
                if !backoff.wait_after(&e, shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// Reconnection delays: 1 s doubling to 30 s, reset after a successful dump start.
struct Backoff<'a> {
    failures: u32,
    counters: &'a Counters,
}

impl<'a> Backoff<'a> {
    fn new(counters: &'a Counters) -> Self {
        Self { failures: 0, counters }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    /// Logs and counts `error`, and sleeps; false when shutdown was requested meanwhile.
    async fn wait_after(&mut self, error: &Error, shutdown: &CancellationToken) -> bool {
        let delay = Duration::from_secs(1 << self.failures.min(5)).min(MAX_BACKOFF);
        self.failures += 1;
        self.counters.source_error(error.kind());
        if error.needs_operator() {
            tracing::error!(error = %error, retry_in = ?delay, "binlog source unavailable; fix the cause, retrying");
        } else {
            tracing::warn!(error = %error, retry_in = ?delay, "binlog source unavailable, retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// What the binlog reader works with during one term.
pub(super) struct Reader<'a> {
    pub(super) source: &'a BinlogSource,
    pub(super) store: &'a Arc<Store>,
    /// Where the term's dump started (before anything was put into the store).
    pub(super) start: &'a ResumePoint,
    pub(super) filter: &'a Arc<RwLock<TableFilter>>,
    pub(super) options: &'a ConvertOptions,
    /// In ZooKeeper mode, the proof of being active.
    pub(super) lease: Option<&'a Lease>,
    pub(super) position: &'a SharedPosition,
    pub(super) meta: &'a Meta,
    /// Table descriptions and the schema history, carried from one dump connection to the next.
    pub(super) schema: SchemaTracker,
    pub(super) counters: &'a Counters,
}

/// MySQL's error for a binlog dump the server cannot serve (MariaDB: "Could not find GTID state requested").
const ER_MASTER_FATAL_READING_BINLOG: u16 = 1236;

/// Applies `source.onMissingBinlog` (Earliest or Latest) after `missing`: the store continues from there.
async fn skip_missing(
    policy: MissingBinlogPolicy,
    source: &BinlogSource,
    store: &Store,
    missing: &Error,
) -> Result<()> {
    let point = match policy {
        MissingBinlogPolicy::Latest => source.current_end().await?,
        _ => source.earliest().await?,
    };
    tracing::error!(
        error = %missing,
        policy = ?policy,
        continue_at = %point,
        "the binlog to resume from is gone; skipping ahead as source.onMissingBinlog says"
    );
    store.start_at(point);
    Ok(())
}

/// Dumps the binlog into the store until shutdown, reconnecting after every failure from the store's tail.
pub(super) async fn read_binlog(reader: Reader<'_>, shutdown: &CancellationToken) {
    let Reader {
        source,
        store,
        start,
        filter,
        options,
        lease,
        position,
        meta,
        mut schema,
        counters,
    } = reader;
    let mut backoff = Backoff::new(counters);
    let policy = source.missing_binlog_policy();
    // A lapsed lease ends the reader for good: the election decides whether a new term starts.
    while !shutdown.is_cancelled() && lease.is_none_or(Lease::holds) {
        let resume = store.tail_resume().unwrap_or_else(|| start.clone());
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = source.dump(&resume) => r,
        };
        let (stream, facts) = match result {
            Ok(ok) => ok,
            Err(e @ (Error::BinlogPurged { .. } | Error::SourceSwitched { .. }))
                if policy != MissingBinlogPolicy::Fail =>
            {
                if let Err(e) = skip_missing(policy, source, store, &e).await
                    && !backoff.wait_after(&e, shutdown).await
                {
                    return;
                }
                continue;
            }
            Err(e) => {
                if !backoff.wait_after(&e, shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(position = %resume, server = %facts.version, server_id = facts.server_id, "binlog dump started");
        // Resumed by GTID, the server starts at a transaction boundary of its own choosing: what was skipped by
        // file offset no longer applies (a partly acknowledged transaction comes again whole).
        let converter_start = if facts.by_gtid {
            ResumePoint {
                skip_through: None,
                ..resume.clone()
            }
        } else {
            resume.clone()
        };
        let mut converter = Converter::new(
            options.clone(),
            filter.clone(),
            &converter_start,
            std::mem::take(&mut schema),
        );
        converter.set_server_files(facts.files.clone());
        converter.set_source_server_id(facts.server_id);
        if let Some(position) = &facts.gtid_position {
            converter.seed_gtid_position(position);
        }
        let mut progress = Progress::new(store, position);
        let mut events = ReadAhead::start(stream, HEARTBEAT_PERIOD * 3);
        let outcome: Result<()> = async {
            // Versions a failed write left unsaved (a DDL read again is not recorded twice) are stored first.
            converter.schema_mut().persist(meta).await?;
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    next = events.next() => next,
                };
                let event = match next {
                    Next::Silent(silence) => {
                        return Err(Error::BinlogDump {
                            position: progress.position(&converter),
                            message: format!("no event or heartbeat for {silence:?}; reconnecting"),
                        });
                    }
                    Next::Ended => {
                        return Err(Error::BinlogDump {
                            position: progress.position(&converter),
                            message: "the server closed the binlog stream".into(),
                        });
                    }
                    Next::Failed(mysql_async::Error::Server(e))
                        if e.code == ER_MASTER_FATAL_READING_BINLOG && facts.by_gtid =>
                    {
                        // MariaDB cannot start after the cursor's GTID position: the transactions that follow it
                        // are in purged files too.
                        return Err(Error::BinlogPurged {
                            file: format!(
                                "holding the transactions after GTID {}",
                                resume.gtid.as_deref().unwrap_or("")
                            ),
                            oldest: facts.files.first().cloned().unwrap_or_else(|| "none".into()),
                        });
                    }
                    Next::Failed(e) => {
                        return Err(Error::BinlogDump {
                            position: progress.position(&converter),
                            message: e.to_string(),
                        });
                    }
                    Next::Event(event) => event,
                };
                if lease.is_some_and(|l| !l.holds()) {
                    // Fenced: another instance may take over at any moment; stop before doing anything more.
                    return Ok(());
                }
                backoff.reset();
                counters.binlog_bytes(u64::from(event.header().event_size()));
                progress.last_offset = event.header().log_pos() as u64;
                progress.event_time_ms = match event.header().timestamp() {
                    // Heartbeats (and other artificial events) carry no time: the reader is caught up.
                    0 => jiff::Timestamp::now().as_millisecond(),
                    seconds => seconds as i64 * 1000,
                };
                let entries = converter.convert(&event)?;
                // Stored before the entries that follow the DDL which changed it.
                converter.schema_mut().persist(meta).await?;
                for entry in entries {
                    progress.rows += entry.rows as u64;
                    let put = tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        put = store.put(entry) => put,
                    };
                    if put.is_err() {
                        return Ok(());
                    }
                }
                progress.tick(&converter);
            }
        }
        .await;
        events.close().await;
        schema = converter.into_schema();
        let outcome = match outcome {
            Err(e @ (Error::BinlogPurged { .. } | Error::SourceSwitched { .. }))
                if policy != MissingBinlogPolicy::Fail =>
            {
                skip_missing(policy, source, store, &e).await
            }
            other => other,
        };
        if let Err(e) = outcome
            && !backoff.wait_after(&e, shutdown).await
        {
            return;
        }
    }
}

/// Periodic progress lines for long-running dumps.
struct Progress<'a> {
    store: &'a Store,
    /// Where status reporting reads the position from.
    shared: &'a SharedPosition,
    last_publish: tokio::time::Instant,
    last_log: tokio::time::Instant,
    last_offset: u64,
    /// Source time of the last event read (ms); heartbeats count as now.
    event_time_ms: i64,
    rows: u64,
    rows_at_last_log: u64,
}

impl<'a> Progress<'a> {
    fn new(store: &'a Store, shared: &'a SharedPosition) -> Self {
        Self {
            store,
            shared,
            last_publish: tokio::time::Instant::now(),
            last_log: tokio::time::Instant::now(),
            last_offset: 0,
            event_time_ms: 0,
            rows: 0,
            rows_at_last_log: 0,
        }
    }

    fn position(&self, converter: &Converter) -> String {
        format!("{}:{}", converter.journal(), self.last_offset)
    }

    /// Publishes the position now and then, and logs progress.
    fn tick(&mut self, converter: &Converter) {
        if self.last_publish.elapsed() >= PUBLISH_INTERVAL {
            let at = ReaderPosition {
                position: self.position(converter),
                event_time_ms: self.event_time_ms,
            };
            *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
            self.last_publish = tokio::time::Instant::now();
        }
        self.maybe_log(converter);
    }

    fn maybe_log(&mut self, converter: &Converter) {
        let elapsed = self.last_log.elapsed();
        let idle = self.rows == self.rows_at_last_log;
        if elapsed < PROGRESS_INTERVAL || (idle && elapsed < IDLE_PROGRESS_INTERVAL) {
            return;
        }
        let stats = self.store.stats();
        let rate = (self.rows - self.rows_at_last_log) as f64 / elapsed.as_secs_f64();
        tracing::info!(
            position = %self.position(converter),
            rows_per_second = format!("{rate:.0}"),
            store_entries = stats.entries,
            store_bytes = stats.bytes,
            store_full = self.store.is_full(),
            unacked_batches = stats.outstanding_batches,
            "binlog progress"
        );
        self.last_log = tokio::time::Instant::now();
        self.rows_at_last_log = self.rows;
    }
}
