//! canal's ZooKeeper layout (node paths and JSON), and connecting to ZooKeeper with errors a user can act on.

use canal_api::ZooKeeperConfig;
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::error::{Error, Result};

pub use canal_api::zk::{Paths, ROOT, delete_recursive};

/// canal's `ServerRunningData`, the content of the running node. Keys are in fastjson's (alphabetical) order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRunningData {
    pub active: bool,
    pub address: String,
    /// Deprecated; older canal servers wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<i64>,
}

impl ServerRunningData {
    pub fn new(address: &str, active: bool) -> Self {
        Self {
            active,
            address: address.to_string(),
            cid: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

pub fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

pub fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

/// Creates `path` and its parents; an existing node is fine.
pub async fn ensure_path(client: &zk::Client, path: &str) -> std::result::Result<(), zk::Error> {
    match client.mkdir(path, &persistent()).await {
        Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets a persistent node's data, creating the node (and its parents) when missing.
pub async fn put(client: &zk::Client, path: &str, data: &[u8]) -> std::result::Result<(), zk::Error> {
    loop {
        match client.set_data(path, data, None).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        if let Some((parent, _)) = path.rsplit_once('/')
            && !parent.is_empty()
        {
            ensure_path(client, parent).await?;
        }
        match client.create(path, data, &persistent()).await {
            Ok(_) => return Ok(()),
            // Someone created it meanwhile: set it on the next round.
            Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Connects to the ensemble. A chroot in `servers` must exist; wrong addresses fail within the session timeout.
pub async fn connect(config: &ZooKeeperConfig) -> Result<zk::Client> {
    canal_api::zk::connect(config).await.map_err(|e| Error::ZooKeeper {
        servers: e.servers,
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_json_match_canal() {
        let p = Paths::new("example");
        assert_eq!(p.running(), "/otter/canal/destinations/example/running");
        assert_eq!(
            p.destination_member("10.0.0.1:11111"),
            "/otter/canal/destinations/example/cluster/10.0.0.1:11111"
        );
        assert_eq!(
            Paths::server_member("10.0.0.1:11111"),
            "/otter/canal/cluster/10.0.0.1:11111"
        );
        assert_eq!(p.cursor(1001), "/otter/canal/destinations/example/1001/cursor");
        assert_eq!(p.filter(1001), "/otter/canal/destinations/example/1001/filter");
        let data = ServerRunningData::new("10.0.0.1:11111", true);
        assert_eq!(
            String::from_utf8(data.to_json()).unwrap(),
            r#"{"active":true,"address":"10.0.0.1:11111"}"#
        );
        let old = ServerRunningData::parse(br#"{"active":false,"address":"a:1","cid":1}"#).unwrap();
        assert!(!old.active);
    }
}
