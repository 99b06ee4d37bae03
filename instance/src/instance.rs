//! One destination, wired together: binlog reader → converter → store → canal server, with cursors in [`MetaStore`].
//!
//! [`Destination`] is what the protocol server calls for each client request; [`run`] owns the reader loop,
//! reconnects to the source with backoff, logs progress, and shuts everything down when told to.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::convert::{ConvertOptions, Converter};
use crate::error::{Error, Result};
use crate::filter::TableFilter;
use crate::meta::{LogPosition, MetaStore, SourceAddress};
use crate::position::ResumePoint;
use crate::server::{self, ServerAuth};
use crate::source::{BinlogSource, HEARTBEAT_PERIOD};
use crate::store::{Batch, Store, StoreError, Wait};

/// How often the reader logs where it is while rows flow, and while nothing happens.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
const IDLE_PROGRESS_INTERVAL: Duration = Duration::from_secs(300);
/// Longest wait between reconnection attempts to the source.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A client request the destination refuses; the server reports it as canal error 400.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused(e.to_string())
    }
}

/// The client-facing side of one destination.
pub struct Destination {
    pub name: String,
    store: Arc<Store>,
    meta: Arc<MetaStore>,
    filter: Arc<RwLock<TableFilter>>,
    exclude: String,
    source_address: SourceAddress,
    /// Serializes acks so cursors are written in the order batches were acknowledged.
    ack_lock: tokio::sync::Mutex<()>,
}

impl Destination {
    fn require_subscribed(&self, client_id: i16) -> Result<(), Refused> {
        if self.meta.is_subscribed(client_id) {
            Ok(())
        } else {
            Err(Refused(format!(
                "ClientIdentity:{{clientId={client_id}, destination={}}} should subscribe first",
                self.name
            )))
        }
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T, Refused> {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result.map_err(|e| Refused(e.to_string())),
            Err(e) => Err(Refused(format!("internal error: {e}"))),
        }
    }

    /// Subscribes a client. A non-blank filter replaces the include list for the whole destination, as in canal.
    pub async fn subscribe(&self, client_id: i16, filter: &str) -> Result<(), Refused> {
        if !filter.trim().is_empty() {
            let compiled = TableFilter::new(filter, &self.exclude).map_err(|e| Refused(e.to_string()))?;
            *self.filter.write().unwrap_or_else(|p| p.into_inner()) = compiled;
            tracing::info!(client_id, filter, "subscription filter replaces filter.include");
        }
        let meta = self.meta.clone();
        let filter = filter.to_string();
        let initial = self
            .store
            .acked_resume()
            .map(|r| LogPosition::initial(&self.source_address, r));
        Self::blocking(move || meta.subscribe(client_id, &filter, initial)).await?;
        tracing::info!(client_id, "client subscribed");
        Ok(())
    }

    pub async fn unsubscribe(&self, client_id: i16) -> Result<(), Refused> {
        let meta = self.meta.clone();
        Self::blocking(move || meta.unsubscribe(client_id)).await?;
        tracing::info!(client_id, "client unsubscribed");
        Ok(())
    }

    pub async fn get(&self, client_id: i16, fetch_size: i32, wait: Wait) -> Result<Batch, Refused> {
        self.require_subscribed(client_id)?;
        Ok(self.store.get(&client_id.to_string(), fetch_size, wait).await?)
    }

    /// Acknowledges a batch. Returns only once the new cursor is on disk.
    pub async fn ack(&self, client_id: i16, batch_id: i64) -> Result<(), Refused> {
        self.require_subscribed(client_id)?;
        let _order = self.ack_lock.lock().await;
        let acked = self.store.ack(&client_id.to_string(), batch_id)?;
        let meta = self.meta.clone();
        let source = self.source_address.clone();
        Self::blocking(move || {
            let previous = meta.cursor(client_id).unwrap_or_default();
            meta.update_cursor(
                client_id,
                previous.advanced(&source, acked.boundary.as_ref(), acked.resume),
            )
        })
        .await
    }

    pub async fn rollback(&self, client_id: i16, batch_id: i64) -> Result<(), Refused> {
        if !self.meta.is_subscribed(client_id) {
            // canal ignores a rollback from a client that never subscribed (clients send one on connect).
            return Ok(());
        }
        Ok(self.store.rollback(&client_id.to_string(), batch_id)?)
    }
}

