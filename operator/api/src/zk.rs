//! canal's ZooKeeper node layout. It lives in the API crate because both sides need it: canal-instance registers,
//! elects and stores cursors under these paths, and the operator deletes a destination's subtree when its
//! CanalInstance goes under the `Delete` policy.

/// Root of every canal node.
pub const ROOT: &str = "/otter/canal";

/// Node paths of one destination.
#[derive(Clone, Debug)]
pub struct Paths {
    destination: String,
}

impl Paths {
    pub fn new(destination: &str) -> Self {
        Self {
            destination: format!("{ROOT}/destinations/{destination}"),
        }
    }

    /// `/otter/canal/destinations/{dest}`: parent of the running node, cluster members and client ids.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The ephemeral node of the active server.
    pub fn running(&self) -> String {
        format!("{}/running", self.destination)
    }

    /// Ephemeral members of this destination's cluster.
    pub fn destination_cluster(&self) -> String {
        format!("{}/cluster", self.destination)
    }

    pub fn destination_member(&self, address: &str) -> String {
        format!("{}/cluster/{address}", self.destination)
    }

    /// Ephemeral members of the whole canal cluster.
    pub fn server_cluster() -> String {
        format!("{ROOT}/cluster")
    }

    pub fn server_member(address: &str) -> String {
        format!("{ROOT}/cluster/{address}")
    }

    pub fn client(&self, client_id: i16) -> String {
        format!("{}/{client_id}", self.destination)
    }

    pub fn cursor(&self, client_id: i16) -> String {
        format!("{}/{client_id}/cursor", self.destination)
    }

    /// The ephemeral node of the active consumer of `client_id` (client-side HA).
    pub fn client_running(&self, client_id: i16) -> String {
        format!("{}/{client_id}/running", self.destination)
    }

    /// canal-rs's schema history (canal lists only the numeric children of a destination as clients).
    pub fn schema_history(&self) -> String {
        format!("{}/schema-history", self.destination)
    }

    /// One table's node under [`Paths::schema_history`]: `schema.table`, with `%`, `/` and `.` inside the names
    /// percent-encoded.
    pub fn schema_history_table(&self, schema: &str, table: &str) -> String {
        let encode = |name: &str| name.replace('%', "%25").replace('/', "%2F").replace('.', "%2E");
        format!("{}/{}.{}", self.schema_history(), encode(schema), encode(table))
    }

    pub fn filter(&self, client_id: i16) -> String {
        format!("{}/{client_id}/filter", self.destination)
    }
}

#[cfg(feature = "zookeeper")]
mod client {
    use std::time::Duration;

    use zookeeper_client as zk;

    use crate::ZooKeeperConfig;

    /// Why the ensemble could not be reached, naming the servers and what to check.
    #[derive(Debug, thiserror::Error)]
    #[error("ZooKeeper {servers}: {message}")]
    pub struct ConnectError {
        pub servers: String,
        pub message: String,
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
    pub async fn connect(config: &ZooKeeperConfig) -> Result<zk::Client, ConnectError> {
        let servers = config.servers.trim();
        let fail = |message: String| ConnectError {
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
}

#[cfg(feature = "zookeeper")]
pub use client::{ConnectError, connect, delete_recursive};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_canal() {
        let p = Paths::new("example");
        assert_eq!(p.destination(), "/otter/canal/destinations/example");
        assert_eq!(p.running(), "/otter/canal/destinations/example/running");
        assert_eq!(p.cursor(1001), "/otter/canal/destinations/example/1001/cursor");
        assert_eq!(
            Paths::server_member("10.0.0.1:11111"),
            "/otter/canal/cluster/10.0.0.1:11111"
        );
        assert_eq!(
            p.schema_history_table("a.b", "c/d"),
            "/otter/canal/destinations/example/schema-history/a%2Eb.c%2Fd"
        );
    }
}
