//! Loads and checks the instance configuration: the YAML file, the secrets it points to, and derived values.

use std::path::{Path, PathBuf};

use canal_api::{InstanceConfig, SecretSource};

use crate::convert::filter::{FieldFilter, TableFilter};
use crate::error::{Error, Result};
use crate::protocol::auth::double_sha1;

/// A validated configuration with its secrets resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: InstanceConfig,
    pub source_password: String,
    /// `SHA1(SHA1(password))` of the clients' password, as canal stores `canal.passwd`; `None` disables the check.
    pub server_password_hash: Option<[u8; 20]>,
    pub time_zone: jiff::tz::TimeZone,
    /// `filter.includeFields` and `filter.excludeFields`, parsed.
    pub fields: FieldFilter,
}

impl Settings {
    /// Reads the YAML file at `path`, resolves secrets from the environment or files, and validates every field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let config = parse(&text).map_err(|source| Error::ConfigParse {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_config(config, &|name| std::env::var(name).ok())
    }

    /// Validates `config` and resolves its secrets; `env` looks up environment variables.
    pub fn from_config(config: InstanceConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        validate(&config)?;
        let source_password =
            read_secret("source.passwordFrom", &config.source.password_from, env)?.ok_or_else(|| Error::Secret {
                what: "source.passwordFrom".into(),
                message: format!(
                    "{} is not set; export it or point source.passwordFrom at a file",
                    describe(&config.source.password_from)
                ),
            })?;
        let server_password_hash = read_secret("server.passwordFrom", &config.server.password_from, env)?
            .filter(|p| !p.is_empty())
            .map(|p| double_sha1(p.as_bytes()));
        let time_zone = jiff::tz::TimeZone::get(&config.time_zone).map_err(|e| Error::ConfigInvalid {
            field: "timeZone".into(),
            message: format!(
                "unknown time zone `{}` ({e}); use an IANA name such as UTC or Asia/Shanghai",
                config.time_zone
            ),
        })?;
        let fields = FieldFilter::new(&config.filter.include_fields, &config.filter.exclude_fields)?;
        Ok(Self {
            config,
            source_password,
            server_password_hash,
            time_zone,
            fields,
        })
    }

    /// Directory holding this destination's local state.
    pub fn state_dir(&self) -> PathBuf {
        Path::new(&self.config.data_dir).join(&self.config.destination)
    }
}

/// Parses YAML into the configuration type; unknown fields are errors that name the field.
pub fn parse(text: &str) -> std::result::Result<InstanceConfig, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::ConfigInvalid {
        field: field.into(),
        message: message.into(),
    }
}

fn validate(config: &InstanceConfig) -> Result<()> {
    if config.destination.trim().is_empty() {
        return Err(invalid("destination", "must not be empty"));
    }
    if config.destination.contains('/') {
        return Err(invalid("destination", "must not contain `/`"));
    }
    validate_address(&config.source.address)?;
    if config.source.username.is_empty() {
        return Err(invalid("source.username", "must not be empty"));
    }
    if config.source.server_id == 0 {
        return Err(invalid(
            "source.serverId",
            "must be greater than 0 (0 is not a valid replica id)",
        ));
    }
    if let Some(start) = &config.start {
        let given = [
            !start.journal_name.is_empty(),
            start.timestamp.is_some(),
            start.gtid.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => return Err(invalid("start", "give journalName (with position), timestamp or gtid")),
            1 => {}
            _ => {
                return Err(invalid(
                    "start",
                    "give one of journalName (with position), timestamp and gtid",
                ));
            }
        }
        if start.timestamp.is_some_and(|ms| ms <= 0) {
            return Err(invalid("start.timestamp", "must be milliseconds since the epoch"));
        }
        if start.gtid.as_deref().is_some_and(|g| {
            crate::binlog::gtid::mariadb_position(g).is_none() && crate::binlog::gtid::mysql_set(g).is_none()
        }) {
            return Err(invalid(
                "start.gtid",
                "must be a MariaDB GTID position such as 0-1-100 or 0-1-100,1-2-7, or a MySQL GTID set such as \
                 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
            ));
        }
        if start.position < 4 {
            return Err(invalid(
                "start.position",
                "must be at least 4 (the first event of a binlog file)",
            ));
        }
    }
    if config.store.buffer_size == 0 {
        return Err(invalid("store.bufferSize", "must be greater than 0"));
    }
    if config.store.mem_unit == 0 {
        return Err(invalid("store.memUnit", "must be greater than 0"));
    }
    if config.source.connect_timeout_seconds == 0 {
        return Err(invalid("source.connectTimeoutSeconds", "must be greater than 0"));
    }
    TableFilter::new(&config.filter.include, &config.filter.exclude)?;
    if let Some(zookeeper) = &config.zookeeper {
        if zookeeper.servers.trim().is_empty() || zookeeper.servers.trim().starts_with('/') {
            return Err(invalid(
                "zookeeper.servers",
                "must list host:port[,host:port...][/chroot]",
            ));
        }
        if zookeeper.session_timeout_seconds < 2 {
            return Err(invalid("zookeeper.sessionTimeoutSeconds", "must be at least 2"));
        }
    }
    Ok(())
}

