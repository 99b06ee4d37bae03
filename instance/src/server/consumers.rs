//! Which connection is the consumer of each client id.
//!
//! canal lets any number of connections fetch as the same client id: they then split one stream between them and
//! acknowledge or roll back each other's batches. canal-rs gives a client id to one connection at a time, the first
//! that uses it. Another connection is refused while the holder is connected, with an error that names the holder,
//! unless the holder goes away (its connection closes; a short grace covers a client that reconnects) or client HA
//! in ZooKeeper shows that the holder is no longer the active consumer (see [`running_node_replaces`]). The second
//! case is a consumer paused or cut off long enough to lose its ZooKeeper session: its connection may linger, but
//! the replica that took its node must be able to fetch, so the old connection is evicted and closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::observe::metrics::{ClientLabels, Metrics};
use crate::observe::report::Consumer;

/// One client connection, as the registry knows it.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    pub peer: SocketAddr,
    /// Cancelled when another connection took this one's client id over; the session then closes.
    pub evicted: CancellationToken,
}

#[derive(Clone, Debug)]
struct Holder {
    connection: u64,
    peer: SocketAddr,
    since: jiff::Timestamp,
    evicted: CancellationToken,
}

/// Who holds a client id that another connection asked for.
#[derive(Clone, Debug)]
pub struct Busy {
    connection: u64,
    pub peer: SocketAddr,
    pub since: jiff::Timestamp,
}

/// The client ids of one destination and their connections.
pub struct Consumers {
    destination: String,
    holders: Mutex<HashMap<i16, Holder>>,
    next_connection: AtomicU64,
    /// Bumped on every change, so a refused claim can wait for the holder to go and status reports follow.
    changes: watch::Sender<u64>,
    connected: Family<ClientLabels, Gauge>,
    refused: Family<ClientLabels, Counter>,
    evictions: Family<ClientLabels, Counter>,
}

