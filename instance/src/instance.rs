//! One destination, wired together: binlog reader → converter → store → canal server, with cursors in [`Meta`].
//!
//! [`Destination`] is what the protocol server calls for each client request. It serves only during a [`Term`]:
//! always in standalone mode, and in ZooKeeper mode only while this instance holds the election (and its lease).
//! [`run`] owns the reader loop, reconnects to the source with backoff, logs progress, and shuts down in the order
//! that loses nothing: stop serving, write cursors, then hand the running node over.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use canal_api::{BatchMode, MissingBinlogPolicy};

use crate::config::Settings;
use crate::consumers::{Connection, Consumers, running_node_replaces};
use crate::convert::{ConvertOptions, Converter};
use crate::error::{Error, Result};
use crate::filter::TableFilter;
use crate::ha::{Election, Leadership, Lease, Standing};
use crate::health;
use crate::history::SchemaHistory;
use crate::meta::file::MetaStore;
use crate::meta::zk::ZkMeta;
use crate::meta::{LogPosition, Meta, SourceAddress};
use crate::metrics::{Counters, InstanceCollector, Metrics, Role, Snapshot, ZooKeeperSession};
use crate::position::ResumePoint;
use crate::prefetch::{Next, Prefetch};
use crate::report::{PodIdentity, ReaderPosition, Reporter, SharedPosition};
use crate::server::{self, ServerAuth};
use crate::source::{BinlogSource, HEARTBEAT_PERIOD};
use crate::store::{Batch, Store, StoreError, Wait};
use crate::zk::Paths;

/// How often the reader logs where it is while rows flow, and while nothing happens.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
const IDLE_PROGRESS_INTERVAL: Duration = Duration::from_secs(300);
/// How often the position is made available to status reporting.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a request for a client id that another connection holds waits for that connection to close.
const RELEASE_GRACE: Duration = Duration::from_secs(2);
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

/// What an active instance serves from: its store and cursor store, and in ZooKeeper mode the lease that proves it
/// is still the active one.
pub struct Term {
    store: Arc<Store>,
    meta: Meta,
    lease: Option<Lease>,
}

impl Term {
    fn holds(&self) -> bool {
        self.lease.as_ref().is_none_or(Lease::holds)
    }
}

/// The client-facing side of one destination.
pub struct Destination {
    pub name: String,
    filter: Arc<RwLock<TableFilter>>,
    exclude: String,
    source_address: SourceAddress,
    term: RwLock<Option<Arc<Term>>>,
    /// The reader's binlog position, for status reporting.
    position: SharedPosition,
    /// Serializes acks so cursors are written in the order batches were acknowledged, and lets a term end only
    /// after the acks in flight are written.
    ack_lock: tokio::sync::Mutex<()>,
    /// The connection consuming each client id.
    pub consumers: Arc<Consumers>,
    /// Counts for the metrics, bumped by the reader and the protocol server.
    pub counters: Arc<Counters>,
}

impl Destination {
    fn term(&self) -> Result<Arc<Term>, Refused> {
        let term = self.term.read().unwrap_or_else(|p| p.into_inner()).clone();
        match term {
            Some(term) if term.holds() => Ok(term),
            _ => Err(self.not_active()),
        }
    }

    /// What the metrics show of this destination right now. The role is read together with the term, so a scrape
    /// never shows an active instance without its store and activation, or a standby with a store.
    fn snapshot(&self, batch_mode: BatchMode, standing: &Standing, zookeeper: Option<ZooKeeperSession>) -> Snapshot {
        let term = self.term.read().unwrap_or_else(|p| p.into_inner()).clone();
        let role = metrics_role(standing, term.as_ref().is_some_and(|t| t.holds()));
        let term = term.filter(|_| role == Role::Active);
        let reader = self.position.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Snapshot {
            store: term.as_ref().map(|t| t.store.stats()),
            batch_mode,
            reader_event_time_ms: reader.map(|r| r.event_time_ms),
            subscriptions: term.as_ref().map_or(0, |t| t.meta.subscriptions()),
            role,
            zookeeper,
        }
    }

    fn not_active(&self) -> Refused {
        Refused(format!("destination:{} should start first", self.name))
    }

    fn activate(&self, term: Arc<Term>) {
        self.counters.activated();
        *self.term.write().unwrap_or_else(|p| p.into_inner()) = Some(term);
    }

    /// Stops serving: later requests are refused, waiting gets are woken, and acks in flight finish first.
    async fn deactivate(&self) {
        let term = self.term.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(term) = term {
            term.store.close();
            let _in_flight = self.ack_lock.lock().await;
        }
    }

