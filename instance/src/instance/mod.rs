//! One destination, wired together: the binlog [`reader`] (source → convert → store) and the canal server in front
//! of the [`Destination`], with cursors in [`Meta`], the election deciding when a [`Term`] starts, and the metrics,
//! health and Kubernetes reporting beside them.
//!
//! [`run`] shuts down in the order that loses nothing: stop serving, write cursors, then hand the running node over.

mod reader;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::binlog::source::BinlogSource;
use crate::config::Settings;
use crate::convert::filter::TableFilter;
use crate::error::{Error, Result};
use crate::ha::zk::Paths;
use crate::ha::{Election, Leadership, Lease, Standing};
use crate::meta::Meta;
use crate::meta::file::MetaStore;
use crate::meta::zk::ZkMeta;
use crate::observe::collector::InstanceCollector;
use crate::observe::health;
use crate::observe::metrics::Metrics;
use crate::observe::report::{PodIdentity, Reporter};
use crate::schema::SchemaTracker;
use crate::server::consumers::Consumers;
use crate::server::destination::{Destination, Term};
use crate::server::{self, ServerAuth};
use crate::store::Store;
use reader::{Reader, convert_options, read_binlog, start_position};

/// Runs the destination until `shutdown` is cancelled. Returns an error only for problems that retrying cannot fix
/// (the port is taken, the cursor file is unreadable).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let config = &settings.config;
    let source = BinlogSource::new(&config.source, &settings.source_password);
    let bind = format!("{}:{}", config.server.host, config.server.port);
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {bind} (server.host/server.port)"), e))?;
    tracing::info!(address = %bind, destination = %config.destination, "canal server listening");

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry, &config.destination);
    let destination = Arc::new(Destination::new(
        &config.destination,
        TableFilter::new(&config.filter.include, &config.filter.exclude)?,
        &config.filter.exclude,
        source.address(),
        Arc::new(Consumers::new(&config.destination, &metrics)),
        metrics.counters.clone(),
    ));
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
                let reporter = match election.as_ref().map(Election::leadership) {
                    // Only a pod whose lease still holds may name itself the active one.
                    Some(leadership) => Reporter::new(client, identity)
                        .fenced_by(move || leadership.borrow().as_ref().is_some_and(|l| l.lease.holds())),
                    None => Reporter::new(client, identity),
                };
                let consumers = destination.consumers().clone();
                Some(tokio::spawn(reporter.run(
                    standing_for_report,
                    destination.position().clone(),
                    move || consumers.snapshot(),
                    destination.consumers().changes(),
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
        let schema = SchemaTracker::load(&term.meta, source).await;
        let reader = Reader {
            source,
            store: &store,
            start: &start,
            filter: destination.filter(),
            options: &options,
            lease: lease.as_ref(),
            position: destination.position(),
            meta: &term.meta,
            schema,
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
