//! canal's TCP protocol server: accepts client connections and runs one [`session`] per connection.
//!
//! [`session`] is the per-connection request loop (the wire format itself is in [`crate::protocol`]); it calls into
//! the [`Destination`](crate::server::destination::Destination). [`consumers`] admits one connection per client id.

pub mod consumers;
pub mod destination;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::server::destination::Destination;

const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Who may connect.
#[derive(Clone, Debug, Default)]
pub struct ServerAuth {
    /// Required user name; empty accepts any.
    pub username: String,
    /// `SHA1(SHA1(password))`; `None` accepts any password.
    pub password_hash: Option<[u8; 20]>,
}

/// Accepts connections until `shutdown`, then waits for every session to finish its current request.
pub async fn serve(
    listener: TcpListener,
    destination: Arc<Destination>,
    auth: ServerAuth,
    shutdown: CancellationToken,
) {
    let auth = Arc::new(auth);
    let mut sessions = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
            // Reap finished sessions so the set does not grow with every connection ever made.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        match accepted {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                // A consumer whose host vanished never closes its connection; keepalive notices, so that its
                // client id is freed for a replacement within about a minute instead of never.
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL)
                    .with_retries(KEEPALIVE_RETRIES);
                if let Err(e) = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive) {
                    tracing::debug!(peer = %peer, error = %e, "cannot enable TCP keepalive");
                }
                let session = session::Session::new(destination.clone(), auth.clone(), peer);
                sessions.spawn(session.run(socket, shutdown.clone()));
            }
            Err(e) => {
                // Usually a transient resource limit (EMFILE); back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}