impl Consumers {
    pub fn new(destination: &str, metrics: &Metrics) -> Self {
        Self {
            destination: destination.to_string(),
            holders: Mutex::default(),
            next_connection: AtomicU64::new(1),
            changes: watch::channel(0).0,
            connected: metrics.client_connected.clone(),
            refused: metrics.client_refused.clone(),
            evictions: metrics.client_evictions.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i16, Holder>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn labels(&self, client_id: i16) -> ClientLabels {
        ClientLabels {
            destination: self.destination.clone(),
            client_id: client_id.to_string(),
        }
    }

    /// Registers a new connection; it holds nothing yet.
    pub fn connect(&self, peer: SocketAddr) -> Connection {
        Connection {
            id: self.next_connection.fetch_add(1, Ordering::Relaxed),
            peer,
            evicted: CancellationToken::new(),
        }
    }

    /// Gives `client_id` to `connection` unless another connection holds it.
    pub fn claim(&self, client_id: i16, connection: &Connection) -> Result<(), Busy> {
        let mut holders = self.lock();
        match holders.get(&client_id) {
            Some(holder) if holder.connection == connection.id => Ok(()),
            Some(holder) => Err(Busy {
                connection: holder.connection,
                peer: holder.peer,
                since: holder.since,
            }),
            None => {
                holders.insert(client_id, Holder::of(connection));
                self.connected.get_or_create(&self.labels(client_id)).set(1);
                self.changed();
                Ok(())
            }
        }
    }

    /// Hands `client_id` from `busy` to `connection` and tells the old holder's session to close. False when the
    /// holder changed meanwhile.
    pub fn evict(&self, client_id: i16, busy: &Busy, connection: &Connection) -> bool {
        let mut holders = self.lock();
        match holders.get(&client_id) {
            Some(holder) if holder.connection == busy.connection => {
                holder.evicted.cancel();
                holders.insert(client_id, Holder::of(connection));
                self.evictions.get_or_create(&self.labels(client_id)).inc();
                self.changed();
                true
            }
            _ => false,
        }
    }

    /// Counts a refused claim.
    pub fn refused(&self, client_id: i16) {
        self.refused.get_or_create(&self.labels(client_id)).inc();
    }

    /// Frees `client_id` if `connection` holds it (after an unsubscribe).
    pub fn release(&self, client_id: i16, connection: &Connection) {
        let mut holders = self.lock();
        if holders.get(&client_id).is_some_and(|h| h.connection == connection.id) {
            holders.remove(&client_id);
            self.connected.remove(&self.labels(client_id));
            self.changed();
        }
    }

    /// Frees every client id `connection` holds (it closed).
    pub fn disconnect(&self, connection: &Connection) {
        let mut holders = self.lock();
        let before = holders.len();
        holders.retain(|client_id, h| {
            let keep = h.connection != connection.id;
            if !keep {
                self.connected.remove(&self.labels(*client_id));
            }
            keep
        });
        if holders.len() != before {
            self.changed();
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// A receiver that sees every claim, eviction and release.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The current consumers, ordered by client id.
    pub fn snapshot(&self) -> Vec<Consumer> {
        let mut consumers: Vec<Consumer> = self
            .lock()
            .iter()
            .map(|(client_id, h)| Consumer {
                client_id: *client_id,
                address: h.peer.to_string(),
                since: h.since,
            })
            .collect();
        consumers.sort_by_key(|c| c.client_id);
        consumers
    }
}

impl Holder {
    fn of(connection: &Connection) -> Self {
        Self {
            connection: connection.id,
            peer: connection.peer,
            since: jiff::Timestamp::now(),
            evicted: connection.evicted.clone(),
        }
    }
}

/// Whether the client running node's `address` shows that `newcomer`, not `holder`, is the active consumer.
///
/// An active consumer rewrites the node to its connection's `ip:port` once connected (canal's client and ours
/// both do), but it creates the node with its host IP alone, so at the newcomer's first request the node may
/// name only its IP. The holder is replaced when the node no longer names the holder's connection and names the
/// newcomer's: exactly, or by IP while the port is not yet known.
pub fn running_node_replaces(address: &str, holder: SocketAddr, newcomer: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| ip.to_canonical();
    if let Ok(named) = address.parse::<SocketAddr>() {
        let same = |a: SocketAddr| canonical(a.ip()) == canonical(named.ip()) && a.port() == named.port();
        return !same(holder) && same(newcomer);
    }
    match address.parse::<IpAddr>() {
        Ok(ip) => canonical(newcomer.ip()) == canonical(ip),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumers() -> Consumers {
        let mut registry = prometheus_client::registry::Registry::default();
        Consumers::new("example", &Metrics::new(&mut registry, "example"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_connection_per_client_id_until_it_goes() {
        let consumers = consumers();
        let first = consumers.connect(addr("10.0.0.1:5000"));
        let second = consumers.connect(addr("10.0.0.2:6000"));
        consumers.claim(1001, &first).unwrap();
        consumers.claim(1001, &first).unwrap();
        consumers.claim(1002, &second).unwrap();
        let busy = consumers.claim(1001, &second).unwrap_err();
        assert_eq!(busy.peer, first.peer);
        assert_eq!(
            consumers
                .snapshot()
                .iter()
                .map(|c| c.address.as_str())
                .collect::<Vec<_>>(),
            ["10.0.0.1:5000", "10.0.0.2:6000"]
        );

        let mut changes = consumers.changes();
        changes.mark_unchanged();
        consumers.disconnect(&first);
        assert!(changes.has_changed().unwrap());
        consumers.claim(1001, &second).unwrap();
        consumers.release(1001, &second);
        assert_eq!(consumers.snapshot().len(), 1, "1002 stays with the second connection");
    }

    #[test]
    fn eviction_hands_over_and_signals_the_old_holder() {
        let consumers = consumers();
        let old = consumers.connect(addr("10.0.0.1:5000"));
        let new = consumers.connect(addr("10.0.0.2:6000"));
        consumers.claim(1001, &old).unwrap();
        let busy = consumers.claim(1001, &new).unwrap_err();
        assert!(consumers.evict(1001, &busy, &new));
        assert!(old.evicted.is_cancelled());
        consumers.claim(1001, &new).unwrap();
        assert!(!consumers.evict(1001, &busy, &new), "a stale Busy evicts nothing");
        // The evicted connection closing later does not free the new holder's id.
        consumers.disconnect(&old);
        assert_eq!(consumers.snapshot()[0].address, "10.0.0.2:6000");
    }

    #[test]
    fn running_node_names_the_newcomer() {
        let holder = addr("10.0.0.1:5000");
        let newcomer = addr("10.0.0.2:6000");
        assert!(running_node_replaces("10.0.0.2:6000", holder, newcomer));
        assert!(
            running_node_replaces("10.0.0.2", holder, newcomer),
            "created with the host IP only"
        );
        assert!(
            !running_node_replaces("10.0.0.1:5000", holder, newcomer),
            "the holder is still active"
        );
        assert!(
            !running_node_replaces("10.0.0.3", holder, newcomer),
            "a third replica is active"
        );
        assert!(!running_node_replaces("not an address", holder, newcomer));
        // Same host: only the exact port decides.
        let holder = addr("127.0.0.1:5000");
        let newcomer = addr("[::ffff:127.0.0.1]:6000");
        assert!(running_node_replaces("127.0.0.1:6000", holder, newcomer));
        assert!(!running_node_replaces("127.0.0.1:5000", holder, newcomer));
    }
}
