//! Active/standby election through ZooKeeper, as canal's ServerRunningMonitor does it, with fencing.
//!
//! Every instance registers itself under `cluster/`, then tries to create the ephemeral `running` node holding
//! `{"active":true,"address":...}`. The one that succeeds is active; the others watch the node. When it vanishes,
//! its previous owner claims again at once and everybody else waits `failoverDelay` first, except after a graceful
//! release (the owner first marks the node `active:false`), which lets a standby take over immediately. Writing
//! `active:false` into the node asks the owner to step down.
//!
//! Fencing closes canal's gap: an active instance holds a [`Lease`] that is renewed by successful ZooKeeper round
//! trips and is valid for half the session timeout. It is revoked the moment the session is Disconnected, and it
//! lapses by itself when the process was paused. The session can only expire (and another instance take over)
//! after the full session timeout, so an instance stops serving before anyone else may start.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use canal_api::ZooKeeperConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zk;

use crate::ha::zk::{Paths, ServerRunningData, ensure_path, ephemeral};

/// Proof of being active, checked before serving anything.
#[derive(Clone, Debug)]
pub struct Lease {
    inner: Arc<LeaseInner>,
}

#[derive(Debug)]
struct LeaseInner {
    valid_for: Duration,
    renewed: Mutex<Instant>,
    revoked: AtomicBool,
}

