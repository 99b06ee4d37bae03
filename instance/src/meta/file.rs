//! Subscriptions and cursors in a local file (standalone mode).
//!
//! The file follows canal's `meta.dat` shape (`clientDatas[].clientIdentity` and `cursor` as a LogPosition, with the
//! misspelt `postion` key), plus a `resume` point that makes restarts inside a transaction exact. Every change is
//! written to a temporary file, fsynced and renamed over the old one, so a crash leaves either the old or the new
//! cursor, never a torn file. Writes are synchronous: an ack is durable before the client's next request is read.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::LogPosition;
use crate::error::{Error, Result};
use crate::schema::history::TableHistory;

/// canal's `ClientIdentity`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIdentity {
    pub client_id: i16,
    pub destination: String,
    #[serde(default)]
    pub filter: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientData {
    pub client_identity: ClientIdentity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<LogPosition>,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaData {
    pub client_datas: Vec<ClientData>,
    pub destination: String,
}

/// The persisted subscriptions of one destination.
pub struct MetaStore {
    path: PathBuf,
    data: Mutex<MetaData>,
}

impl MetaStore {
    /// Opens (or starts) the meta file in `dir`.
    pub fn open(dir: &Path, destination: &str) -> Result<Self> {
        let path = dir.join("meta.dat");
        fs::create_dir_all(dir).map_err(|e| Error::Meta {
            path: dir.to_path_buf(),
            message: format!("cannot create the data directory: {e}; check dataDir"),
        })?;
        let data = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<MetaData>(&bytes).map_err(|e| Error::Meta {
                path: path.clone(),
                message: format!(
                    "unreadable ({e}); restore it from a backup, or move it away to start from the configured position"
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetaData {
                client_datas: Vec::new(),
                destination: destination.to_string(),
            },
            Err(e) => {
                return Err(Error::Meta {
                    path,
                    message: e.to_string(),
                });
            }
        };
        if data.destination != destination {
            return Err(Error::Meta {
                path,
                message: format!(
                    "belongs to destination `{}`, not `{destination}`; use a separate dataDir per destination",
                    data.destination
                ),
            });
        }
        Ok(Self {
            path,
            data: Mutex::new(data),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetaData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a subscription; a client without a cursor gets `initial` (none while the start position is still
    /// unknown: its first ack sets it). Persists before returning.
    pub fn subscribe(&self, client_id: i16, filter: &str, initial: Option<LogPosition>) -> Result<()> {
        let mut data = self.lock();
        let destination = data.destination.clone();
        match data
            .client_datas
            .iter_mut()
            .find(|c| c.client_identity.client_id == client_id)
        {
            Some(client) => {
                client.client_identity.filter = filter.to_string();
                if client.cursor.is_none() {
                    client.cursor = initial;
                }
            }
            None => data.client_datas.push(ClientData {
                client_identity: ClientIdentity {
                    client_id,
                    destination,
                    filter: filter.to_string(),
                },
                cursor: initial,
            }),
        }
        self.persist(&data)
    }

    /// Removes a subscription and its cursor. Persists before returning.
    pub fn unsubscribe(&self, client_id: i16) -> Result<()> {
        let mut data = self.lock();
        data.client_datas.retain(|c| c.client_identity.client_id != client_id);
        self.persist(&data)
    }

    pub fn subscriptions(&self) -> usize {
        self.lock().client_datas.len()
    }

    pub fn is_subscribed(&self, client_id: i16) -> bool {
        self.lock()
            .client_datas
            .iter()
            .any(|c| c.client_identity.client_id == client_id)
    }

    pub fn cursor(&self, client_id: i16) -> Option<LogPosition> {
        self.lock()
            .client_datas
            .iter()
            .find(|c| c.client_identity.client_id == client_id)
            .and_then(|c| c.cursor.clone())
    }

    /// Records a client's new cursor. Durable on disk when this returns.
    pub fn update_cursor(&self, client_id: i16, cursor: LogPosition) -> Result<()> {
        let mut data = self.lock();
        let client = data
            .client_datas
            .iter_mut()
            .find(|c| c.client_identity.client_id == client_id)
            .ok_or_else(|| Error::Meta {
                path: self.path.clone(),
                message: format!("client {client_id} is not subscribed"),
            })?;
        client.cursor = Some(cursor);
        self.persist(&data)
    }

    /// Every client's cursor.
    pub fn cursors(&self) -> Vec<LogPosition> {
        self.lock()
            .client_datas
            .iter()
            .filter_map(|c| c.cursor.clone())
            .collect()
    }

    /// The most recent non-blank subscription filter, which canal applies to the whole destination.
    pub fn filter(&self) -> Option<String> {
        self.lock()
            .client_datas
            .iter()
            .map(|c| c.client_identity.filter.clone())
            .rfind(|f| !f.trim().is_empty())
    }

    fn persist(&self, data: &MetaData) -> Result<()> {
        let json = serde_json::to_vec(data).map_err(|e| Error::Meta {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        write_atomically(&self.path, &json)
    }

    fn history_path(&self) -> PathBuf {
        self.path.with_file_name(HISTORY_FILE)
    }

    /// The persisted schema history (empty when none was written yet).
    pub fn schema_history(&self) -> Result<Vec<TableHistory>> {
        let path = self.history_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Meta {
                path,
                message: format!(
                    "unreadable ({e}); move it away to rebuild the schema history from information_schema"
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::Meta {
                path,
                message: e.to_string(),
            }),
        }
    }

    /// Replaces the stored versions of the `changed` tables. Durable when this returns.
    pub fn save_schema_history(&self, changed: Vec<TableHistory>) -> Result<()> {
        // The cursor lock also orders history writes, so two writers never interleave.
        let _guard = self.lock();
        let mut all = self.schema_history()?;
        for table in changed {
            match all
                .iter_mut()
                .find(|t| t.schema == table.schema && t.table == table.table)
            {
                Some(existing) => *existing = table,
                None => all.push(table),
            }
        }
        let path = self.history_path();
        let json = serde_json::to_vec(&all).map_err(|e| Error::Meta {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomically(&path, &json)
    }
}

/// The schema history's file, beside `meta.dat`.
const HISTORY_FILE: &str = "schema-history.json";

/// Writes `bytes` to a temporary file, fsyncs it and renames it over `path`, so a crash leaves the old or the new
/// content, never a torn file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |message: String| Error::Meta {
        path: path.to_path_buf(),
        message,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| fail(format!("cannot write {}: {e}", tmp.display())))?;
    file.write_all(bytes)
        .map_err(|e| fail(format!("cannot write {}: {e}", tmp.display())))?;
    file.sync_all()
        .map_err(|e| fail(format!("cannot fsync {}: {e}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(|e| fail(format!("cannot rename {}: {e}", tmp.display())))?;
    // The rename is durable only once the directory entry is.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(format!("cannot fsync {}: {e}", dir.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::position::SourceAddress;
    use crate::binlog::position::{BinlogPosition, ResumePoint};
    use crate::store::Boundary;

    fn source() -> SourceAddress {
        SourceAddress {
            address: "127.0.0.1".into(),
            port: 3306,
        }
    }

    #[test]
    fn cursor_survives_reopen_and_keeps_canal_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(dir.path(), "example").unwrap();
        meta.subscribe(
            1001,
            "",
            Some(LogPosition::initial(&source(), ResumePoint::at("bin.000001", 4))),
        )
        .unwrap();
        let boundary = Boundary {
            position: BinlogPosition {
                journal_name: "bin.000001".into(),
                position: 500,
            },
            execute_time: 1_700_000_000_000,
            server_id: 1,
            gtid: Some("0-1-42".into()),
        };
        let resume = ResumePoint::at("bin.000001", 531);
        let cursor = meta
            .cursor(1001)
            .unwrap()
            .advanced(&source(), Some(&boundary), resume.clone());
        meta.update_cursor(1001, cursor).unwrap();

        let text = fs::read_to_string(meta.path()).unwrap();
        assert!(
            text.contains(r#""postion":{"gtid":"0-1-42","included":false,"journalName":"bin.000001","position":500"#),
            "{text}"
        );
        assert!(text.contains(r#""slaveId":-1"#), "{text}");

        let reopened = MetaStore::open(dir.path(), "example").unwrap();
        // The boundary's GTID position comes along, for a resume where the file is gone.
        let expected = ResumePoint {
            gtid: Some("0-1-42".into()),
            ..resume
        };
        assert_eq!(reopened.cursors()[0].resume_point(), expected);
    }

    #[test]
    fn canal_written_cursor_resumes_after_its_boundary() {
        let json = r#"{"clientDatas":[{"clientIdentity":{"clientId":1001,"destination":"example","filter":""},
            "cursor":{"identity":{"slaveId":-1,"sourceAddress":{"address":"db","port":3306}},
            "postion":{"included":false,"journalName":"mysql-bin.000023","position":43893,"timestamp":1536312619000}}}],
            "destination":"example"}"#;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("meta.dat"), json).unwrap();
        let meta = MetaStore::open(dir.path(), "example").unwrap();
        let resume = meta.cursors()[0].resume_point();
        assert_eq!(resume.start.position, 43893);
        assert!(resume.covers("mysql-bin.000023", 43893));
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("meta.dat"), "{not json").unwrap();
        let err = MetaStore::open(dir.path(), "example").err().unwrap().to_string();
        assert!(err.contains("meta.dat") && err.contains("unreadable"), "{err}");
    }
}
