//! Client subscriptions and acknowledged cursors: in a local file ([`file`], standalone mode) or in ZooKeeper
//! ([`zk`], canal's layout, shared by every instance of a destination).

pub mod file;
pub mod zk;

use serde::{Deserialize, Serialize};

use crate::binlog::position::{ResumePoint, SourceAddress};
use crate::error::Result;
use crate::schema::HistoryStore;
use crate::schema::history::TableHistory;
use crate::store::Boundary;

/// canal's `LogPosition`: where a client's acknowledged data ends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPosition {
    pub identity: LogIdentity,
    /// The spelling is canal's and must be kept for compatibility.
    pub postion: EntryPosition,
    /// canal-rs extension: where to restart so that nothing acknowledged is delivered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumePoint>,
}

/// canal's `LogIdentity`: which database the position belongs to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogIdentity {
    pub slave_id: i64,
    pub source_address: SourceAddress,
}

/// canal's `EntryPosition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryPosition {
    #[serde(default)]
    pub gtid: String,
    #[serde(default)]
    pub included: bool,
    pub journal_name: String,
    pub position: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<i64>,
    #[serde(default)]
    pub timestamp: i64,
}

impl LogPosition {
    /// The point to restart the dump from for this cursor.
    pub fn resume_point(&self) -> ResumePoint {
        let mut point = self.resume.clone().unwrap_or_else(|| {
            // A cursor written by canal points at the start of the acknowledged boundary event: restart there and
            // drop that event's entry.
            let position = self.postion.position.max(4) as u64;
            ResumePoint {
                skip_through: Some(position),
                ..ResumePoint::at(&self.postion.journal_name, position)
            }
        });
        // The boundary's GTID position is where the next transaction starts: the fallback when the file is gone.
        if point.gtid.is_none() && !self.postion.gtid.is_empty() {
            point.gtid = Some(self.postion.gtid.clone());
        }
        point
    }

    /// The cursor after an ack: the boundary moves only when the batch contained one, the resume point always.
    pub fn advanced(&self, source: &SourceAddress, boundary: Option<&Boundary>, resume: ResumePoint) -> Self {
        let postion = match boundary {
            Some(b) => EntryPosition {
                gtid: b.gtid.clone().unwrap_or_default(),
                included: false,
                journal_name: b.position.journal_name.clone(),
                position: b.position.position as i64,
                server_id: Some(b.server_id as i64),
                timestamp: b.execute_time,
            },
            None => self.postion.clone(),
        };
        Self {
            identity: LogIdentity {
                slave_id: -1,
                source_address: source.clone(),
            },
            postion,
            resume: Some(resume),
        }
    }

    /// A cursor for a client that has not acknowledged anything yet.
    pub fn initial(source: &SourceAddress, resume: ResumePoint) -> Self {
        Self {
            identity: LogIdentity {
                slave_id: -1,
                source_address: source.clone(),
            },
            postion: EntryPosition {
                journal_name: resume.start.journal_name.clone(),
                position: resume.start.position as i64,
                ..Default::default()
            },
            resume: Some(resume),
        }
    }
}

/// Where a destination keeps subscriptions and cursors.
pub enum Meta {
    File(std::sync::Arc<file::MetaStore>),
    ZooKeeper(zk::ZkMeta),
}

impl Meta {
    /// Registers a subscription; a client without a cursor gets `initial`. Durable when this returns.
    pub async fn subscribe(&self, client_id: i16, filter: &str, initial: Option<LogPosition>) -> Result<()> {
        match self {
            Meta::File(store) => {
                let store = store.clone();
                let filter = filter.to_string();
                blocking(move || store.subscribe(client_id, &filter, initial)).await
            }
            Meta::ZooKeeper(zk) => zk.subscribe(client_id, filter, initial).await,
        }
    }

    /// Removes a subscription and its cursor. Durable when this returns.
    pub async fn unsubscribe(&self, client_id: i16) -> Result<()> {
        match self {
            Meta::File(store) => {
                let store = store.clone();
                blocking(move || store.unsubscribe(client_id)).await
            }
            Meta::ZooKeeper(zk) => zk.unsubscribe(client_id).await,
        }
    }

    pub fn is_subscribed(&self, client_id: i16) -> bool {
        match self {
            Meta::File(store) => store.is_subscribed(client_id),
            Meta::ZooKeeper(zk) => zk.is_subscribed(client_id),
        }
    }

    /// How many client ids are subscribed.
    pub fn subscriptions(&self) -> usize {
        match self {
            Meta::File(store) => store.subscriptions(),
            Meta::ZooKeeper(zk) => zk.subscriptions(),
        }
    }

    pub fn cursor(&self, client_id: i16) -> Option<LogPosition> {
        match self {
            Meta::File(store) => store.cursor(client_id),
            Meta::ZooKeeper(zk) => zk.cursor(client_id),
        }
    }

    /// Records a client's new cursor. Durable when this returns (unless a ZooKeeper flush period is configured).
    pub async fn update_cursor(&self, client_id: i16, cursor: LogPosition) -> Result<()> {
        match self {
            Meta::File(store) => {
                let store = store.clone();
                blocking(move || store.update_cursor(client_id, cursor)).await
            }
            Meta::ZooKeeper(zk) => zk.update_cursor(client_id, cursor).await,
        }
    }

    /// The earliest resume point of all clients: where the dump must start so that no client misses anything.
    pub fn min_resume(&self) -> Option<ResumePoint> {
        let cursors = match self {
            Meta::File(store) => store.cursors(),
            Meta::ZooKeeper(zk) => zk.cursors(),
        };
        cursors.iter().map(LogPosition::resume_point).min_by(|a, b| {
            (&a.start.journal_name, a.start.position, a.skip_through).cmp(&(
                &b.start.journal_name,
                b.start.position,
                b.skip_through,
            ))
        })
    }

    /// The most recent non-blank subscription filter, which canal applies to the whole destination.
    pub fn filter(&self) -> Option<String> {
        match self {
            Meta::File(store) => store.filter(),
            Meta::ZooKeeper(zk) => zk.filter(),
        }
    }

    /// The address in the client running node of `client_id` (client HA), if there is one. Only ZooKeeper has it.
    pub async fn client_running_address(&self, client_id: i16) -> Option<String> {
        match self {
            Meta::File(_) => None,
            Meta::ZooKeeper(zk) => zk.client_running_address(client_id).await,
        }
    }

    /// Writes anything still pending (ZooKeeper flush period).
    pub async fn flush(&self) -> Result<()> {
        match self {
            Meta::File(_) => Ok(()),
            Meta::ZooKeeper(zk) => zk.flush().await,
        }
    }
}

impl HistoryStore for Meta {
    /// The persisted schema history.
    async fn load_history(&self) -> Result<Vec<TableHistory>> {
        match self {
            Meta::File(store) => {
                let store = store.clone();
                blocking(move || store.schema_history()).await
            }
            Meta::ZooKeeper(zk) => zk.schema_history().await,
        }
    }

    /// Stores the versions of the schema history's `changed` tables. Durable when this returns.
    async fn save_history(&self, changed: Vec<TableHistory>) -> Result<()> {
        match self {
            Meta::File(store) => {
                let store = store.clone();
                blocking(move || store.save_schema_history(changed)).await
            }
            Meta::ZooKeeper(zk) => zk.save_schema_history(changed).await,
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::Error::io("cursor store task", std::io::Error::other(e)))?
}
