//! The crate's error type. Every variant says what failed and, where the user can act, what to change.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in canal-instance and its client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// serde_yaml's message names the offending field and its line.
    #[error("invalid config file {path}: {source}")]
    ConfigParse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("invalid config: {field}: {message}")]
    ConfigInvalid { field: String, message: String },
    #[error("cannot read {what}: {message}")]
    Secret { what: String, message: String },
    #[error("invalid {field} regex `{pattern}`: {message}")]
    FilterRegex {
        field: String,
        pattern: String,
        message: String,
    },
    #[error("cannot connect to MySQL at {address}: {source}. Check source.address and that the server is up")]
    SourceConnect {
        address: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error(
        "MySQL at {address} rejected user `{user}`: {message}. Check source.username and the password \
         (source.passwordFrom, default env CANAL_SOURCE_PASSWORD)"
    )]
    SourceAuth {
        address: String,
        user: String,
        message: String,
    },
    #[error("MySQL at {address} is not usable for change capture: {message}")]
    SourceSetting { address: String, message: String },
    #[error("MySQL query `{query}` failed: {source}")]
    SourceQuery {
        query: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("binlog dump from {position} failed: {message}")]
    BinlogDump { position: String, message: String },
    #[error(
        "binlog file {file} is not on the server any more (purged?); the oldest it has is {oldest}. The events in \
         between are lost to this destination. Choose: restore the file on the server, or set \
         source.onMissingBinlog to Earliest (continue from {oldest}) or Latest (continue from the end)"
    )]
    BinlogPurged { file: String, oldest: String },
    #[error(
        "the binlog position {position} was recorded on the server with server_id {recorded}, but the source is now \
         server_id {server_id} (a failover?), where that position means something else, and it carries no GTID to \
         resume from; set start.gtid, or set source.onMissingBinlog to Earliest (continue from {oldest}) or Latest \
         (continue from the end)"
    )]
    SourceSwitched {
        position: String,
        recorded: u32,
        server_id: u32,
        oldest: String,
    },
    #[error("cannot decode binlog event at {position}: {message}")]
    Decode { position: String, message: String },
    #[error("ZooKeeper {servers}: {message}")]
    ZooKeeper { servers: String, message: String },
    #[error("cursor store {path}: {message}")]
    Meta { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Building or publishing a sink's records.
    #[error("sink: {0}")]
    Sink(String),
    #[error(
        "sink: another producer took Kafka transactional id `{transactional_id}` (another instance of this \
         destination became active): this one publishes nothing more"
    )]
    SinkFenced { transactional_id: String },
    #[error("canal protocol error: {0}")]
    Protocol(String),
    #[error("canal server replied error {code}: {message}")]
    Server { code: i32, message: String },
}

impl From<canal_api::ConfigError> for Error {
    fn from(e: canal_api::ConfigError) -> Self {
        match e {
            canal_api::ConfigError::Invalid { field, message } => Error::ConfigInvalid { field, message },
            canal_api::ConfigError::FilterRegex {
                field,
                pattern,
                message,
            } => Error::FilterRegex {
                field,
                pattern,
                message,
            },
        }
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// [`Error::kind`] of a binlog event that cannot be decoded.
    pub const DECODE_KIND: &'static str = "decode";

    /// A short fixed name for the kind of error, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ConfigRead { .. } | Error::ConfigParse { .. } | Error::ConfigInvalid { .. } => "config",
            Error::Secret { .. } => "secret",
            Error::FilterRegex { .. } => "filter",
            Error::SourceConnect { .. } => "connect",
            Error::SourceAuth { .. } => "auth",
            Error::SourceSetting { .. } => "source_setting",
            Error::SourceQuery { .. } => "query",
            Error::BinlogDump { .. } => "dump",
            Error::BinlogPurged { .. } => "purged",
            Error::SourceSwitched { .. } => "source_switched",
            Error::Decode { .. } => Self::DECODE_KIND,
            Error::ZooKeeper { .. } => "zookeeper",
            Error::Meta { .. } => "meta",
            Error::Io { .. } => "io",
            Error::Sink(_) => "sink",
            Error::SinkFenced { .. } => "sink_fenced",
            Error::Protocol(_) => "protocol",
            Error::Server { .. } => "server",
        }
    }

    /// Whether retrying later can succeed without a change of configuration on our side.
    ///
    /// Authentication and server-setting errors are still retried (someone can fix the database), but they are
    /// logged as errors rather than warnings.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            Error::SourceAuth { .. }
                | Error::SourceSetting { .. }
                | Error::BinlogDump { .. }
                | Error::BinlogPurged { .. }
                | Error::SourceSwitched { .. }
        )
    }
}
