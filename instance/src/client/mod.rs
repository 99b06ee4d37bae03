//! A small canal client: the same protocol canal's Java, Go and Python clients speak, for the tail command, tests and
//! Rust consumers.

pub mod tail;

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::error::{Error, Result};
use crate::protocol::Entry;
use crate::protocol::packet::{self, Packet, PacketType};
use crate::protocol::{auth, frame};

/// Finds the address of the active server of `destination` from canal's running node in ZooKeeper, as canal's
/// `ClusterCanalConnector` does.
pub async fn running_server(zookeeper: &str, destination: &str) -> Result<String> {
    let config = canal_api::ZooKeeperConfig {
        servers: zookeeper.to_string(),
        session_timeout_seconds: 10,
        failover_delay_seconds: 5,
        cursor_flush_period_ms: 0,
    };
    let client = crate::ha::zk::connect(&config).await?;
    let running = crate::ha::zk::Paths::new(destination).running();
    let data = match client.get_data(&running).await {
        Ok((data, _)) => data,
        Err(zookeeper_client::Error::NoNode) => {
            return Err(Error::Protocol(format!(
                "no alive canal server for {destination} ({running} is absent)"
            )));
        }
        Err(e) => {
            return Err(Error::ZooKeeper {
                servers: zookeeper.to_string(),
                message: format!("read {running}: {e}"),
            });
        }
    };
    crate::ha::zk::ServerRunningData::parse(&data)
        .filter(|r| r.active)
        .map(|r| r.address)
        .ok_or_else(|| Error::Protocol(format!("no active canal server for {destination} in {running}")))
}

/// One batch received from the server; `batch_id` is -1 when there was nothing.
#[derive(Clone, Debug, Default)]
pub struct Message {
    pub batch_id: i64,
    pub entries: Vec<Entry>,
}

/// How long a get may wait on the server for a full batch.
#[derive(Clone, Copy, Debug)]
pub enum GetWait {
    /// Return at once (timeout -1).
    No,
    /// Wait for a full batch or this long.
    Up(Duration),
}

/// How long beyond its own wait a request may go unanswered before the server counts as gone.
pub const REPLY_MARGIN: Duration = Duration::from_secs(10);

/// A connected, authenticated client.
pub struct CanalClient {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
    destination: String,
    client_id: String,
}

