//! canal's TCP protocol server: accepts client connections and runs one [`session`] per connection.
//!
//! [`frame`] is the wire framing and packet builders, [`auth`] the password scramble, [`session`] the per-connection
//! request loop that calls into the [`Destination`](crate::instance::Destination).

pub mod auth;
pub mod frame;
pub mod session;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::instance::Destination;

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
                let session = session::Session::new(destination.clone(), auth.clone(), peer);
                sessions.spawn(session.run(socket, shutdown.clone()));
            }
            Err(e) => {
                // Usually a transient resource limit (EMFILE); back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}
