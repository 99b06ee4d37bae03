//! Checks an [`InstanceConfig`] beyond what its types and the CRD schema can say: addresses, start positions,
//! filter regexes, field lists, the time zone. It lives in the API crate so that canal-instance (at start) and the
//! operator (before it deploys anything) reject exactly the same configurations with the same messages. Every
//! message names the field and says what a valid value looks like.

use std::collections::{BTreeMap, BTreeSet};

use regex::RegexSet;

use crate::InstanceConfig;

/// Why a configuration is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid config: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("invalid {field} regex `{pattern}`: {message}")]
    FilterRegex {
        field: String,
        pattern: String,
        message: String,
    },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Validates every field of `config`. Secrets are not read here: where they come from is checked by whoever reads
/// them (the instance at start; in Kubernetes the operator checks that the Secrets exist).
pub fn validate(config: &InstanceConfig) -> Result<(), ConfigError> {
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
        if start
            .gtid
            .as_deref()
            .is_some_and(|g| !is_mariadb_position(g) && !is_mysql_gtid_set(g))
        {
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
    table_regexes("filter.include", &config.filter.include)?;
    table_regexes("filter.exclude", &config.filter.exclude)?;
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
    if let Err(e) = jiff::tz::TimeZone::get(&config.time_zone) {
        return Err(invalid(
            "timeZone",
            format!(
                "unknown time zone `{}` ({e}); use an IANA name such as UTC or Asia/Shanghai",
                config.time_zone
            ),
        ));
    }
    field_list("filter.includeFields", &config.filter.include_fields)?;
    field_list("filter.excludeFields", &config.filter.exclude_fields)?;
    Ok(())
}

fn validate_address(address: &str) -> Result<(), ConfigError> {
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

/// Whether `text` is a MariaDB GTID position: `domain-server-seq`, one per domain, comma-separated.
pub fn is_mariadb_position(text: &str) -> bool {
    text.split(',').map(str::trim).all(|part| {
        let numbers: Vec<&str> = part.split('-').collect();
        numbers.len() == 3
            && numbers
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Whether `text` is a MySQL GTID set: `uuid[:tag]:interval[:interval...]` per source, comma-separated, where an
/// interval is `n` or `a-b` with `0 < a <= b`.
pub fn is_mysql_gtid_set(text: &str) -> bool {
    let mut sources = 0;
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut fields = part.split(':');
        if !fields.next().is_some_and(is_uuid) {
            return false;
        }
        // Each tag opens a group that needs at least one interval, as does the untagged group.
        let mut intervals_in_group = 0;
        for field in fields.map(str::trim) {
            if field.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                let valid = field.len() <= 32 && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return false;
                }
                intervals_in_group = 0;
                continue;
            }
            let (start, end) = match field.split_once('-') {
                Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
                None => (field.parse(), field.parse()),
            };
            match (start, end) {
                (Ok(start), Ok(end)) if start > 0 && end >= start => intervals_in_group += 1,
                _ => return false,
            }
        }
        if intervals_in_group == 0 {
            return false;
        }
        sources += 1;
    }
    sources > 0
}

fn is_uuid(text: &str) -> bool {
    let text = text.trim();
    let digits = text.chars().filter(|c| *c != '-').collect::<String>();
    text.len() == 36 && digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compiles canal's comma-separated table regex list (matched against the whole lowercase `schema.table`, ignoring
/// case); `None` for an empty list. Perl-only constructs that canal accepts but Rust's regex engine does not are
/// refused by name rather than misread.
pub fn table_regexes(field: &str, list: &str) -> Result<Option<RegexSet>, ConfigError> {
    let pieces = split_list(list);
    if pieces.is_empty() {
        return Ok(None);
    }
    for piece in &pieces {
        if let Some(construct) = perl_only(piece) {
            return Err(ConfigError::FilterRegex {
                field: field.into(),
                pattern: piece.clone(),
                message: format!(
                    "{construct} is Perl regex syntax that canal accepts but canal-rs does not; list the tables to \
                     include or exclude instead"
                ),
            });
        }
    }
    RegexSet::new(pieces.iter().map(|p| format!("(?is)^(?:{p})$")))
        .map(Some)
        .map_err(|e| ConfigError::FilterRegex {
            field: field.into(),
            pattern: list.into(),
            message: e.to_string(),
        })
}

/// The first Perl-only construct in `pattern`, named for the error message.
/// One canal regex (Perl syntax as canal reads it): matches the whole name, ignoring case.
pub fn canal_regex(field: &str, pattern: &str) -> Result<regex::Regex, ConfigError> {
    if let Some(construct) = perl_only(pattern) {
        return Err(ConfigError::FilterRegex {
            field: field.into(),
            pattern: pattern.into(),
            message: format!("{construct} is Perl regex syntax that canal accepts but canal-rs does not"),
        });
    }
    regex::Regex::new(&format!("(?is)^(?:{pattern})$")).map_err(|e| ConfigError::FilterRegex {
        field: field.into(),
        pattern: pattern.into(),
        message: e.to_string(),
    })
}

fn perl_only(pattern: &str) -> Option<&'static str> {
    const CONSTRUCTS: [(&str, &str); 7] = [
        ("(?=", "look-ahead `(?=`"),
        ("(?!", "negative look-ahead `(?!`"),
        ("(?<=", "look-behind `(?<=`"),
        ("(?<!", "negative look-behind `(?<!`"),
        ("(?>", "an atomic group `(?>`"),
        ("(?(", "a conditional `(?(`"),
        ("\\k<", "a named back-reference `\\k<`"),
    ];
    if let Some((_, name)) = CONSTRUCTS.iter().find(|(token, _)| pattern.contains(token)) {
        return Some(name);
    }
    let bytes = pattern.as_bytes();
    let mut escaped = false;
    for (i, b) in bytes.iter().enumerate() {
        if escaped {
            if (b'1'..=b'9').contains(b) {
                return Some("a back-reference such as `\\1`");
            }
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'*' | b'+' | b'?' | b'}' if bytes.get(i + 1) == Some(&b'+') && i > 0 => {
                return Some("a possessive quantifier such as `*+`");
            }
            _ => {}
        }
    }
    None
}

/// Splits canal's list on commas outside `{}`, `[]` and `()`; a backslash escapes the next character.
fn split_list(list: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '{' | '[' | '(' => {
                depth += 1;
                current.push(c);
            }
            '}' | ']' | ')' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth <= 0 => pieces.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    pieces.push(current);
    pieces
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Parses canal's column list `schema.table:col1/col2,schema.t2:c` into upper-cased `SCHEMA.TABLE` → columns.
pub fn field_list(field: &str, list: &str) -> Result<BTreeMap<String, BTreeSet<String>>, ConfigError> {
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let refuse = |message: &str| {
            invalid(
                field,
                format!("`{item}`: {message}; the format is schema.table:col1/col2,schema.table2:col"),
            )
        };
        let (table, columns) = item
            .split_once(':')
            .ok_or_else(|| refuse("no `:` before the columns"))?;
        if !table.contains('.') {
            return Err(refuse("the table must be written schema.table"));
        }
        let columns: BTreeSet<String> = columns
            .split('/')
            .map(|c| c.trim().to_uppercase())
            .filter(|c| !c.is_empty())
            .collect();
        if columns.is_empty() {
            return Err(refuse("no columns listed"));
        }
        tables.entry(table.trim().to_uppercase()).or_default().extend(columns);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "destination: example\nsource:\n  address: 127.0.0.1:3306\n  username: canal\n";

    fn check(yaml: &str) -> Result<(), ConfigError> {
        validate(&serde_yaml::from_str(yaml).expect("config parses"))
    }

    #[test]
    fn minimal_config_is_valid() {
        check(MINIMAL).unwrap();
    }

    #[test]
    fn invalid_values_name_the_field_and_the_fix() {
        let cases = [
            (
                MINIMAL.replace("127.0.0.1:3306", "localhost"),
                "source.address",
                "host:port",
            ),
            (
                format!("{MINIMAL}store:\n  bufferSize: 0\n"),
                "store.bufferSize",
                "greater than 0",
            ),
            (
                format!("{MINIMAL}filter:\n  include: 'a(b'\n"),
                "filter.include",
                "regex",
            ),
            (
                format!("{MINIMAL}filter:\n  exclude: '(?!x)'\n"),
                "filter.exclude",
                "Perl",
            ),
            (format!("{MINIMAL}timeZone: Mars/Base\n"), "timeZone", "IANA name"),
            (format!("{MINIMAL}start:\n  position: 4\n"), "start", "give journalName"),
            (
                format!("{MINIMAL}start:\n  gtid: '0-1'\n"),
                "start.gtid",
                "such as 0-1-100",
            ),
            (
                format!("{MINIMAL}start:\n  timestamp: -5\n"),
                "start.timestamp",
                "milliseconds",
            ),
            (
                format!("{MINIMAL}filter:\n  includeFields: 'shop.t'\n"),
                "filter.includeFields",
                "the format is",
            ),
            (
                format!("{MINIMAL}zookeeper:\n  servers: ''\n"),
                "zookeeper.servers",
                "host:port",
            ),
        ];
        for (yaml, field, fix) in cases {
            let message = check(&yaml).unwrap_err().to_string();
            assert!(message.contains(field) && message.contains(fix), "{field}: {message}");
        }
    }

    #[test]
    fn gtid_syntaxes() {
        assert!(is_mariadb_position("0-1-100"));
        assert!(is_mariadb_position("0-1-100, 1-2-7"));
        assert!(!is_mariadb_position("0-1"));
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert!(is_mysql_gtid_set(&format!("{uuid}:1-5")));
        assert!(is_mysql_gtid_set(&format!("{uuid}:1-5:7,{uuid}:tag_1:3")));
        assert!(!is_mysql_gtid_set(&format!("{uuid}:5-1")));
        assert!(!is_mysql_gtid_set(&format!("{uuid}:0")));
        assert!(!is_mysql_gtid_set(&format!("{uuid}:tag")), "a tag needs intervals");
        assert!(!is_mysql_gtid_set("not-a-uuid:1"));
    }

    #[test]
    fn table_lists_split_outside_brackets() {
        let set = table_regexes("filter.include", "shop\\.orders_{0,1}\\d{1,2},test\\..*")
            .unwrap()
            .unwrap();
        assert!(set.is_match("shop.orders_12") && set.is_match("test.x") && !set.is_match("shop.orders_123"));
        assert!(table_regexes("filter.include", " ").unwrap().is_none());
    }
}
