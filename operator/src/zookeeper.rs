//! The operator's only use of ZooKeeper: deleting a destination's subtree under the `Delete` deletion policy. The
//! node layout comes from `canal_api::zk`, shared with canal-instance.

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
    canal_api::zk::connect(config).await.map_err(|e| ZkError::Connect {
        servers: e.servers,
        message: e.message,
    })
}

/// Deletes `path` and everything below it, deepest first; nodes that are already gone are fine.
pub async fn delete_recursive(client: &zk::Client, path: &str) -> Result<(), ZkError> {
    canal_api::zk::delete_recursive(client, path)
        .await
        .map_err(|source| ZkError::Delete {
            path: path.to_string(),
            source,
        })
}