fn validate_address(address: &str) -> Result<()> {
    let field = "source.address";
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(field, format!("`{address}` is not host:port")))?;
    if host.is_empty() {
        return Err(invalid(field, format!("`{address}` has no host")));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(field, format!("`{address}` has no valid port")))?;
    Ok(())
}

fn describe(source: &SecretSource) -> String {
    match (&source.env, &source.file) {
        (_, Some(file)) => format!("file {file}"),
        (Some(env), None) => format!("environment variable {env}"),
        (None, None) => "no secret source".into(),
    }
}

/// Reads a secret; `Ok(None)` when the named environment variable is unset.
fn read_secret(what: &str, source: &SecretSource, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>> {
    match (&source.env, &source.file) {
        (Some(_), Some(_)) => Err(invalid(what, "set either env or file, not both")),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| Error::Secret {
                what: what.into(),
                message: format!("cannot read file {file}: {e}"),
            }),
        (Some(name), None) => Ok(env(name)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "destination: example\nsource:\n  address: 127.0.0.1:3306\n  username: canal\n";

    fn env(name: &str) -> Option<String> {
        (name == "CANAL_SOURCE_PASSWORD").then(|| "secret".to_string())
    }

    #[test]
    fn minimal_config_gets_canal_defaults() {
        let settings = Settings::from_config(parse(MINIMAL).unwrap(), &env).unwrap();
        let c = &settings.config;
        assert_eq!(c.server.port, 11111);
        assert_eq!(c.store.buffer_size, 16384);
        assert_eq!(c.store.mem_unit, 1024);
        assert_eq!(c.store.batch_mode, canal_api::BatchMode::Memsize);
        assert_eq!(c.filter.include, ".*\\..*");
        assert_eq!(settings.source_password, "secret");
        assert!(settings.server_password_hash.is_none());
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse(&format!("{MINIMAL}  adress: x\n")).unwrap_err().to_string();
        assert!(err.contains("unknown field `adress`"), "{err}");
        let err = parse(&format!("{MINIMAL}stor:\n  bufferSize: 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `stor`"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            (MINIMAL.replace("127.0.0.1:3306", "localhost"), "source.address"),
            (format!("{MINIMAL}store:\n  bufferSize: 0\n"), "store.bufferSize"),
            (format!("{MINIMAL}filter:\n  include: 'a(b'\n"), "filter.include"),
            (format!("{MINIMAL}timeZone: Mars/Base\n"), "timeZone"),
            (
                format!("{MINIMAL}start:\n  position: 4\n"),
                "give journalName (with position), timestamp or gtid",
            ),
            (
                format!("{MINIMAL}start:\n  journalName: b.000001\n  timestamp: 1700000000000\n"),
                "give one of",
            ),
            (format!("{MINIMAL}start:\n  gtid: '0-1'\n"), "start.gtid"),
            (format!("{MINIMAL}start:\n  timestamp: -5\n"), "start.timestamp"),
            (
                format!("{MINIMAL}filter:\n  includeFields: 'shop.t'\n"),
                "filter.includeFields",
            ),
            (format!("{MINIMAL}zookeeper:\n  servers: ''\n"), "zookeeper.servers"),
            (
                format!("{MINIMAL}zookeeper:\n  servers: zk:2181\n  sessionTimeoutSeconds: 1\n"),
                "zookeeper.sessionTimeoutSeconds",
            ),
        ];
        for (yaml, field) in cases {
            let err = Settings::from_config(parse(&yaml).unwrap(), &env)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn missing_password_says_where_to_put_it() {
        let err = Settings::from_config(parse(MINIMAL).unwrap(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CANAL_SOURCE_PASSWORD"), "{err}");
    }

    #[test]
    fn server_password_is_stored_like_canal_passwd() {
        assert_eq!(
            hex::encode_upper(double_sha1(b"canal")),
            "E3619321C1A937C46A0D8BD1DAC39F93B27D4458"
        );
    }
}
