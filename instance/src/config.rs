//! Loads and checks the instance configuration: the YAML file, the secrets it points to, and derived values.

use std::path::{Path, PathBuf};

use canal_api::{InstanceConfig, SecretSource};

use crate::convert::filter::FieldFilter;
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

/// The checks live in canal-api, so the operator refuses exactly what the instance refuses, with the same message.
fn validate(config: &InstanceConfig) -> Result<()> {
    Ok(canal_api::validate(config)?)
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
