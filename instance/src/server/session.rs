//! One client connection: handshake, authentication, then canal's request/response loop.
//!
//! Replies follow canal: success of SUBSCRIPTION/UNSUBSCRIPTION is an empty Ack, GET answers MESSAGES, and a
//! successful CLIENTACK or CLIENTROLLBACK gets no reply at all. Failures get an error Ack (400/401/402) and the
//! connection stays open, except for bytes that are not a canal packet, after which the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use prost::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::codec::LengthDelimitedCodec;
use tokio_util::sync::CancellationToken;

use super::ServerAuth;
use crate::observe::metrics::RequestOutcome;
use crate::protocol::packet::{self, Packet, PacketType};
use crate::protocol::{auth, frame};
use crate::server::consumers::Connection;
use crate::server::destination::{Destination, Refused};
use crate::store::{Batch, Wait};

/// canal's default idle timeout when the client does not send one (milliseconds).
const DEFAULT_IDLE_MS: u64 = 3_600_000;
/// Until a client has authenticated it gets little: a short time to do so and small frames.
const UNAUTHENTICATED_IDLE: Duration = Duration::from_secs(30);
const UNAUTHENTICATED_MAX_FRAME: usize = 64 * 1024;

/// What the connection does after handling one packet.
enum Next {
    Continue,
    Close,
}

pub struct Session {
    destination: Arc<Destination>,
    auth: Arc<ServerAuth>,
    peer: SocketAddr,
    /// This connection in the destination's consumer registry.
    connection: Connection,
    /// A request that arrived while a GET was waiting (canal's clients never pipeline, but nothing forbids it).
    pending: Option<BytesMut>,
    seed: [u8; 8],
    authenticated: bool,
    idle: Duration,
}

/// Error code and message of a refused request, and whether the refusal is routine (logged at debug level).
struct Reply {
    code: i32,
    message: String,
    routine: bool,
}

impl Reply {
    fn error(code: i32, message: impl Into<String>) -> Self {
        Reply {
            code,
            message: message.into(),
            routine: false,
        }
    }
}

/// The request being answered, for the metrics.
#[derive(Clone, Copy)]
struct Request {
    packet_type: i32,
    started: Instant,
}

fn bad_request(message: impl Into<String>) -> Reply {
    Reply::error(400, message)
}

fn decode_error(what: &str, e: prost::DecodeError) -> Reply {
    bad_request(format!("malformed {what}: {e}"))
}

fn refused(e: Refused) -> Reply {
    Reply {
        code: 400,
        message: e.to_string(),
        routine: e.is_routine(),
    }
}

impl Session {
    pub fn new(destination: Arc<Destination>, auth: Arc<ServerAuth>, peer: SocketAddr) -> Self {
        let connection = destination.connect(peer);
        Self {
            destination,
            auth,
            peer,
            connection,
            pending: None,
            seed: rand::random(),
            authenticated: false,
            idle: UNAUTHENTICATED_IDLE,
        }
    }

