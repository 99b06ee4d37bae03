//! The operator's only use of ZooKeeper: deleting a destination's subtree under the `Delete` deletion policy. The
//! node layout comes from `canal_api::zk`, shared with canal-instance.

use std::time::Duration;

use canal_api::ZooKeeperConfig;
use zookeeper_client as zk;

/// Why the ZooKeeper data could not be deleted; the message names the servers and what to check.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    #[error("ZooKeeper {servers}: {message}")]
    Connect { servers: String, message: String },
    #[error("ZooKeeper: delete {path}: {source}")]
    Delete {
        path: String,
        #[source]
        source: zk::Error,
    },
}

/// Connects to the ensemble `config.servers` names, under its chroot if it has one.
pub async fn connect(config: &ZooKeeperConfig) -> Result<zk::Client, ZkError> {
    let servers = config.servers.trim();
    let fail = |message: String| ZkError::Connect {
        servers: servers.to_string(),
        message,
    };
    let (hosts, chroot) = match servers.find('/') {
        Some(i) => (&servers[..i], Some(&servers[i..])),
        None => (servers, None),
    };
    if hosts.is_empty() {
        return Err(fail(
            "no address; set zookeeper.servers to host:port[,host:port...]".into(),
        ));
    }
    let session_timeout = Duration::from_secs(u64::from(config.session_timeout_seconds.max(2)));
    let connecting = zk::Client::connector()
        .with_session_timeout(session_timeout)
        .with_connection_timeout(session_timeout / 4)
        .with_fail_eagerly()
        .connect(hosts);
    // Without the outer timeout an unreachable ensemble would hold the finalizer's reconcile forever.
    let client = match tokio::time::timeout(session_timeout, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(fail(format!("cannot connect ({e}); check that the ensemble is up"))),
        Err(_) => return Err(fail(format!("no server answered within {session_timeout:?}"))),
    };
    match chroot {
        None => Ok(client),
        Some(chroot) => client
            .chroot(chroot.to_string())
            .map_err(|_| fail(format!("invalid chroot {chroot}"))),
    }
}

/// Deletes `path` and everything below it, deepest first; nodes that are already gone are fine.
pub async fn delete_recursive(client: &zk::Client, path: &str) -> Result<(), ZkError> {
    let failed = |source| ZkError::Delete {
        path: path.to_string(),
        source,
    };
    let mut pending = vec![path.to_string()];
    let mut found = Vec::new();
    while let Some(node) = pending.pop() {
        match client.list_children(&node).await {
            Ok(children) => pending.extend(children.into_iter().map(|c| format!("{node}/{c}"))),
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(failed(e)),
        }
        found.push(node);
    }
    // Parents were found before their children, so the reverse order deletes leaves first.
    for node in found.iter().rev() {
        match client.delete(node, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(())
}