/// Runs the destination until `shutdown` is cancelled. Returns an error only for problems that retrying cannot fix
/// (the port is taken, the cursor file is unreadable).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let config = &settings.config;
    let meta = Arc::new(MetaStore::open(&settings.state_dir(), &config.destination)?);
    let include = meta.filter().unwrap_or_else(|| config.filter.include.clone());
    let filter = Arc::new(RwLock::new(TableFilter::new(&include, &config.filter.exclude)?));
    let source = BinlogSource::new(&settings);

    let bind = format!("{}:{}", config.server.host, config.server.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {bind} (server.host/server.port)"), e))?;
    tracing::info!(address = %bind, destination = %config.destination, "canal server listening");

    // Clients are served from the first moment, even while the start position cannot be determined yet (the
    // source may be down): they connect, subscribe and get empty batches instead of hanging on a silent port.
    let store = Arc::new(Store::new(&config.store));
    let destination = Arc::new(Destination {
        name: config.destination.clone(),
        store: store.clone(),
        meta: meta.clone(),
        filter: filter.clone(),
        exclude: config.filter.exclude.clone(),
        source_address: source.address(),
        ack_lock: tokio::sync::Mutex::new(()),
    });
    let auth = ServerAuth {
        username: config.server.username.clone(),
        password_hash: settings.server_password_hash,
    };
    let server = tokio::spawn(server::serve(listener, destination, auth, shutdown.clone()));

    if let Some(start) = start_position(&settings, &meta, &source, &shutdown).await {
        tracing::info!(position = %start, "binlog dump starts");
        store.start_at(start.clone());
        let options = ConvertOptions {
            ddl: config.filter.ddl,
            dcl: config.filter.dcl,
            transaction_entries: config.filter.transaction_entries,
            time_zone: settings.time_zone.clone(),
        };
        read_binlog(&source, &store, &start, &filter, &options, &shutdown).await;
    }

    store.close();
    if let Err(e) = server.await {
        tracing::error!(error = %e, "canal server task failed");
    }
    tracing::info!("stopped; every acknowledged cursor is on disk");
    Ok(())
}

/// Where the dump starts: the earliest client cursor, else the configured start, else the end of the binlog.
async fn start_position(
    settings: &Settings,
    meta: &MetaStore,
    source: &BinlogSource,
    shutdown: &CancellationToken,
) -> Option<ResumePoint> {
    if let Some(resume) = meta.min_resume() {
        tracing::info!(cursor_file = %meta.path().display(), "resuming from the acknowledged cursor");
        return Some(resume);
    }
    if let Some(start) = &settings.config.start {
        return Some(ResumePoint::at(&start.journal_name, start.position));
    }
    let mut backoff = Backoff::default();
    loop {
        match source.current_end().await {
            Ok(end) => return Some(end),
            Err(e) => {
                if !backoff.wait_after(&e, shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// Reconnection delays: 1 s doubling to 30 s, reset after a successful dump start.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Logs `error` and sleeps; false when shutdown was requested meanwhile.
    async fn wait_after(&mut self, error: &Error, shutdown: &CancellationToken) -> bool {
        let delay = Duration::from_secs(1 << self.failures.min(5)).min(MAX_BACKOFF);
        self.failures += 1;
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

/// Dumps the binlog into the store until shutdown, reconnecting after every failure from the store's tail.
async fn read_binlog(
    source: &BinlogSource,
    store: &Arc<Store>,
    start: &ResumePoint,
    filter: &Arc<RwLock<TableFilter>>,
    options: &ConvertOptions,
    shutdown: &CancellationToken,
) {
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let resume = store.tail_resume().unwrap_or_else(|| start.clone());
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = source.dump(&resume) => r,
        };
        let (mut stream, facts) = match result {
            Ok(ok) => ok,
            Err(e) => {
                if !backoff.wait_after(&e, shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(position = %resume, server = %facts.version, server_id = facts.server_id, "binlog dump started");
        let mut converter = Converter::new(options.clone(), filter.clone(), &resume);
        let mut progress = Progress::new(store);
        let outcome: Result<()> = async {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    next = tokio::time::timeout(HEARTBEAT_PERIOD * 3, stream.next()) => next,
                };
                let event = match next {
                    Err(_) => {
                        return Err(Error::BinlogDump {
                            position: progress.position(&converter),
                            message: format!("no event or heartbeat for {:?}; reconnecting", HEARTBEAT_PERIOD * 3),
                        });
                    }
                    Ok(None) => {
                        return Err(Error::BinlogDump {
                            position: progress.position(&converter),
                            message: "the server closed the binlog stream".into(),
                        });
                    }
                    Ok(Some(Err(e))) => {
                        return Err(Error::BinlogDump {
                            position: progress.position(&converter),
                            message: e.to_string(),
                        });
                    }
                    Ok(Some(Ok(event))) => event,
                };
                backoff = Backoff::default();
                progress.last_offset = event.header().log_pos() as u64;
                for entry in converter.convert(&event)? {
                    progress.rows += entry.rows as u64;
                    let put = tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        put = store.put(entry) => put,
                    };
                    if put.is_err() {
                        return Ok(());
                    }
                }
                progress.maybe_log(&converter);
            }
        }
        .await;
        let _ = stream.close().await;
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
    last_log: tokio::time::Instant,
    last_offset: u64,
    rows: u64,
    rows_at_last_log: u64,
}

impl<'a> Progress<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            last_log: tokio::time::Instant::now(),
            last_offset: 0,
            rows: 0,
            rows_at_last_log: 0,
        }
    }

    fn position(&self, converter: &Converter) -> String {
        format!("{}:{}", converter.journal(), self.last_offset)
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