fn request(packet_type: PacketType, body: impl prost::Message) -> Bytes {
    Packet {
        r#type: packet_type as i32,
        body: body.encode_to_vec().into(),
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

impl CanalClient {
    /// Connects to `address`, reads the handshake and authenticates.
    pub async fn connect(address: &str, username: &str, password: &str) -> Result<Self> {
        let socket = TcpStream::connect(address)
            .await
            .map_err(|e| Error::io(format!("cannot connect to canal server {address}"), e))?;
        socket.set_nodelay(true).map_err(|e| Error::io("set TCP_NODELAY", e))?;
        let mut client = Self {
            framed: Framed::new(socket, frame::codec(frame::MAX_RESPONSE_FRAME)),
            destination: String::new(),
            client_id: String::new(),
        };
        let handshake = client.read_within(Duration::ZERO).await?;
        if handshake.r#type != PacketType::Handshake as i32 {
            return Err(Error::Protocol(format!(
                "expected HANDSHAKE, got packet type {}",
                handshake.r#type
            )));
        }
        let hello = packet::Handshake::decode(handshake.body).map_err(|e| Error::Protocol(e.to_string()))?;
        let auth = packet::ClientAuth {
            username: username.to_string(),
            password: Bytes::from(auth::scramble(password, &hello.seeds)),
            ..Default::default()
        };
        client.send(request(PacketType::Clientauthentication, auth)).await?;
        client.expect_ack().await?;
        Ok(client)
    }

    async fn send(&mut self, bytes: Bytes) -> Result<()> {
        self.framed
            .send(bytes)
            .await
            .map_err(|e| Error::io("cannot send to canal server", e))
    }

    /// Reads the next packet, allowing [`REPLY_MARGIN`] beyond `wait` (the time the server may hold a GET). A server
    /// that is paused or cut off never closes the connection; the deadline is what lets a client move on.
    async fn read_within(&mut self, wait: Duration) -> Result<Packet> {
        let deadline = wait + REPLY_MARGIN;
        let frame = tokio::time::timeout(deadline, self.framed.next())
            .await
            .map_err(|_| Error::Protocol(format!("no reply from the canal server within {deadline:?}")))?
            .ok_or_else(|| Error::Protocol("the server closed the connection".into()))?
            .map_err(|e| Error::io("cannot read from canal server", e))?;
        let packet = Packet::decode(frame.freeze()).map_err(|e| Error::Protocol(e.to_string()))?;
        if packet.r#type == PacketType::Ack as i32 {
            let ack = packet::Ack::decode(packet.body.clone()).map_err(|e| Error::Protocol(e.to_string()))?;
            if let Some(packet::ack::ErrorCodePresent::ErrorCode(code)) = ack.error_code_present
                && code != 0
            {
                return Err(Error::Server {
                    code,
                    message: ack.error_message,
                });
            }
        }
        Ok(packet)
    }

    async fn expect_ack(&mut self) -> Result<()> {
        let packet = self.read_within(Duration::ZERO).await?;
        if packet.r#type != PacketType::Ack as i32 {
            return Err(Error::Protocol(format!(
                "expected ACK, got packet type {}",
                packet.r#type
            )));
        }
        Ok(())
    }

    /// Subscribes to `destination` as `client_id`. A non-empty filter replaces the server's include list.
    pub async fn subscribe(&mut self, destination: &str, client_id: &str, filter: &str) -> Result<()> {
        self.destination = destination.to_string();
        self.client_id = client_id.to_string();
        let sub = packet::Sub {
            destination: destination.into(),
            client_id: client_id.into(),
            filter: filter.into(),
        };
        self.send(request(PacketType::Subscription, sub)).await?;
        self.expect_ack().await
    }

    /// The local address of the connection to the server (what canal's client running node shows).
    pub fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.framed.get_ref().local_addr().ok()
    }

    /// Uses a subscription made earlier (subscriptions persist on the server) without subscribing again.
    pub fn resume_subscription(&mut self, destination: &str, client_id: &str) {
        self.destination = destination.to_string();
        self.client_id = client_id.to_string();
    }

    pub async fn unsubscribe(&mut self) -> Result<()> {
        let unsub = packet::Unsub {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            filter: String::new(),
        };
        self.send(request(PacketType::Unsubscription, unsub)).await?;
        self.expect_ack().await
    }

    /// Fetches the next batch without acknowledging it. `fetch_size` counts entries or memory units, as the
    /// server's batch mode says.
    pub async fn get_without_ack(&mut self, fetch_size: i32, wait: GetWait) -> Result<Message> {
        let (timeout, unit) = match wait {
            GetWait::No => (-1, 2),
            GetWait::Up(d) => (d.as_millis().max(1) as i64, 2),
        };
        let get = packet::Get {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            fetch_size,
            timeout_present: Some(packet::get::TimeoutPresent::Timeout(timeout)),
            unit_present: Some(packet::get::UnitPresent::Unit(unit)),
            auto_ack_present: Some(packet::get::AutoAckPresent::AutoAck(false)),
        };
        self.send(request(PacketType::Get, get)).await?;
        let held = match wait {
            GetWait::No => Duration::ZERO,
            GetWait::Up(d) => d,
        };
        let packet = self.read_within(held).await?;
        if packet.r#type != PacketType::Messages as i32 {
            return Err(Error::Protocol(format!(
                "expected MESSAGES, got packet type {}",
                packet.r#type
            )));
        }
        let messages = packet::Messages::decode(packet.body).map_err(|e| Error::Protocol(e.to_string()))?;
        let entries = messages
            .messages
            .into_iter()
            .map(Entry::decode)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Protocol(format!("undecodable entry: {e}")))?;
        Ok(Message {
            batch_id: messages.batch_id,
            entries,
        })
    }

    /// Acknowledges a batch. The server does not answer a successful ack; a refusal surfaces as the error of the
    /// next request, exactly as with canal's own clients.
    pub async fn ack(&mut self, batch_id: i64) -> Result<()> {
        let ack = packet::ClientAck {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            batch_id,
        };
        self.send(request(PacketType::Clientack, ack)).await
    }

    /// Rolls back one batch, or all of them for 0. Like ack, success has no reply.
    pub async fn rollback(&mut self, batch_id: i64) -> Result<()> {
        let rollback = packet::ClientRollback {
            destination: self.destination.clone(),
            client_id: self.client_id.clone(),
            batch_id,
        };
        self.send(request(PacketType::Clientrollback, rollback)).await
    }
}