    pub async fn run(mut self, socket: TcpStream, shutdown: CancellationToken) {
        let mut framed = Framed::new(socket, frame::codec(UNAUTHENTICATED_MAX_FRAME));
        tracing::debug!(peer = %self.peer, "client connected");
        if framed.send(frame::handshake(&self.seed)).await.is_err() {
            return;
        }
        loop {
            let read = match self.pending.take() {
                Some(bytes) => Ok(Some(Ok(bytes))),
                None => tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = self.connection.evicted.cancelled() => {
                        self.log_eviction();
                        break;
                    }
                    read = tokio::time::timeout(self.idle, framed.next()) => read,
                },
            };
            let bytes = match read {
                Err(_) => {
                    tracing::info!(peer = %self.peer, idle = ?self.idle, "closing idle client connection");
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    // Oversized or truncated frames: nothing sensible can follow on this stream.
                    tracing::warn!(peer = %self.peer, error = %e, "closing connection: unreadable frame");
                    break;
                }
                Ok(Some(Ok(bytes))) => bytes.freeze(),
            };
            match self.handle(&mut framed, bytes).await {
                Ok(Next::Continue) => {}
                Ok(Next::Close) | Err(_) => break,
            }
        }
        self.destination.disconnect(&self.connection);
        tracing::debug!(peer = %self.peer, "client disconnected");
    }

    fn log_eviction(&self) {
        tracing::warn!(
            peer = %self.peer,
            "closing the connection: client HA made another consumer of its clientId active"
        );
    }

    /// Waits for a GET's batch while watching the connection: a client that closes (or is evicted) meanwhile gives
    /// up its client id at once instead of when the GET would have ended.
    async fn get(
        &mut self,
        framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
        get: packet::Get,
    ) -> Result<Option<Result<Batch, Reply>>, std::io::Error> {
        let client_id = match self.client_id(&get.destination, &get.client_id, "Get") {
            Ok(id) => id,
            Err(reply) => return Ok(Some(Err(reply))),
        };
        let destination = self.destination.clone();
        let batch = destination.get(&self.connection, client_id, get.fetch_size, wait_of(&get));
        tokio::pin!(batch);
        loop {
            tokio::select! {
                biased;
                _ = self.connection.evicted.cancelled() => {
                    self.log_eviction();
                    return Ok(None);
                }
                batch = &mut batch => {
                    return Ok(Some(batch.map_err(refused)));
                }
                read = framed.next(), if self.pending.is_none() => match read {
                    Some(Ok(bytes)) => self.pending = Some(bytes),
                    Some(Err(e)) => return Err(e),
                    None => {
                        tracing::debug!(peer = %self.peer, "client closed the connection during a GET");
                        return Ok(None);
                    }
                },
            }
        }
    }

    async fn handle(
        &mut self,
        framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
        bytes: Bytes,
    ) -> std::io::Result<Next> {
        let started = Instant::now();
        let packet = match Packet::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "closing connection: not a canal packet");
                self.destination
                    .counters
                    .request(-1, RequestOutcome::Refused(400), started.elapsed());
                framed
                    .send(frame::error(400, &format!("malformed packet: {e}")))
                    .await?;
                return Ok(Next::Close);
            }
        };
        let request = Request {
            packet_type: packet.r#type,
            started,
        };
        let reply = if self.authenticated && packet.r#type == PacketType::Get as i32 {
            let get = match packet::Get::decode(packet.body) {
                Ok(get) => get,
                Err(e) => return self.send_reply(framed, request, Err(decode_error("Get", e))).await,
            };
            match self.get(framed, get).await? {
                Some(Ok(batch)) => {
                    let empty = batch.id == -1;
                    let frame = frame::messages_frame(batch.id, &batch.entries);
                    drop(batch);
                    let outcome = if empty {
                        RequestOutcome::EmptyBatch(frame.len())
                    } else {
                        RequestOutcome::Replied(frame.len())
                    };
                    // Counted before the write, so that whoever has the reply also finds it counted.
                    self.destination
                        .counters
                        .request(request.packet_type, outcome, started.elapsed());
                    // The frame is complete, length prefix included: it goes to the socket as it is rather than
                    // through the codec's buffer, which would copy the whole batch once more.
                    SinkExt::<Bytes>::flush(framed).await?;
                    framed.get_mut().write_all(&frame).await?;
                    return Ok(Next::Continue);
                }
                Some(Err(reply)) => Err(reply),
                None => return Ok(Next::Close),
            }
        } else if self.authenticated {
            self.request(packet).await
        } else {
            // canal parses the first packet after the handshake as ClientAuth whatever its type says.
            let reply = self.authenticate(&packet.body).await;
            if self.authenticated {
                framed.codec_mut().set_max_frame_length(frame::MAX_REQUEST_FRAME);
            }
            reply
        };
        self.send_reply(framed, request, reply).await
    }

    async fn send_reply(
        &self,
        framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
        request: Request,
        reply: Result<Option<Bytes>, Reply>,
    ) -> std::io::Result<Next> {
        // Counted before the write, so that whoever has the reply also finds it counted.
        let count = |outcome| {
            self.destination
                .counters
                .request(request.packet_type, outcome, request.started.elapsed())
        };
        match reply {
            Ok(Some(response)) => {
                count(RequestOutcome::Replied(response.len()));
                framed.send(response).await?;
            }
            Ok(None) => count(RequestOutcome::Replied(0)),
            Err(Reply { code, message, routine }) => {
                if routine {
                    tracing::debug!(peer = %self.peer, code, error = %message, "request refused");
                } else {
                    tracing::warn!(peer = %self.peer, code, error = %message, "request refused");
                }
                count(RequestOutcome::Refused(code));
                framed.send(frame::error(code, &message)).await?;
            }
        }
        Ok(Next::Continue)
    }

    async fn authenticate(&mut self, body: &[u8]) -> Result<Option<Bytes>, Reply> {
        let request =
            packet::ClientAuth::decode(body).map_err(|e| bad_request(format!("malformed ClientAuth: {e}")))?;
        let user_ok = self.auth.username.is_empty() || self.auth.username == request.username;
        let password_ok = match &self.auth.password_hash {
            None => true,
            Some(_) if request.password.is_empty() => false,
            Some(stored) => auth::verify(stored, &self.seed, &request.password),
        };
        if !(user_ok && password_ok) {
            return Err(bad_request(format!("auth failed for user:{}", request.username)));
        }
        self.authenticated = true;
        let idle_ms = |t: Option<i32>| t.filter(|ms| *ms > 0).map_or(DEFAULT_IDLE_MS, |ms| ms as u64);
        let read = idle_ms(
            request
                .net_read_timeout_present
                .map(|packet::client_auth::NetReadTimeoutPresent::NetReadTimeout(t)| t),
        );
        let write = idle_ms(
            request
                .net_write_timeout_present
                .map(|packet::client_auth::NetWriteTimeoutPresent::NetWriteTimeout(t)| t),
        );
        self.idle = Duration::from_millis(read.min(write));
        tracing::info!(peer = %self.peer, user = %request.username, "client authenticated");
        if !request.destination.is_empty() && !request.client_id.is_empty() {
            let client_id = self.client_id(&request.destination, &request.client_id, "ClientAuth")?;
            self.destination
                .subscribe(&self.connection, client_id, &request.filter)
                .await
                .map_err(refused)?;
        }
        Ok(Some(frame::ok()))
    }

    /// Checks the destination and parses the client id as canal does (a Java short).
    fn client_id(&self, destination: &str, client_id: &str, what: &str) -> Result<i16, Reply> {
        if destination.is_empty() || client_id.is_empty() {
            return Err(Reply::error(401, format!("destination or clientId is null. {what}")));
        }
        if destination != self.destination.name {
            return Err(bad_request(format!("can't find destination:{destination}")));
        }
        client_id.parse::<i16>().map_err(|_| {
            bad_request(format!(
                "clientId `{client_id}` is not a number between -32768 and 32767"
            ))
        })
    }

    async fn request(&mut self, packet: Packet) -> Result<Option<Bytes>, Reply> {
        match PacketType::try_from(packet.r#type) {
            Ok(PacketType::Subscription) => {
                let sub = packet::Sub::decode(packet.body).map_err(|e| decode_error("Sub", e))?;
                let client_id = self.client_id(&sub.destination, &sub.client_id, "Sub")?;
                self.destination
                    .subscribe(&self.connection, client_id, &sub.filter)
                    .await
                    .map_err(refused)?;
                Ok(Some(frame::ok()))
            }
            Ok(PacketType::Unsubscription) => {
                let unsub = packet::Unsub::decode(packet.body).map_err(|e| decode_error("Unsub", e))?;
                let client_id = self.client_id(&unsub.destination, &unsub.client_id, "Unsub")?;
                self.destination
                    .unsubscribe(&self.connection, client_id)
                    .await
                    .map_err(refused)?;
                Ok(Some(frame::ok()))
            }
            Ok(PacketType::Clientack) => {
                let ack = packet::ClientAck::decode(packet.body).map_err(|e| decode_error("ClientAck", e))?;
                let client_id = self.client_id(&ack.destination, &ack.client_id, "ClientAck")?;
                match ack.batch_id {
                    -1 => {}
                    0 => return Err(Reply::error(402, "batchId should assign value. Ack: batchId 0")),
                    id => self
                        .destination
                        .ack(&self.connection, client_id, id)
                        .await
                        .map_err(refused)?,
                }
                Ok(None)
            }
            Ok(PacketType::Clientrollback) => {
                let rollback =
                    packet::ClientRollback::decode(packet.body).map_err(|e| decode_error("ClientRollback", e))?;
                let client_id = self.client_id(&rollback.destination, &rollback.client_id, "ClientRollback")?;
                self.destination
                    .rollback(&self.connection, client_id, rollback.batch_id)
                    .await
                    .map_err(refused)?;
                Ok(None)
            }
            Ok(other) => Err(bad_request(format!(
                "packet type: {} is NOT supported!",
                other.as_str_name()
            ))),
            Err(_) => Err(bad_request(format!("packet type: {} is NOT supported!", packet.r#type))),
        }
    }
}

/// canal's GET timeout rules: -1 returns at once, absent or other non-positive values wait for a full batch, and a
/// positive value waits at most that long in `unit` (absent unit = nanoseconds, unknown unit = milliseconds).
fn wait_of(get: &packet::Get) -> Wait {
    let timeout = get
        .timeout_present
        .as_ref()
        .map(|packet::get::TimeoutPresent::Timeout(t)| *t)
        .unwrap_or(0);
    if timeout == -1 {
        return Wait::No;
    }
    if timeout <= 0 {
        return Wait::Forever;
    }
    let unit = get
        .unit_present
        .as_ref()
        .map(|packet::get::UnitPresent::Unit(u)| *u)
        .unwrap_or(0);
    let t = timeout as u64;
    Wait::Up(match unit {
        0 => Duration::from_nanos(t),
        1 => Duration::from_micros(t),
        3 => Duration::from_secs(t),
        4 => Duration::from_secs(t.saturating_mul(60)),
        5 => Duration::from_secs(t.saturating_mul(3600)),
        6 => Duration::from_secs(t.saturating_mul(86_400)),
        _ => Duration::from_millis(t),
    })
}