    fn require_subscribed(&self, term: &Term, client_id: i16) -> Result<(), Refused> {
        if term.meta.is_subscribed(client_id) {
            Ok(())
        } else {
            Err(Refused(format!(
                "ClientIdentity:{{clientId={client_id}, destination={}}} should subscribe first",
                self.name
            )))
        }
    }

    /// Makes `connection` the consumer of `client_id`, or explains who is. A holder that closes within
    /// [`RELEASE_GRACE`] (a client reconnecting) lets the claim through, and so does client HA naming this
    /// connection as the active consumer, which evicts the holder.
    async fn claim(&self, term: &Term, client_id: i16, connection: &Connection) -> Result<(), Refused> {
        if connection.evicted.is_cancelled() {
            return Err(Refused(format!(
                "this connection no longer consumes clientId {client_id}: client HA made another consumer active"
            )));
        }
        let deadline = tokio::time::Instant::now() + RELEASE_GRACE;
        let mut changes = self.consumers.changes();
        loop {
            let busy = match self.consumers.claim(client_id, connection) {
                Ok(()) => return Ok(()),
                Err(busy) => busy,
            };
            if let Some(address) = term.meta.client_running_address(client_id).await
                && running_node_replaces(&address, busy.peer, connection.peer)
            {
                if self.consumers.evict(client_id, &busy, connection) {
                    tracing::warn!(
                        client_id,
                        evicted = %busy.peer,
                        active = %connection.peer,
                        "client HA made another consumer active; closing the previous consumer's connection"
                    );
                    return Ok(());
                }
                continue;
            }
            let released = tokio::time::timeout_at(deadline, changes.changed()).await;
            if !matches!(released, Ok(Ok(()))) {
                self.consumers.refused(client_id);
                return Err(Refused(format!(
                    "clientId {client_id} of destination {} is already consumed by the connection from {} (since \
                     {}). canal-rs serves one connection per clientId: stop the other consumer, give this one another \
                     clientId, or run the consumers with client HA so that only the active one connects",
                    self.name, busy.peer, busy.since
                )));
            }
        }
    }

    fn replace_filter(&self, include: &str) -> Result<(), Refused> {
        let compiled = TableFilter::new(include, &self.exclude).map_err(|e| Refused(e.to_string()))?;
        *self.filter.write().unwrap_or_else(|p| p.into_inner()) = compiled;
        Ok(())
    }

    /// Subscribes a client. A non-blank filter replaces the include list for the whole destination, as in canal.
    pub async fn subscribe(&self, connection: &Connection, client_id: i16, filter: &str) -> Result<(), Refused> {
        let term = self.term()?;
        self.claim(&term, client_id, connection).await?;
        if !filter.trim().is_empty() {
            self.replace_filter(filter)?;
            tracing::info!(client_id, filter, "subscription filter replaces filter.include");
        }
        let initial = term
            .store
            .acked_resume()
            .map(|r| LogPosition::initial(&self.source_address, r));
        term.meta
            .subscribe(client_id, filter, initial)
            .await
            .map_err(|e| Refused(e.to_string()))?;
        tracing::info!(client_id, "client subscribed");
        Ok(())
    }

    pub async fn unsubscribe(&self, connection: &Connection, client_id: i16) -> Result<(), Refused> {
        let term = self.term()?;
        self.claim(&term, client_id, connection).await?;
        term.meta
            .unsubscribe(client_id)
            .await
            .map_err(|e| Refused(e.to_string()))?;
        self.consumers.release(client_id, connection);
        tracing::info!(client_id, "client unsubscribed");
        Ok(())
    }

    pub async fn get(
        &self,
        connection: &Connection,
        client_id: i16,
        fetch_size: i32,
        wait: Wait,
    ) -> Result<Batch, Refused> {
        let term = self.term()?;
        self.claim(&term, client_id, connection).await?;
        self.require_subscribed(&term, client_id)?;
        let batch = term.store.get(&client_id.to_string(), fetch_size, wait).await?;
        // A get may have waited; hand nothing out if this instance stopped being the active one meanwhile.
        if !term.holds() {
            return Err(self.not_active());
        }
        Ok(batch)
    }

    /// Acknowledges a batch. Returns only once the new cursor is stored.
    pub async fn ack(&self, connection: &Connection, client_id: i16, batch_id: i64) -> Result<(), Refused> {
        let term = self.term()?;
        self.claim(&term, client_id, connection).await?;
        drop(term);
        let _order = self.ack_lock.lock().await;
        let term = self.term()?;
        self.require_subscribed(&term, client_id)?;
        let acked = term.store.ack(&client_id.to_string(), batch_id)?;
        let previous = term.meta.cursor(client_id).unwrap_or_default();
        let cursor = previous.advanced(&self.source_address, acked.boundary.as_ref(), acked.resume);
        term.meta
            .update_cursor(client_id, cursor)
            .await
            .map_err(|e| Refused(e.to_string()))
    }

