//! The CanalInstance API: the configuration of one canal destination.
//!
//! `canal-instance --config FILE` reads [`InstanceConfig`] from YAML, and the operator embeds the same type in the
//! CanalInstance spec, so a standalone user and the operator write the same thing. Field names are camelCase as in
//! every Kubernetes API. Unknown fields are rejected so that a typo is an error, not a silently ignored setting.
//! Secrets never appear here: they are read from environment variables or files named by [`SecretSource`].
//!
//! Beside the types: [`validate`] (the checks both the instance and the operator apply to a configuration) and
//! [`zk`] (canal's ZooKeeper node layout).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The instance part of a CanalInstance spec: everything one `canal-instance` process needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceConfig {
    /// Name of the destination that clients subscribe to (canal's `canal.destinations`).
    pub destination: String,
    /// The MySQL or MariaDB server to read the binlog from.
    pub source: SourceConfig,
    /// Where to start reading when no client has acknowledged anything yet. Absent: the current end of the binlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartPosition>,
    /// Which tables and which kinds of change are delivered.
    #[serde(default)]
    pub filter: FilterConfig,
    /// The canal TCP server that clients connect to.
    #[serde(default)]
    pub server: ServerConfig,
    /// The in-memory event store between the binlog reader and the clients.
    #[serde(default)]
    pub store: StoreConfig,
    /// Time zone used to render TIMESTAMP columns: an IANA name such as `Asia/Shanghai`, or `UTC`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Directory for local state in standalone mode (the acknowledged cursor of every client).
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// ZooKeeper for active/standby between instances of this destination, with canal's node layout.
    /// Absent: standalone mode, cursors in `dataDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zookeeper: Option<ZooKeeperConfig>,
}

/// Active/standby coordination through ZooKeeper.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZooKeeperConfig {
    /// Connect string `host:port[,host:port...][/chroot]`.
    pub servers: String,
    /// ZooKeeper session timeout. An active instance that loses contact stops serving well within it.
    #[serde(default = "default_session_timeout")]
    pub session_timeout_seconds: u32,
    /// How long standbys wait after the active instance vanished before taking over (canal's 5 s). A graceful
    /// handover skips the wait.
    #[serde(default = "default_failover_delay")]
    pub failover_delay_seconds: u32,
    /// 0: write a client's cursor to ZooKeeper on every ack, before its next request is answered. Above 0: write
    /// at most this often (canal's default is 1000), trading possible duplicates after a failover for fewer writes.
    #[serde(default)]
    pub cursor_flush_period_ms: u32,
}

/// Connection to the source database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConfig {
    /// `host:port` of the MySQL or MariaDB server.
    pub address: String,
    /// User with the REPLICATION SLAVE, REPLICATION CLIENT and SELECT privileges.
    pub username: String,
    /// Where the password is read from. Default: the environment variable `CANAL_SOURCE_PASSWORD`.
    #[serde(default = "default_source_password")]
    pub password_from: SecretSource,
    /// Replica server id this instance registers with. Must be unique among all replicas of the source.
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    /// Connection character set, used for schema names and statement text.
    #[serde(default = "default_charset")]
    pub charset: String,
    /// Seconds to wait for the TCP connection and for each read before the connection is considered dead.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u32,
    /// When the binlog file to resume from was purged: `Fail` (default), `Earliest` or `Latest`.
    #[serde(default)]
    pub on_missing_binlog: MissingBinlogPolicy,
}

/// A secret value, read from exactly one of an environment variable or a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSource {
    /// Name of an environment variable holding the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Path of a file holding the secret (a trailing newline is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Where a destination with no stored cursor starts: a binlog file and offset, or a point in time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartPosition {
    /// Binlog file name, for example `mysql-bin.000003`. Give this or `timestamp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub journal_name: String,
    /// Byte offset of a transaction boundary in that file. Default 4, the first event.
    #[serde(default = "default_start_offset")]
    pub position: u64,
    /// Milliseconds since the epoch (canal.instance.master.timestamp): start at the first transaction committed
    /// at or after this time, found by searching the server's binlogs. Give this or `journalName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// A GTID position (canal.instance.master.gtid): on MariaDB `0-1-100` (one `domain-server-seq` per domain,
    /// comma-separated), on MySQL a GTID set such as `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5`. Starts after those
    /// transactions, wherever the server has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// What to do when the binlog file a cursor or `start` names is no longer on the server (purged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MissingBinlogPolicy {
    /// Stop and report the missing file and the choices; nothing is skipped silently.
    #[default]
    Fail,
    /// Continue from the oldest binlog the server has. The events in the purged files are lost.
    Earliest,
    /// Continue from the end of the binlog. Everything up to now is lost.
    Latest,
}

