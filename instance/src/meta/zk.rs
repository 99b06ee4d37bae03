//! Subscriptions and cursors in ZooKeeper, in canal's layout: `{dest}/{clientId}` per subscription, its `filter`
//! as raw text, and its `cursor` as LogPosition JSON with `@type`, so canal's tools and clients can read them.
//!
//! An active instance loads everything when it takes over and then keeps a copy in memory; every change is written
//! to ZooKeeper before it is acknowledged (or, with a flush period, at most that much later, and on shutdown).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use super::LogPosition;
use crate::error::{Error, Result};
use crate::ha::zk::{Paths, delete_recursive, ensure_path, put};
use crate::schema::history::TableHistory;

/// The Java class canal names in the cursor's `@type`.
const LOG_POSITION_TYPE: &str = "com.alibaba.otter.canal.protocol.position.LogPosition";

/// A cursor as canal stores it in ZooKeeper: `@type` first, then the LogPosition fields.
#[derive(Serialize, Deserialize)]
struct TypedLogPosition {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(flatten)]
    position: LogPosition,
}

/// Encodes a cursor as canal writes it.
pub fn cursor_json(position: &LogPosition) -> Vec<u8> {
    serde_json::to_vec(&TypedLogPosition {
        kind: LOG_POSITION_TYPE.into(),
        position: position.clone(),
    })
    .unwrap_or_default()
}

/// Decodes a cursor written by canal or canal-rs.
pub fn parse_cursor(bytes: &[u8]) -> Option<LogPosition> {
    serde_json::from_slice::<TypedLogPosition>(bytes)
        .ok()
        .map(|t| t.position)
}

#[derive(Clone, Debug, Default)]
struct Subscription {
    filter: String,
    cursor: Option<LogPosition>,
}

struct Shared {
    client: zk::Client,
    paths: Paths,
    servers: String,
    subscriptions: Mutex<BTreeMap<i16, Subscription>>,
    /// Cursors acknowledged but not yet written (flush period > 0).
    pending: Mutex<HashMap<i16, LogPosition>>,
}

/// The ZooKeeper-backed subscriptions of one destination, for the term of one active instance.
pub struct ZkMeta {
    shared: Arc<Shared>,
    flush_period: Duration,
    flusher: Option<JoinHandle<()>>,
}

impl Shared {
    fn error(&self, what: &str, e: zk::Error) -> Error {
        Error::ZooKeeper {
            servers: self.servers.clone(),
            message: format!("{what}: {e}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i16, Subscription>> {
        self.subscriptions.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn write_cursor(&self, client_id: i16, cursor: &LogPosition) -> Result<()> {
        put(&self.client, &self.paths.cursor(client_id), &cursor_json(cursor))
            .await
            .map_err(|e| self.error(&format!("write cursor of client {client_id}"), e))
    }

    async fn flush(&self) -> Result<()> {
        let pending: Vec<(i16, LogPosition)> = self.pending.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        for (client_id, cursor) in pending {
            self.write_cursor(client_id, &cursor).await?;
        }
        Ok(())
    }
}

impl ZkMeta {
    /// Reads every subscription of the destination from ZooKeeper.
    pub async fn load(client: zk::Client, paths: Paths, servers: &str, flush_period: Duration) -> Result<Self> {
        let shared = Shared {
            client,
            paths,
            servers: servers.to_string(),
            subscriptions: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(HashMap::new()),
        };
        ensure_path(&shared.client, shared.paths.destination())
            .await
            .map_err(|e| shared.error("create the destination node", e))?;
        let children = shared
            .client
            .list_children(shared.paths.destination())
            .await
            .map_err(|e| shared.error("list subscriptions", e))?;
        let mut loaded = BTreeMap::new();
        // Client ids are the numeric children; `running` and `cluster` live beside them.
        for client_id in children.iter().filter_map(|c| c.parse::<i16>().ok()) {
            let filter = match shared.client.get_data(&shared.paths.filter(client_id)).await {
                Ok((data, _)) => String::from_utf8_lossy(&data).into_owned(),
                Err(zk::Error::NoNode) => String::new(),
                Err(e) => return Err(shared.error("read a subscription filter", e)),
            };
            let cursor = match shared.client.get_data(&shared.paths.cursor(client_id)).await {
                Ok((data, _)) => Some(parse_cursor(&data).ok_or_else(|| Error::ZooKeeper {
                    servers: servers.to_string(),
                    message: format!(
                        "the cursor of client {client_id} ({}) is not LogPosition JSON; fix or delete the node",
                        shared.paths.cursor(client_id)
                    ),
                })?),
                Err(zk::Error::NoNode) => None,
                Err(e) => return Err(shared.error("read a cursor", e)),
            };
            loaded.insert(client_id, Subscription { filter, cursor });
        }
        *shared.lock() = loaded;
        let shared = Arc::new(shared);
        let flusher = (!flush_period.is_zero()).then(|| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(flush_period);
                loop {
                    tick.tick().await;
                    if let Err(e) = shared.flush().await {
                        tracing::warn!(error = %e, "cursor flush failed; retrying next period");
                    }
                }
            })
        });
        Ok(Self {
            shared,
            flush_period,
            flusher,
        })
    }