    pub async fn rollback(&self, connection: &Connection, client_id: i16, batch_id: i64) -> Result<(), Refused> {
        let term = self.term()?;
        self.claim(&term, client_id, connection).await?;
        if !term.meta.is_subscribed(client_id) {
            // canal ignores a rollback from a client that never subscribed (clients send one on connect).
            return Ok(());
        }
        Ok(term.store.rollback(&client_id.to_string(), batch_id)?)
    }
}

/// Runs the destination until `shutdown` is cancelled. Returns an error only for problems that retrying cannot fix
/// (the port is taken, the cursor file is unreadable).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let config = &settings.config;
    let source = BinlogSource::new(&settings);
    let bind = format!("{}:{}", config.server.host, config.server.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {bind} (server.host/server.port)"), e))?;
    tracing::info!(address = %bind, destination = %config.destination, "canal server listening");

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry, &config.destination);
    let destination = Arc::new(Destination {
        name: config.destination.clone(),
        filter: Arc::new(RwLock::new(TableFilter::new(
            &config.filter.include,
            &config.filter.exclude,
        )?)),
        exclude: config.filter.exclude.clone(),
        source_address: source.address(),
        term: RwLock::new(None),
        position: SharedPosition::default(),
        ack_lock: tokio::sync::Mutex::new(()),
        consumers: Arc::new(Consumers::new(&config.destination, &metrics)),
        counters: metrics.counters.clone(),
    });
    let auth = ServerAuth {
        username: config.server.username.clone(),
        password_hash: settings.server_password_hash,
    };
    // The server outlives every term: a standby answers "should start first" rather than refusing connections.
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(listener, destination.clone(), auth, server_stop.clone()));

    let election = config.zookeeper.as_ref().map(|zookeeper| {
        let address = register_address(&settings);
        tracing::info!(address = %address, servers = %zookeeper.servers, "joining the election");
        Election::new(zookeeper.clone(), &config.destination, address)
    });
    // Standalone, this instance is always the active one.
    let standing = election
        .as_ref()
        .map_or_else(|| watch::channel(Standing::Active).1, Election::standing);
    let standing_for_report = standing.clone();
    let zookeeper_session = election.as_ref().map(Election::session_state);
    registry.register_collector(Box::new(InstanceCollector::new(
        &config.destination,
        metrics.counters.clone(),
        {
            let destination = destination.clone();
            let standing = standing.clone();
            let batch_mode = config.store.batch_mode;
            move || {
                let zookeeper = zookeeper_session.as_ref().map(|s| *s.borrow());
                destination.snapshot(batch_mode, &standing.borrow(), zookeeper)
            }
        },
    )));
    let health = match config.server.metrics_port {
        0 => None,
        port => {
            let bind = format!("{}:{port}", config.server.host);
            let listener = TcpListener::bind(&bind)
                .await
                .map_err(|e| Error::io(format!("cannot listen on {bind} (server.metricsPort)"), e))?;
            Some(tokio::spawn(health::serve(
                listener,
                standing.clone(),
                Arc::new(registry),
                server_stop.clone(),
            )))
        }
    };

    let reporter = match PodIdentity::from_env(&|name| std::env::var(name).ok()) {
        None => None,
        Some(identity) => match kube::Client::try_default().await {
            Ok(client) => {
                tracing::info!(pod = %identity.pod, instance = %identity.instance, "reporting the role to Kubernetes");
                let reporter = Reporter::new(client, identity);
                Some(tokio::spawn(reporter.run(
                    standing_for_report,
                    destination.position.clone(),
                    destination.consumers.clone(),
                    server_stop.clone(),
                )))
            }
            Err(e) => {
                tracing::warn!(error = %e, "in a pod, but no Kubernetes client: the role is not reported");
                None
            }
        },
    };

    let outcome = match election {
        None => run_standalone(&settings, &source, &destination, &shutdown).await,
        Some(election) => {
            run_with_zookeeper(&settings, election, &source, &destination, &shutdown).await;
            Ok(())
        }
    };
    server_stop.cancel();
    if let Err(e) = server.await {
        tracing::error!(error = %e, "canal server task failed");
    }
    if let Some(health) = health {
        let _ = health.await;
    }
    if let Some(reporter) = reporter {
        let _ = reporter.await;
    }
    outcome?;
    tracing::info!("stopped; every acknowledged cursor is stored");
    Ok(())
}