/// A client of a ZooKeeper-coordinated destination: it finds the active server through canal's running node and,
/// when a request fails (the server stopped, crashed or stepped down), reconnects to whichever server is active,
/// subscribes again and rolls back, so every unacknowledged batch is delivered again (at least once).
pub struct ClusterClient {
    /// ZooKeeper to find the active server in, or `None` with a fixed `server`.
    zookeeper: Option<String>,
    server: String,
    destination: String,
    client_id: String,
    filter: String,
    username: String,
    password: String,
    /// Attempts per request, one `retry_delay` apart, before the error is returned.
    pub attempts: u32,
    pub retry_delay: Duration,
    connected: Option<CanalClient>,
}

impl ClusterClient {
    pub fn new(zookeeper: &str, destination: &str, client_id: &str, filter: &str) -> Self {
        Self {
            zookeeper: Some(zookeeper.into()),
            server: String::new(),
            destination: destination.into(),
            client_id: client_id.into(),
            filter: filter.into(),
            username: String::new(),
            password: String::new(),
            attempts: 30,
            retry_delay: Duration::from_secs(1),
            connected: None,
        }
    }

    /// A client of one fixed server (no ZooKeeper), with the same reconnecting behaviour.
    pub fn direct(server: &str, destination: &str, client_id: &str, filter: &str) -> Self {
        Self {
            zookeeper: None,
            server: server.into(),
            ..Self::new("", destination, client_id, filter)
        }
    }

    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.username = username.into();
        self.password = password.into();
        self
    }

    /// Connects to the active server, subscribes and rolls back, unless already connected.
    async fn connect(&mut self) -> Result<&mut CanalClient> {
        if self.connected.is_none() {
            let server = match &self.zookeeper {
                Some(zookeeper) => running_server(zookeeper, &self.destination).await?,
                None => self.server.clone(),
            };
            let mut client = CanalClient::connect(&server, &self.username, &self.password).await?;
            client
                .subscribe(&self.destination, &self.client_id, &self.filter)
                .await?;
            // Whatever an earlier connection fetched but did not acknowledge comes again.
            client.rollback(0).await?;
            tracing::info!(server = %server, destination = %self.destination, "connected to the active server");
            self.connected = Some(client);
        }
        self.connected
            .as_mut()
            .ok_or_else(|| Error::Protocol("not connected".into()))
    }

    /// Fetches the next batch, reconnecting to the active server as needed.
    pub async fn get_without_ack(&mut self, fetch_size: i32, wait: GetWait) -> Result<Message> {
        let mut attempt = 0;
        loop {
            let result = match self.connect().await {
                Ok(client) => client.get_without_ack(fetch_size, wait).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(message) => return Ok(message),
                // Authentication failures do not heal by retrying.
                Err(e @ Error::Server { .. }) if e.to_string().contains("auth failed") => return Err(e),
                Err(e) => {
                    self.connected = None;
                    attempt += 1;
                    if attempt >= self.attempts {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, attempt, "request failed; reconnecting to the active server");
                    tokio::time::sleep(self.retry_delay).await;
                }
            }
        }
    }

    /// Drops the connection; the next request reconnects (and rolls back).
    pub fn disconnect(&mut self) {
        self.connected = None;
    }

    /// The local address of the current connection, if connected.
    pub fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.connected.as_ref().and_then(CanalClient::local_address)
    }

    /// Acknowledges a batch on the current connection. If the connection is gone, the batch is not acknowledged
    /// and comes again after the reconnect's rollback.
    pub async fn ack(&mut self, batch_id: i64) -> Result<()> {
        let Some(client) = self.connected.as_mut() else {
            return Ok(());
        };
        if let Err(e) = client.ack(batch_id).await {
            self.connected = None;
            tracing::warn!(error = %e, batch_id, "ack not delivered; the batch will come again");
        }
        Ok(())
    }
}

