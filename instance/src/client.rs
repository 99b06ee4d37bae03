//! A small canal client: the same protocol canal's Java, Go and Python clients speak, for the tail command, tests and
//! Rust consumers.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::error::{Error, Result};
use crate::proto::Entry;
use crate::proto::packet::{self, Packet, PacketType};
use crate::server::{auth, frame};

/// Finds the address of the active server of `destination` from canal's running node in ZooKeeper, as canal's
/// `ClusterCanalConnector` does.
pub async fn running_server(zookeeper: &str, destination: &str) -> Result<String> {
    let config = canal_api::ZooKeeperConfig {
        servers: zookeeper.to_string(),
        session_timeout_seconds: 10,
        failover_delay_seconds: 5,
        cursor_flush_period_ms: 0,
    };
    let client = crate::zk::connect(&config).await?;
    let running = crate::zk::Paths::new(destination).running();
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
    crate::zk::ServerRunningData::parse(&data)
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
        let handshake = client.read().await?;
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

    async fn read(&mut self) -> Result<Packet> {
        let frame = self
            .framed
            .next()
            .await
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
        let packet = self.read().await?;
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
        let packet = self.read().await?;
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
    zookeeper: String,
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
            zookeeper: zookeeper.into(),
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

    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.username = username.into();
        self.password = password.into();
        self
    }

    /// Connects to the active server, subscribes and rolls back, unless already connected.
    async fn connect(&mut self) -> Result<&mut CanalClient> {
        if self.connected.is_none() {
            let server = running_server(&self.zookeeper, &self.destination).await?;
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