fn convert_options(settings: &Settings) -> ConvertOptions {
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

/// The destination's schema history as persisted, or, the first time, seeded from `information_schema`. A seed that
/// cannot be read is logged and the history starts empty: tables whose binlog lacks metadata then show positional
/// column names until their CREATE TABLE is read.
async fn load_schema_history(meta: &Meta, source: &BinlogSource) -> Arc<Mutex<SchemaHistory>> {
    let mut history = match meta.schema_history().await {
        Ok(tables) => SchemaHistory::from_tables(tables),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the stored schema history; rebuilding it from information_schema");
            SchemaHistory::default()
        }
    };
    if history.is_empty() {
        match source.table_definitions().await {
            Ok((tables, at)) => {
                tracing::info!(tables = tables.len(), position = %at, "schema history seeded from information_schema");
                history.seed(tables, &at);
                let seeded = history.take_changed();
                if let Err(e) = meta.save_schema_history(seeded.clone()).await {
                    tracing::warn!(error = %e, "cannot store the schema history yet; retrying when the dump starts");
                    history.unsaved(&seeded);
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                "cannot read information_schema to seed the schema history; without binlog_row_metadata=FULL, \
                 tables not created in the binlog read from here show columns as @0, @1, ..."
            ),
        }
    }
    Arc::new(Mutex::new(history))
}

/// Stores the schema history's new versions before any entry after the DDL that made them reaches the store, so a
/// cursor never passes a DDL whose effect could be lost.
async fn save_schema_history(meta: &Meta, history: &Mutex<SchemaHistory>) -> Result<()> {
    let changed = history.lock().unwrap_or_else(|p| p.into_inner()).take_changed();
    if changed.is_empty() {
        return Ok(());
    }
    if let Err(e) = meta.save_schema_history(changed.clone()).await {
        history.lock().unwrap_or_else(|p| p.into_inner()).unsaved(&changed);
        return Err(e);
    }
    Ok(())
}

/// The role the metrics show. An instance that won the election but is not serving yet (still reading its
/// subscriptions from ZooKeeper, or retrying that) is neither active nor a standby: it shows as unavailable until
/// clients can be served, so that `sum(canal_rs_ha_role{role="active"})` counts only instances that serve.
fn metrics_role(standing: &Standing, serving: bool) -> Role {
    match standing {
        Standing::Active if serving => Role::Active,
        Standing::Active => Role::Unavailable,
        Standing::Standby(_) => Role::Standby,
        Standing::Unavailable(_) => Role::Unavailable,
    }
}

/// Serves one term: find the start, dump into a fresh store, until `stop`.
async fn serve_term(
    settings: &Settings,
    source: &BinlogSource,
    destination: &Destination,
    meta: Meta,
    lease: Option<Lease>,
    stop: &CancellationToken,
) {
    if let Some(include) = meta.filter()
        && let Err(e) = destination.replace_filter(&include)
    {
        tracing::warn!(error = %e, "ignoring the stored subscription filter");
    }
    let store = Arc::new(Store::new(&settings.config.store));
    let term = Arc::new(Term {
        store: store.clone(),
        meta,
        lease: lease.clone(),
    });
    // Clients are served from the first moment, even while the start position cannot be determined yet (the
    // source may be down): they connect, subscribe and get empty batches instead of hanging.
    destination.activate(term.clone());
    if let Some(start) = start_position(settings, &term.meta, source, &destination.counters, stop).await {
        tracing::info!(position = %start, "binlog dump starts");
        store.start_at(start.clone());
        let options = convert_options(settings);
        let history = load_schema_history(&term.meta, source).await;
        let reader = Reader {
            source,
            store: &store,
            start: &start,
            filter: &destination.filter,
            options: &options,
            lease: lease.as_ref(),
            position: &destination.position,
            meta: &term.meta,
            history: &history,
            counters: &destination.counters,
        };
        read_binlog(reader, stop).await;
    }
    destination.deactivate().await;
    if let Err(e) = term.meta.flush().await {
        tracing::error!(error = %e, "could not write the last cursors");
    }
}

async fn run_standalone(
    settings: &Settings,
    source: &BinlogSource,
    destination: &Destination,
    shutdown: &CancellationToken,
) -> Result<()> {
    let meta = MetaStore::open(&settings.state_dir(), &settings.config.destination)?;
    serve_term(
        settings,
        source,
        destination,
        Meta::File(Arc::new(meta)),
        None,
        shutdown,
    )
    .await;
    Ok(())
}

/// The address published in ZooKeeper: `server.registerIp`, else `POD_IP`, else loopback.
fn register_address(settings: &Settings) -> String {
    let server = &settings.config.server;
    let ip = server
        .register_ip
        .clone()
        .or_else(|| std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty()))
        .unwrap_or_else(|| "127.0.0.1".into());
    format!("{ip}:{}", server.port)
}