/// One of several replicas consuming the same client id, as canal's ClientRunningMonitor does it: only the replica
/// holding `{destination}/{clientId}/running` in ZooKeeper fetches; the others wait and take over when it goes away.
/// A replica that loses the node (or its session, or its lease) drops its connection before another may fetch, so
/// its unacknowledged batches are rolled back and fetched by the new active replica.
pub struct HaConsumer {
    client: ClusterClient,
    leadership: tokio::sync::watch::Receiver<Option<crate::ha::Leadership>>,
    /// The leadership this replica currently fetches under.
    active: Option<crate::ha::Leadership>,
    running: String,
    client_id: i16,
    /// Whether the running node already shows this connection's local address.
    announced: bool,
    release: tokio_util::sync::CancellationToken,
    election: tokio::task::JoinHandle<()>,
}

impl HaConsumer {
    /// Joins the consumers' election of `client_id`; `client` is how to reach the servers.
    pub fn start(
        zookeeper: canal_api::ZooKeeperConfig,
        client: ClusterClient,
        destination: &str,
        client_id: i16,
    ) -> Self {
        let host = std::env::var("POD_IP").unwrap_or_else(|_| "127.0.0.1".into());
        let election = crate::ha::Election::for_client(zookeeper, destination, client_id, host);
        let leadership = election.leadership();
        let release = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(election.run(release.clone()));
        Self {
            client,
            leadership,
            active: None,
            running: crate::ha::zk::Paths::new(destination).client_running(client_id),
            client_id,
            announced: false,
            release,
            election: task,
        }
    }

    fn holds(&self) -> bool {
        self.active.as_ref().is_some_and(|l| l.lease.holds())
    }

    /// Waits until this replica is the active consumer.
    async fn ensure_active(&mut self) -> Result<()> {
        loop {
            let current = self.leadership.borrow_and_update().clone();
            match current {
                Some(leader) if leader.lease.holds() => {
                    if self.active.is_none() {
                        tracing::info!(client_id = self.client_id, "became the active consumer");
                        self.client.disconnect();
                        self.announced = false;
                    }
                    self.active = Some(leader);
                    return Ok(());
                }
                _ => {
                    if self.active.take().is_some() {
                        tracing::warn!(
                            client_id = self.client_id,
                            "no longer the active consumer; stopped fetching"
                        );
                        self.client.disconnect();
                    }
                    self.leadership
                        .changed()
                        .await
                        .map_err(|_| Error::Protocol("the consumer election stopped".into()))?;
                }
            }
        }
    }

    /// Shows the connection's local address in the running node, as canal's client does once connected.
    async fn announce(&mut self) {
        let (Some(leader), Some(local)) = (self.active.as_ref(), self.client.local_address()) else {
            return;
        };
        let data = crate::ha::election::client_running_data(&local.to_string(), self.client_id);
        let Ok(Some(stat)) = leader.client.check_stat(&self.running).await else {
            return;
        };
        if stat.ephemeral_owner == leader.client.session_id().0 {
            let bytes = serde_json::to_vec(&data).unwrap_or_default();
            self.announced = leader
                .client
                .set_data(&self.running, &bytes, Some(stat.version))
                .await
                .is_ok();
        }
    }

    /// Fetches the next batch once this replica is the active consumer. A batch fetched while the replica lost
    /// the election is dropped (it comes again to the new active consumer) and an empty batch is returned.
    pub async fn get_without_ack(&mut self, fetch_size: i32, wait: GetWait) -> Result<Message> {
        self.ensure_active().await?;
        let message = self.client.get_without_ack(fetch_size, wait).await?;
        if !self.holds() {
            self.client.disconnect();
            return Ok(Message {
                batch_id: -1,
                entries: Vec::new(),
            });
        }
        if !self.announced {
            self.announce().await;
        }
        Ok(message)
    }

    /// Acknowledges a batch, only while still the active consumer.
    pub async fn ack(&mut self, batch_id: i64) -> Result<()> {
        if self.holds() {
            self.client.ack(batch_id).await
        } else {
            self.client.disconnect();
            Ok(())
        }
    }

    /// Leaves the election gracefully: another replica takes over at once.
    pub async fn close(mut self) {
        self.client.disconnect();
        self.release.cancel();
        let _ = (&mut self.election).await;
    }
}
