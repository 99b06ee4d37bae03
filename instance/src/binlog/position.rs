//! Binlog positions and the resume point that makes restarts exact.
//!
//! canal moves a client's cursor only at transaction boundaries, so a crash inside a large transaction replays rows
//! the client already acknowledged. canal-rs records, with every delivered entry, where the dump must restart to
//! reproduce what follows it: the start of its transaction plus the offset of the last event already delivered.
//! Restarting there and dropping entries up to that offset delivers every row exactly once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The start of one binlog event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinlogPosition {
    pub journal_name: String,
    pub position: u64,
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.journal_name, self.position)
    }
}

/// Where to restart the binlog dump, and which already-delivered entries to drop after restarting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumePoint {
    /// A transaction boundary to dump from.
    #[serde(flatten)]
    pub start: BinlogPosition,
    /// Entries of events in `start.journal_name` at or before this offset were delivered and acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_through: Option<u64>,
    /// MariaDB's GTID position at `start`: where to resume when `start.journal_name` is not on the server (purged,
    /// or another server after a failover). With an empty journal name it is the only position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// `@@server_id` of the server whose binlog `start` refers to. Another server may have files of the same names
    /// with other contents (a failover behind the same address), so there only `gtid` is a position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u32>,
}

/// The binlog file a ROTATE event moves to, or `None` when it stays in `current`.
///
/// The first artificial rotate of a connection arrives before the checksum setting is known, so its name can
/// carry four checksum bytes (mysql_async issue #189). An artificial name is therefore read as the longest of the
/// server's `files` (or the current file) that it starts with.
pub fn rotated_to(current: &str, name: &str, artificial: bool, files: &[String]) -> Option<String> {
    let name = if artificial {
        files
            .iter()
            .map(String::as_str)
            .chain((!current.is_empty()).then_some(current))
            .filter(|file| name.starts_with(file))
            .max_by_key(|file| file.len())
            .unwrap_or(name)
    } else {
        name
    };
    (name != current).then(|| name.to_string())
}

impl ResumePoint {
    /// Resume at a boundary with nothing to skip.
    pub fn at(journal_name: impl Into<String>, position: u64) -> Self {
        Self {
            start: BinlogPosition {
                journal_name: journal_name.into(),
                position,
            },
            skip_through: None,
            gtid: None,
            server_id: None,
        }
    }

    /// Resume after MariaDB GTID position `gtid`, wherever the server has it.
    pub fn after_gtid(gtid: impl Into<String>) -> Self {
        Self {
            gtid: Some(gtid.into()),
            ..Self::at("", 4)
        }
    }

    /// Whether the entry of the event starting at `offset` in `journal` was already delivered.
    pub fn covers(&self, journal: &str, offset: u64) -> bool {
        self.skip_through
            .is_some_and(|through| journal == self.start.journal_name && offset <= through)
    }
}

impl fmt::Display for ResumePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start.journal_name.is_empty() {
            return write!(f, "GTID {}", self.gtid.as_deref().unwrap_or(""));
        }
        match self.skip_through {
            Some(through) => write!(f, "{} (skipping entries through offset {through})", self.start),
            None => write!(f, "{}", self.start),
        }
    }
}

/// The database a position belongs to, as canal records it (its serialization of a Java `InetSocketAddress`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceAddress {
    pub address: String,
    pub port: u16,
}