impl Lease {
    fn new(valid_for: Duration) -> Self {
        Self {
            inner: Arc::new(LeaseInner {
                valid_for,
                renewed: Mutex::new(Instant::now()),
                revoked: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the holder may still act as the active instance.
    pub fn holds(&self) -> bool {
        if self.inner.revoked.load(Ordering::SeqCst) {
            return false;
        }
        let renewed = *self.inner.renewed.lock().unwrap_or_else(|p| p.into_inner());
        renewed.elapsed() < self.inner.valid_for
    }

    fn renew(&self, at: Instant) {
        let mut renewed = self.inner.renewed.lock().unwrap_or_else(|p| p.into_inner());
        *renewed = (*renewed).max(at);
    }

    fn revoke(&self) {
        if !self.inner.revoked.swap(true, Ordering::SeqCst) {
            // Logged with how long the lease had already lapsed (a paused process) so that the log shows when this
            // term's serving ended; the HA test rebuilds each term from this line and "became the active instance".
            let renewed = *self.inner.renewed.lock().unwrap_or_else(|p| p.into_inner());
            let lapsed = renewed.elapsed().saturating_sub(self.inner.valid_for);
            tracing::info!(lapsed_us = lapsed.as_micros() as u64, "lease revoked; no longer active");
        }
    }
}

/// Handed to the instance when it wins the election.
#[derive(Clone)]
pub struct Leadership {
    /// The session that owns the running node; cursors are written through it.
    pub client: zk::Client,
    pub lease: Lease,
}

/// Why the election's view of this instance changed, for logs and readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not connected to ZooKeeper (yet, or any more); the message says why.
    Unavailable(String),
    /// Connected; another instance (address, if known) is active.
    Standby(Option<String>),
    Active,
}

/// What is being contended for: canal uses the same running-node election for servers (one active instance per
/// destination) and for consumers (one active consumer per client id).
#[derive(Clone, Debug)]
struct Candidate {
    /// The ephemeral running node.
    running: String,
    /// Persistent parent nodes to create first.
    parents: Vec<String>,
    /// Ephemeral membership nodes registered for the session.
    members: Vec<String>,
    /// This candidate's node content (canal's JSON, with `active: true`).
    payload: serde_json::Value,
    address: String,
}

/// A running-node election: servers of one destination, or consumers of one client id.
pub struct Election {
    config: ZooKeeperConfig,
    candidate: Candidate,
    leadership: watch::Sender<Option<Leadership>>,
    standing: watch::Sender<Standing>,
    session_state: watch::Sender<ZooKeeperSession>,
}

/// How a ZooKeeper session ended.
enum SessionEnd {
    Stopped,
    Lost(String),
}

impl Election {
    /// The servers' election of `destination`; `address` is this instance's `ip:port` as clients reach it.
    pub fn new(config: ZooKeeperConfig, destination: &str, address: String) -> Self {
        let paths = Paths::new(destination);
        let payload = serde_json::to_value(ServerRunningData::new(&address, true)).unwrap_or_default();
        let candidate = Candidate {
            running: paths.running(),
            parents: vec![paths.destination_cluster(), Paths::server_cluster()],
            members: vec![paths.destination_member(&address), Paths::server_member(&address)],
            payload,
            address,
        };
        Self::with_candidate(config, candidate)
    }

    /// The consumers' election of `client_id` on `destination` (canal's ClientRunningMonitor). `address` is what the
    /// node shows; canal writes the host IP first and the local `ip:port` of the connection once connected.
    pub fn for_client(config: ZooKeeperConfig, destination: &str, client_id: i16, address: String) -> Self {
        let paths = Paths::new(destination);
        let candidate = Candidate {
            running: paths.client_running(client_id),
            parents: vec![paths.client(client_id)],
            members: Vec::new(),
            payload: client_running_data(&address, client_id),
            address,
        };
        Self::with_candidate(config, candidate)
    }

    fn with_candidate(config: ZooKeeperConfig, candidate: Candidate) -> Self {
        Self {
            config,
            candidate,
            leadership: watch::Sender::new(None),
            standing: watch::Sender::new(Standing::Unavailable("connecting to ZooKeeper".into())),
            session_state: watch::Sender::new(ZooKeeperSession::Connecting),
        }
    }

    /// Follows who is active: `Some` while this instance is.
    pub fn leadership(&self) -> watch::Receiver<Option<Leadership>> {
        self.leadership.subscribe()
    }

    pub fn standing(&self) -> watch::Receiver<Standing> {
        self.standing.subscribe()
    }

    /// Follows the ZooKeeper session's state, for the metrics.
    pub fn session_state(&self) -> watch::Receiver<ZooKeeperSession> {
        self.session_state.subscribe()
    }

    fn observe(&self, state: impl Into<ZooKeeperSession>) {
        self.session_state.send_replace(state.into());
    }

    fn observed(&self, state: zk::SessionState) -> zk::SessionState {
        self.observe(state);
        state
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.config.session_timeout_seconds.max(1) as u64)
    }

    fn lead(&self, client: &zk::Client, lease: &Lease) {
        tracing::info!(address = %self.candidate.address, "became the active instance");
        self.standing.send_replace(Standing::Active);
        self.leadership.send_replace(Some(Leadership {
            client: client.clone(),
            lease: lease.clone(),
        }));
    }

    fn follow(&self, lease: &mut Option<Lease>, standing: Standing) {
        if let Some(lease) = lease.take() {
            lease.revoke();
            self.leadership.send_replace(None);
            tracing::warn!(now = ?standing, "no longer the active instance");
        }
        self.standing.send_if_modified(|s| {
            let changed = *s != standing;
            *s = standing;
            changed
        });
    }

    /// Runs until `release` is cancelled; then gives the running node up gracefully and returns.
    pub async fn run(self, release: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        while !release.is_cancelled() {
            self.observe(ZooKeeperSession::Connecting);
            let client = tokio::select! {
                _ = release.cancelled() => break,
                c = crate::ha::zk::connect(&self.config) => c,
            };
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "ZooKeeper unavailable; not serving");
                    self.standing.send_replace(Standing::Unavailable(e.to_string()));
                    tokio::select! {
                        _ = release.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            backoff = Duration::from_secs(1);
            self.observe(client.state());
            tracing::info!(session = %client.session_id(), "connected to ZooKeeper");
            let end = self.session(&client, &release).await;
            // Whatever ended the session, this instance is no longer active.
            if let Some(leader) = self.leadership.send_replace(None) {
                leader.lease.revoke();
            }
            match end {
                SessionEnd::Stopped => break,
                SessionEnd::Lost(reason) => {
                    tracing::warn!(reason = %reason, "ZooKeeper session lost; reconnecting as a candidate");
                    self.standing.send_replace(Standing::Unavailable(reason));
                }
            }
        }
        self.standing.send_replace(Standing::Unavailable("stopped".into()));
        self.observe(ZooKeeperSession::Closed);
    }

    async fn register(&self, client: &zk::Client) -> Result<(), zk::Error> {
        for parent in &self.candidate.parents {
            ensure_path(client, parent).await?;
        }
        for member in &self.candidate.members {
            match client.create(member, b"", &ephemeral()).await {
                Ok(_) => {}
                // Left by our own expired session, which ZooKeeper is about to remove; recreate it.
                Err(zk::Error::NodeExists) => {
                    let _ = client.delete(member, None).await;
                    let _ = client.create(member, b"", &ephemeral()).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One ZooKeeper session: contend for the running node until the session ends or release is requested.
    async fn session(&self, client: &zk::Client, release: &CancellationToken) -> SessionEnd {
        let running = self.candidate.running.clone();
        let mine = serde_json::to_vec(&self.candidate.payload).unwrap_or_default();
        let session_timeout = self.session_timeout();
        let renew_every = session_timeout / 10;
        let mut states = client.state_watcher();
        let mut lease: Option<Lease> = None;
        // What the node held when we last saw it, to tell a graceful release from a crash.
        let mut last_seen: Option<ServerRunningData> = None;
        // Set when we gave the node up on request, so that we do not take it straight back.
        let mut stepped_down = false;

        if let Err(e) = self.register(client).await {
            return SessionEnd::Lost(format!("cannot register in ZooKeeper: {e}"));
        }
        loop {
            if release.is_cancelled() {
                return self.give_up(client, &mut lease, &last_seen).await;
            }
            match client.create(&running, &mine, &ephemeral()).await {
                Ok(_) => {}
                Err(zk::Error::NodeExists) => {}
                Err(zk::Error::NoNode) => {
                    let parent = running.rsplit_once('/').map_or("/", |(p, _)| p);
                    if let Err(e) = ensure_path(client, parent).await {
                        return SessionEnd::Lost(e.to_string());
                    }
                    continue;
                }
                Err(e) if is_terminal(&e) => return SessionEnd::Lost(e.to_string()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the running node; retrying");
                    self.follow(&mut lease, Standing::Unavailable(e.to_string()));
                    if let Some(end) = self.wait_for_connection(&mut states, release).await {
                        return end;
                    }
                    continue;
                }
            }
            let (data, stat, watcher) = match client.get_and_watch_data(&running).await {
                Ok(found) => found,
                // Vanished between create and read: contend again.
                Err(zk::Error::NoNode) => continue,
                Err(e) if is_terminal(&e) => return SessionEnd::Lost(e.to_string()),
                Err(e) => {
                    self.follow(&mut lease, Standing::Unavailable(e.to_string()));
                    if let Some(end) = self.wait_for_connection(&mut states, release).await {
                        return end;
                    }
                    continue;
                }
            };
            let owner = ServerRunningData::parse(&data);
            let ours = stat.ephemeral_owner == client.session_id().0;
            if ours && owner.as_ref().is_some_and(|o| !o.active) {
                tracing::info!("asked to step down (running node marked active:false); releasing");
                stepped_down = true;
                last_seen = owner;
                self.follow(&mut lease, Standing::Standby(None));
                let _ = client.delete(&running, None).await;
                // Give the standbys the node: contend again only after the failover delay, like everyone else.
                let delay = Duration::from_secs(self.config.failover_delay_seconds as u64);
                tokio::select! {
                    _ = release.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
            if ours {
                if lease.is_none() {
                    let fresh = Lease::new(session_timeout / 2);
                    self.lead(client, &fresh);
                    lease = Some(fresh);
                }
            } else {
                self.follow(&mut lease, Standing::Standby(owner.as_ref().map(|o| o.address.clone())));
            }
            last_seen = owner;

            let changed = watcher.changed();
            tokio::pin!(changed);
            let mut renew = tokio::time::interval(renew_every);
            loop {
                tokio::select! {
                    event = &mut changed => {
                        if event.event_type == zk::EventType::NodeDeleted {
                            let graceful = last_seen.as_ref().is_some_and(|o| !o.active);
                            // Ours by session, or by address (a node left by our own expired session; a consumer
                            // rewrites the address to its connection's, so the session is the reliable sign).
                            let was_ours = (ours
                                || last_seen.as_ref().is_some_and(|o| o.address == self.candidate.address))
                                && !stepped_down;
                            self.follow(&mut lease, Standing::Standby(None));
                            stepped_down = false;
                            if !graceful && !was_ours {
                                let delay = Duration::from_secs(self.config.failover_delay_seconds as u64);
                                tracing::info!(?delay, "the active instance vanished; waiting before taking over");
                                tokio::select! {
                                    _ = release.cancelled() => {}
                                    _ = tokio::time::sleep(delay) => {}
                                }
                            }
                        }
                        break;
                    }
                    state = states.changed() => match self.observed(state) {
                        zk::SessionState::Disconnected => {
                            self.follow(&mut lease, Standing::Unavailable("disconnected from ZooKeeper".into()));
                            if let Some(end) = self.wait_for_connection(&mut states, release).await {
                                return end;
                            }
                            break;
                        }
                        s if s.is_terminated() => return SessionEnd::Lost(format!("session {s:?}")),
                        _ => {}
                    },
                    _ = renew.tick(), if lease.is_some() => {
                        let sent = Instant::now();
                        match tokio::time::timeout(renew_every * 2, client.check_stat(&running)).await {
                            Ok(Ok(Some(stat))) if stat.ephemeral_owner == client.session_id().0 => {
                                if let Some(lease) = &lease {
                                    lease.renew(sent);
                                }
                            }
                            // Gone or owned by another session: the watcher fires next.
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) if is_terminal(&e) => return SessionEnd::Lost(e.to_string()),
                            Ok(Err(_)) | Err(_) => {}
                        }
                        if lease.as_ref().is_some_and(|l| !l.holds()) {
                            // No round trip for half the session timeout (or the process was paused): stop
                            // serving, then check the running node again before serving anew.
                            self.follow(&mut lease, Standing::Unavailable("lost contact with ZooKeeper".into()));
                            break;
                        }
                    }
                    _ = release.cancelled() => return self.give_up(client, &mut lease, &last_seen).await,
                }
            }
        }
    }

    /// Waits until the session is connected again. `Some` if it ended (or release was requested) instead.
    async fn wait_for_connection(
        &self,
        states: &mut zk::StateWatcher,
        release: &CancellationToken,
    ) -> Option<SessionEnd> {
        loop {
            let state = self.observed(states.peek_state());
            if state.is_terminated() {
                return Some(SessionEnd::Lost(format!("session {state:?}")));
            }
            if state == zk::SessionState::SyncConnected {
                return None;
            }
            tokio::select! {
                _ = release.cancelled() => return Some(SessionEnd::Stopped),
                _ = states.changed() => {}
            }
        }
    }

    /// Graceful release: mark the node released, then delete it, so a standby takes over without waiting.
    async fn give_up(
        &self,
        client: &zk::Client,
        lease: &mut Option<Lease>,
        last_seen: &Option<ServerRunningData>,
    ) -> SessionEnd {
        if lease.is_some() || last_seen.as_ref().is_some_and(|o| o.address == self.candidate.address) {
            let running = &self.candidate.running;
            if let Ok(Some(stat)) = client.check_stat(running).await
                && stat.ephemeral_owner == client.session_id().0
            {
                let mut payload = self.candidate.payload.clone();
                payload["active"] = serde_json::Value::Bool(false);
                let released = serde_json::to_vec(&payload).unwrap_or_default();
                let _ = client.set_data(running, &released, Some(stat.version)).await;
                let _ = client.delete(running, None).await;
                tracing::info!("released the running node for a standby");
            }
        }
        self.follow(lease, Standing::Unavailable("stopped".into()));
        SessionEnd::Stopped
    }
}

/// canal's `ClientRunningData`, keys in fastjson's (alphabetical) order.
pub fn client_running_data(address: &str, client_id: i16) -> serde_json::Value {
    serde_json::json!({"active": true, "address": address, "clientId": client_id})
}

fn is_terminal(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::SessionExpired | zk::Error::AuthFailed | zk::Error::ClientClosed | zk::Error::NoHosts
    )
}

/// The state of the election's ZooKeeper session, each state a case of its own (the metrics show it by name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZooKeeperSession {
    /// No session yet: connecting, or waiting to retry.
    #[default]
    Connecting,
    Connected,
    ConnectedReadOnly,
    /// The connection dropped; the session lives on until its timeout.
    Disconnected,
    Expired,
    AuthFailed,
    Closed,
}

impl ZooKeeperSession {
    pub const ALL: [ZooKeeperSession; 7] = [
        ZooKeeperSession::Connecting,
        ZooKeeperSession::Connected,
        ZooKeeperSession::ConnectedReadOnly,
        ZooKeeperSession::Disconnected,
        ZooKeeperSession::Expired,
        ZooKeeperSession::AuthFailed,
        ZooKeeperSession::Closed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ZooKeeperSession::Connecting => "connecting",
            ZooKeeperSession::Connected => "connected",
            ZooKeeperSession::ConnectedReadOnly => "connected_read_only",
            ZooKeeperSession::Disconnected => "disconnected",
            ZooKeeperSession::Expired => "expired",
            ZooKeeperSession::AuthFailed => "auth_failed",
            ZooKeeperSession::Closed => "closed",
        }
    }
}

impl From<zookeeper_client::SessionState> for ZooKeeperSession {
    fn from(state: zookeeper_client::SessionState) -> Self {
        use zookeeper_client::SessionState as S;
        match state {
            S::SyncConnected => ZooKeeperSession::Connected,
            S::ConnectedReadOnly => ZooKeeperSession::ConnectedReadOnly,
            S::Disconnected => ZooKeeperSession::Disconnected,
            S::Expired => ZooKeeperSession::Expired,
            S::AuthFailed => ZooKeeperSession::AuthFailed,
            S::Closed => ZooKeeperSession::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lapses_and_revokes() {
        let lease = Lease::new(Duration::from_millis(50));
        assert!(lease.holds());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!lease.holds(), "a pause longer than the lease ends it");
        lease.renew(Instant::now());
        assert!(lease.holds());
        lease.revoke();
        assert!(!lease.holds());
        lease.renew(Instant::now());
        assert!(!lease.holds(), "revocation is final");
    }
}