/// Waits until this instance leads with a valid lease; `None` on shutdown.
async fn next_leadership(
    leadership: &mut watch::Receiver<Option<Leadership>>,
    shutdown: &CancellationToken,
) -> Option<Leadership> {
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        let current = leadership.borrow_and_update().clone();
        if let Some(leader) = current
            && leader.lease.holds()
        {
            return Some(leader);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            changed = leadership.changed() => changed.ok()?,
        }
    }
}

async fn run_with_zookeeper(
    settings: &Settings,
    election: Election,
    source: &BinlogSource,
    destination: &Destination,
    shutdown: &CancellationToken,
) {
    let Some(zookeeper) = settings.config.zookeeper.clone() else {
        return;
    };
    let mut leadership = election.leadership();
    let release = CancellationToken::new();
    let election_task = tokio::spawn(election.run(release.clone()));
    let paths = Paths::new(&settings.config.destination);
    let flush_period = Duration::from_millis(zookeeper.cursor_flush_period_ms as u64);

    while let Some(leader) = next_leadership(&mut leadership, shutdown).await {
        let stop = shutdown.child_token();
        let watcher = {
            let mut leadership = leadership.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                // The term ends as soon as the election says this instance is not (or may not be) active.
                while leadership.borrow_and_update().is_some() {
                    if leadership.changed().await.is_err() {
                        break;
                    }
                }
                stop.cancel();
            })
        };
        match ZkMeta::load(leader.client.clone(), paths.clone(), &zookeeper.servers, flush_period).await {
            Ok(meta) => {
                let meta = Meta::ZooKeeper(meta);
                serve_term(settings, source, destination, meta, Some(leader.lease.clone()), &stop).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read subscriptions from ZooKeeper; retrying");
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        watcher.abort();
        tracing::info!("stopped serving as the active instance");
    }
    // Cursors are written; now let a standby take over without waiting.
    release.cancel();
    if let Err(e) = election_task.await {
        tracing::error!(error = %e, "election task failed");
    }
}

/// Where the dump starts: the earliest client cursor, else the configured start, else the end of the binlog.
async fn start_position(
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
struct Reader<'a> {
    source: &'a BinlogSource,
    store: &'a Arc<Store>,
    /// Where the term's dump started (before anything was put into the store).
    start: &'a ResumePoint,
    filter: &'a Arc<RwLock<TableFilter>>,
    options: &'a ConvertOptions,
    /// In ZooKeeper mode, the proof of being active.
    lease: Option<&'a Lease>,
    position: &'a SharedPosition,
    meta: &'a Meta,
    history: &'a Arc<Mutex<SchemaHistory>>,
    counters: &'a Counters,
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
async fn read_binlog(reader: Reader<'_>, shutdown: &CancellationToken) {
    let Reader {
        source,
        store,
        start,
        filter,
        options,
        lease,
        position,
        meta,
        history,
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
        let mut converter =
            Converter::new(options.clone(), filter.clone(), &converter_start).with_history(history.clone());
        converter.set_server_files(facts.files.clone());
        converter.set_source_server_id(facts.server_id);
        if let Some(position) = &facts.gtid_position {
            converter.seed_gtid_position(position);
        }
        let mut progress = Progress::new(store, position);
        let mut events = Prefetch::start(stream, HEARTBEAT_PERIOD * 3);
        let outcome: Result<()> = async {
            // Versions a failed write left unsaved (a DDL read again is not recorded twice) are stored first.
            save_schema_history(meta, history).await?;
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
                if converter.take_history_changed() {
                    save_schema_history(meta, history).await?;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_serving_winner_shows_as_active() {
        assert_eq!(metrics_role(&Standing::Active, true), Role::Active);
        assert_eq!(metrics_role(&Standing::Active, false), Role::Unavailable);
        assert_eq!(metrics_role(&Standing::Standby(None), true), Role::Standby);
        assert_eq!(
            metrics_role(&Standing::Standby(Some("10.0.0.1:11111".into())), false),
            Role::Standby
        );
        assert_eq!(
            metrics_role(&Standing::Unavailable("lost".into()), true),
            Role::Unavailable
        );
    }
}