/// Table and event filters, with canal's semantics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterConfig {
    /// Comma-separated regexes matched against lowercase `schema.table` (canal.instance.filter.regex).
    #[serde(default = "default_include")]
    pub include: String,
    /// Comma-separated regexes of tables to drop (canal.instance.filter.black.regex).
    #[serde(default = "default_exclude")]
    pub exclude: String,
    /// Deliver DDL statements (the inverse of canal.instance.filter.query.ddl).
    #[serde(default = "default_true")]
    pub ddl: bool,
    /// Deliver statements that are neither DDL nor row changes, such as GRANT or CREATE DATABASE
    /// (the inverse of canal.instance.filter.query.dcl).
    #[serde(default = "default_true")]
    pub dcl: bool,
    /// Deliver TRANSACTIONBEGIN and TRANSACTIONEND entries (the inverse of canal.instance.filter.transaction.entry).
    #[serde(default = "default_true")]
    pub transaction_entries: bool,
    /// Deliver statement-based DML (INSERT/UPDATE/DELETE in QUERY events) and the text of the statement before
    /// its row changes (MariaDB's annotate rows, MySQL's rows query events), as QUERY entries (the inverse of
    /// canal.instance.filter.query.dml).
    #[serde(default = "default_true")]
    pub dml: bool,
    /// Deliver row changes (the inverse of canal.instance.filter.rows).
    #[serde(default = "default_true")]
    pub rows: bool,
    /// Columns to deliver per table, in canal's format `schema.table:col1/col2,schema.t2:c` (canal.instance.filter.field).
    /// Tables not listed keep all columns. Names match without regard to case.
    #[serde(default)]
    pub include_fields: String,
    /// Columns to drop per table, same format (canal.instance.filter.black.field).
    #[serde(default)]
    pub exclude_fields: String,
}

/// The canal protocol server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind. Default: all interfaces.
    #[serde(default = "default_bind")]
    pub host: String,
    /// TCP port of the canal protocol.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name clients must present. Empty: any user name is accepted.
    #[serde(default)]
    pub username: String,
    /// Where the clients' password is read from (plain text). Unset or empty: clients need no password.
    #[serde(default = "default_server_password")]
    pub password_from: SecretSource,
    /// Port of the HTTP endpoints `/healthz` and `/readyz` (canal.metrics.pull.port). 0 disables them.
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// IP this instance publishes in ZooKeeper for clients to connect to. Default: the `POD_IP` environment
    /// variable, else 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_ip: Option<String>,
}

/// How events are buffered and batched between the binlog reader and the clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreConfig {
    /// Maximum number of events held (canal.instance.memory.buffer.size).
    #[serde(default = "default_buffer_size")]
    pub buffer_size: u32,
    /// MEMSIZE: fetch sizes and the store bound count memory units; ITEMSIZE: they count events.
    #[serde(default)]
    pub batch_mode: BatchMode,
    /// Bytes per memory unit in MEMSIZE mode (canal.instance.memory.buffer.memunit).
    #[serde(default = "default_mem_unit")]
    pub mem_unit: u32,
}

/// canal's batch modes (canal.instance.memory.batch.mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum BatchMode {
    /// Sizes count binlog bytes, in units of `memUnit`.
    #[default]
    Memsize,
    /// Sizes count events.
    Itemsize,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            include: default_include(),
            exclude: default_exclude(),
            ddl: true,
            dcl: true,
            transaction_entries: true,
            dml: true,
            rows: true,
            include_fields: String::new(),
            exclude_fields: String::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: default_bind(),
            port: default_port(),
            username: String::new(),
            password_from: default_server_password(),
            metrics_port: default_metrics_port(),
            register_ip: None,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            buffer_size: default_buffer_size(),
            batch_mode: BatchMode::default(),
            mem_unit: default_mem_unit(),
        }
    }
}

/// The environment variable that holds the source password unless `source.passwordFrom` says otherwise.
pub const DEFAULT_SOURCE_PASSWORD_ENV: &str = "CANAL_SOURCE_PASSWORD";
/// The environment variable that holds the client password unless `server.passwordFrom` says otherwise.
pub const DEFAULT_SERVER_PASSWORD_ENV: &str = "CANAL_SERVER_PASSWORD";

fn default_session_timeout() -> u32 {
    10
}
fn default_failover_delay() -> u32 {
    5
}
pub(crate) fn default_time_zone() -> String {
    "UTC".into()
}
fn default_data_dir() -> String {
    "data".into()
}
fn default_source_password() -> SecretSource {
    SecretSource {
        env: Some(DEFAULT_SOURCE_PASSWORD_ENV.into()),
        file: None,
    }
}
fn default_server_password() -> SecretSource {
    SecretSource {
        env: Some(DEFAULT_SERVER_PASSWORD_ENV.into()),
        file: None,
    }
}
fn default_server_id() -> u32 {
    1001
}
fn default_charset() -> String {
    "utf8mb4".into()
}
fn default_connect_timeout() -> u32 {
    30
}
fn default_start_offset() -> u64 {
    4
}
fn default_include() -> String {
    ".*\\..*".into()
}
fn default_exclude() -> String {
    "mysql\\..*".into()
}
fn default_true() -> bool {
    true
}
fn default_bind() -> String {
    "0.0.0.0".into()
}
fn default_port() -> u16 {
    11111
}
fn default_metrics_port() -> u16 {
    11112
}
fn default_buffer_size() -> u32 {
    16384
}
fn default_mem_unit() -> u32 {
    1024
}

pub mod crd;
pub mod sink;
pub mod validate;
pub mod zk;
pub use crd::{CanalInstance, CanalInstanceSpec, CanalInstanceStatus, DeletionPolicy, Member, SecretKeyRef};
pub use validate::{ConfigError, validate};