    pub async fn subscribe(&self, client_id: i16, filter: &str, initial: Option<LogPosition>) -> Result<()> {
        let s = &self.shared;
        ensure_path(&s.client, &s.paths.client(client_id))
            .await
            .map_err(|e| s.error("create the subscription node", e))?;
        if !filter.trim().is_empty() {
            put(&s.client, &s.paths.filter(client_id), filter.as_bytes())
                .await
                .map_err(|e| s.error("write the subscription filter", e))?;
        }
        let has_cursor = s.lock().get(&client_id).is_some_and(|c| c.cursor.is_some());
        let cursor = if has_cursor { None } else { initial };
        if let Some(cursor) = &cursor {
            s.write_cursor(client_id, cursor).await?;
        }
        let mut subscriptions = s.lock();
        let entry = subscriptions.entry(client_id).or_default();
        entry.filter = filter.to_string();
        if cursor.is_some() {
            entry.cursor = cursor;
        }
        Ok(())
    }

    pub async fn unsubscribe(&self, client_id: i16) -> Result<()> {
        let s = &self.shared;
        delete_recursive(&s.client, &s.paths.client(client_id))
            .await
            .map_err(|e| s.error("delete the subscription", e))?;
        s.lock().remove(&client_id);
        s.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&client_id);
        Ok(())
    }

    pub fn subscriptions(&self) -> usize {
        self.shared.lock().len()
    }

    pub fn is_subscribed(&self, client_id: i16) -> bool {
        self.shared.lock().contains_key(&client_id)
    }

    pub fn cursor(&self, client_id: i16) -> Option<LogPosition> {
        self.shared.lock().get(&client_id).and_then(|c| c.cursor.clone())
    }

    pub fn cursors(&self) -> Vec<LogPosition> {
        self.shared.lock().values().filter_map(|c| c.cursor.clone()).collect()
    }

    /// The `address` of the client running node; `None` when there is no node, or it cannot be read.
    pub async fn client_running_address(&self, client_id: i16) -> Option<String> {
        let path = self.shared.paths.client_running(client_id);
        let (data, _) = match self.shared.client.get_data(&path).await {
            Ok(found) => found,
            Err(zk::Error::NoNode) => return None,
            Err(e) => {
                tracing::warn!(path, error = %e, "cannot read the client running node");
                return None;
            }
        };
        let value: serde_json::Value = serde_json::from_slice(&data).ok()?;
        value["address"].as_str().map(str::to_string)
    }

    pub fn filter(&self) -> Option<String> {
        self.shared
            .lock()
            .values()
            .map(|c| c.filter.clone())
            .rfind(|f| !f.trim().is_empty())
    }

    pub async fn update_cursor(&self, client_id: i16, cursor: LogPosition) -> Result<()> {
        let s = &self.shared;
        if self.flush_period.is_zero() {
            s.write_cursor(client_id, &cursor).await?;
        } else {
            s.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(client_id, cursor.clone());
        }
        if let Some(sub) = s.lock().get_mut(&client_id) {
            sub.cursor = Some(cursor);
        }
        Ok(())
    }

    /// Writes every pending cursor now.
    pub async fn flush(&self) -> Result<()> {
        self.shared.flush().await
    }

    /// The persisted schema history: one node per table under `{dest}/schema-history`.
    pub async fn schema_history(&self) -> Result<Vec<TableHistory>> {
        let s = &self.shared;
        let root = s.paths.schema_history();
        let children = match s.client.list_children(&root).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(s.error("list the schema history", e)),
        };
        let mut tables = Vec::with_capacity(children.len());
        for child in children {
            let path = format!("{root}/{child}");
            let data = match s.client.get_data(&path).await {
                Ok((data, _)) => data,
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(s.error("read the schema history", e)),
            };
            let table = serde_json::from_slice(&data).map_err(|e| Error::ZooKeeper {
                servers: s.servers.clone(),
                message: format!(
                    "the schema history node {path} is unreadable ({e}); delete it to rebuild that table's history \
                     from information_schema"
                ),
            })?;
            tables.push(table);
        }
        Ok(tables)
    }

    /// Replaces the stored versions of the `changed` tables.
    pub async fn save_schema_history(&self, changed: Vec<TableHistory>) -> Result<()> {
        let s = &self.shared;
        for table in changed {
            let path = s.paths.schema_history_table(&table.schema, &table.table);
            let data = serde_json::to_vec(&table).unwrap_or_default();
            put(&s.client, &path, &data)
                .await
                .map_err(|e| s.error("write the schema history", e))?;
        }
        Ok(())
    }
}

impl Drop for ZkMeta {
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.take() {
            flusher.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_json_is_canal_shaped() {
        let canal = r#"{"@type":"com.alibaba.otter.canal.protocol.position.LogPosition","identity":{"slaveId":-1,"sourceAddress":{"address":"10.35.165.15","port":3306}},"postion":{"gtid":"","included":false,"journalName":"mysql-bin.000023","position":43893,"serverId":1,"timestamp":1536312619000}}"#;
        let parsed = parse_cursor(canal.as_bytes()).unwrap();
        assert_eq!(parsed.postion.position, 43893);
        assert_eq!(
            String::from_utf8(cursor_json(&parsed)).unwrap(),
            canal,
            "round trip keeps canal's bytes"
        );
    }
}
