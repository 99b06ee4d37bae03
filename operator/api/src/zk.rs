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
