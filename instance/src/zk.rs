//! canal's ZooKeeper layout (node paths and JSON), and connecting to ZooKeeper with errors a user can act on.

use std::time::Duration;

use canal_api::ZooKeeperConfig;
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::error::{Error, Result};

pub use canal_api::zk::{Paths, ROOT};

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

/// Deletes a node and everything below it; a missing node is fine.
pub async fn delete_recursive(client: &zk::Client, path: &str) -> std::result::Result<(), zk::Error> {
    let mut stack = vec![path.to_string()];
    let mut order = Vec::new();
    while let Some(p) = stack.pop() {
        match client.list_children(&p).await {
            Ok(children) => stack.extend(children.into_iter().map(|c| format!("{p}/{c}"))),
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        }
        order.push(p);
    }
    for p in order.iter().rev() {
        match client.delete(p, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Connects to the ensemble. A chroot in `servers` must exist; wrong addresses fail within the session timeout.
pub async fn connect(config: &ZooKeeperConfig) -> Result<zk::Client> {
    let servers = config.servers.trim();
    let fail = |message: String| Error::ZooKeeper {
        servers: servers.to_string(),
        message,
    };
    let (hosts, chroot) = match servers.find('/') {
        Some(i) => (&servers[..i], Some(&servers[i..])),
        None => (servers, None),
    };
    if hosts.is_empty() {
        return Err(fail(
            "no ZooKeeper address; set zookeeper.servers to host:port[,host:port...]".into(),
        ));
    }
    let session_timeout = Duration::from_secs(config.session_timeout_seconds.max(1) as u64);
    let connecting = zk::Client::connector()
        .with_session_timeout(session_timeout)
        .with_connection_timeout(session_timeout / 4)
        .with_fail_eagerly()
        .connect(hosts);
    let client = match tokio::time::timeout(session_timeout, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            return Err(fail(format!(
                "cannot connect ({e}); check zookeeper.servers and that the ensemble is up"
            )));
        }
        Err(_) => {
            return Err(fail(format!(
                "no ZooKeeper server answered within {session_timeout:?}; check zookeeper.servers and that the \
                 ensemble is up"
            )));
        }
    };
    let Some(chroot) = chroot else {
        return Ok(client);
    };
    match client.check_stat(chroot).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(fail(format!(
                "the chroot {chroot} does not exist; create it (zkCli.sh create {chroot}) or remove it from \
                 zookeeper.servers"
            )));
        }
        Err(e) => return Err(fail(format!("cannot check the chroot {chroot}: {e}"))),
    }
    client
        .chroot(chroot.to_string())
        .map_err(|_| fail(format!("invalid chroot {chroot}")))
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
