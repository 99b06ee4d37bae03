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
}

/// The binlog file a ROTATE event moves to, or `None` when it stays in `current`.
///
/// The first artificial rotate of a connection arrives before the checksum setting is known, so its name can
/// carry four checksum bytes (mysql_async issue #189). A dump is requested from a known file, so an artificial
/// name that merely extends the current one is that file.
pub fn rotated_to(current: &str, name: &str, artificial: bool) -> Option<String> {
    if artificial && !current.is_empty() && name.starts_with(current) {
        return None;
    }
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
        match self.skip_through {
            Some(through) => write!(f, "{} (skipping entries through offset {through})", self.start),
            None => write!(f, "{}", self.start),
        }
    }
}
