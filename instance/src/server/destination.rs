//! The destination API: the one seam through which the store is consumed.
//!
//! A consumer of a destination subscribes, gets batches, acknowledges or rolls them back, and has its cursor stored,
//! all through [`Destination`]. A TCP [`session`](super::session) is one consumer; any other (a sink that writes
//! elsewhere) uses the same methods, so fencing, one-consumer-per-client-id and cursor ordering hold for all of them.
//! A destination serves only during a [`Term`]: always in standalone mode, and in ZooKeeper mode only while this
//! instance holds the election and its lease. Every refusal is a [`Refused`] case, never a string to match.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use canal_api::BatchMode;

use super::consumers::{Connection, Consumers, running_node_replaces};
use crate::binlog::position::SourceAddress;
use crate::convert::filter::TableFilter;
use crate::ha::{Lease, Standing, ZooKeeperSession};
use crate::meta::{LogPosition, Meta};
use crate::observe::metrics::{Counters, Role, Snapshot};
use crate::observe::report::SharedPosition;
use crate::store::{Batch, Store, StoreError, Wait};

/// How long a request for a client id that another connection holds waits for that connection to close.
const RELEASE_GRACE: Duration = Duration::from_secs(2);

/// A client request the destination refuses; the server reports each as canal error 400.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// This instance does not serve now (a standby, or between terms); the words are canal's own.
    #[error("destination:{destination} should start first")]
    NotActive { destination: String },
    #[error("ClientIdentity:{{clientId={client_id}, destination={destination}}} should subscribe first")]
    NotSubscribed { client_id: i16, destination: String },
    #[error("this connection no longer consumes clientId {client_id}: client HA made another consumer active")]
    Evicted { client_id: i16 },
    #[error(
        "clientId {client_id} of destination {destination} is already consumed by the connection from {holder} \
         (since {since}). canal-rs serves one connection per clientId: stop the other consumer, give this one \
         another clientId, or run the consumers with client HA so that only the active one connects"
    )]
    Busy {
        client_id: i16,
        destination: String,
        holder: SocketAddr,
        since: jiff::Timestamp,
    },
    /// A subscription filter that does not compile.
    #[error("{0}")]
    Filter(crate::Error),
    /// The cursor store could not record the change; the client may retry.
    #[error("{0}")]
    Meta(crate::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl Refused {
    /// Whether the refusal is routine (a standby refuses everything until it becomes active), not worth a warning.
    pub fn is_routine(&self) -> bool {
        matches!(self, Refused::NotActive { .. })
    }
}

/// What an active instance serves from: its store and cursor store, and in ZooKeeper mode the lease that proves it
/// is still the active one.
pub struct Term {
    pub store: Arc<Store>,
    pub meta: Meta,
    pub lease: Option<Lease>,
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
    consumers: Arc<Consumers>,
    /// Counts for the metrics, bumped by the reader and the protocol server.
    pub counters: Arc<Counters>,
}

impl Destination {
    /// A destination that serves nothing until a term is [activated](Self::activate).
    pub fn new(
        name: &str,
        filter: TableFilter,
        exclude: &str,
        source_address: SourceAddress,
        consumers: Arc<Consumers>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            name: name.to_string(),
            filter: Arc::new(RwLock::new(filter)),
            exclude: exclude.to_string(),
            source_address,
            term: RwLock::new(None),
            position: SharedPosition::default(),
            ack_lock: tokio::sync::Mutex::new(()),
            consumers,
            counters,
        }
    }

    /// A new consumer of this destination (a client connection, or any other reader of the store) from `peer`. It
    /// holds no client id until it uses one; call [`disconnect`](Self::disconnect) when it goes.
    pub fn connect(&self, peer: SocketAddr) -> Connection {
        self.consumers.connect(peer)
    }

    /// The consumer is gone: the client ids it held are free again.
    pub fn disconnect(&self, connection: &Connection) {
        self.consumers.disconnect(connection);
    }

    /// Who consumes which client id, for status reports.
    pub fn consumers(&self) -> &Arc<Consumers> {
        &self.consumers
    }

    /// The table filter the converter applies; a subscription may replace it.
    pub fn filter(&self) -> &Arc<RwLock<TableFilter>> {
        &self.filter
    }

    /// Where the reader publishes its position, for status reporting.
    pub fn position(&self) -> &SharedPosition {
        &self.position
    }

    fn term(&self) -> Result<Arc<Term>, Refused> {
        let term = self.term.read().unwrap_or_else(|p| p.into_inner()).clone();
        match term {
            Some(term) if term.holds() => Ok(term),
            _ => Err(self.not_active()),
        }
    }

    /// What the metrics show of this destination right now. The role is read together with the term, so a scrape
    /// never shows an active instance without its store and activation, or a standby with a store.
    pub fn snapshot(
        &self,
        batch_mode: BatchMode,
        standing: &Standing,
        zookeeper: Option<ZooKeeperSession>,
    ) -> Snapshot {
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
        Refused::NotActive {
            destination: self.name.clone(),
        }
    }

    pub fn activate(&self, term: Arc<Term>) {
        self.counters.activated();
        *self.term.write().unwrap_or_else(|p| p.into_inner()) = Some(term);
    }

    /// Stops serving: later requests are refused, waiting gets are woken, and acks in flight finish first.
    pub async fn deactivate(&self) {
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
            Err(Refused::NotSubscribed {
                client_id,
                destination: self.name.clone(),
            })
        }
    }

    /// Makes `connection` the consumer of `client_id`, or explains who is. A holder that closes within
    /// [`RELEASE_GRACE`] (a client reconnecting) lets the claim through, and so does client HA naming this
    /// connection as the active consumer, which evicts the holder.
    async fn claim(&self, term: &Term, client_id: i16, connection: &Connection) -> Result<(), Refused> {
        if connection.evicted.is_cancelled() {
            return Err(Refused::Evicted { client_id });
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
                return Err(Refused::Busy {
                    client_id,
                    destination: self.name.clone(),
                    holder: busy.peer,
                    since: busy.since,
                });
            }
        }
    }

    pub fn replace_filter(&self, include: &str) -> Result<(), Refused> {
        let compiled = TableFilter::new(include, &self.exclude).map_err(Refused::Filter)?;
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
            .map_err(Refused::Meta)?;
        tracing::info!(client_id, "client subscribed");
        Ok(())
    }

    pub async fn unsubscribe(&self, connection: &Connection, client_id: i16) -> Result<(), Refused> {
        let term = self.term()?;
        self.claim(&term, client_id, connection).await?;
        term.meta.unsubscribe(client_id).await.map_err(Refused::Meta)?;
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
        term.meta.update_cursor(client_id, cursor).await.map_err(Refused::Meta)
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
