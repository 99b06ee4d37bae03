//! GTIDs and GTID positions: MariaDB's `domain-server-seq` per replication domain, and MySQL's GTID sets
//! (`uuid[:tag]:1-5:7`), as a cursor carries them in `postion.gtid`.

use std::collections::BTreeMap;
use std::fmt;

/// The GTID of one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gtid {
    MariaDb {
        domain: u32,
        server: u32,
        seq: u64,
    },
    /// `source` is the server UUID, with `:tag` for MySQL 8.4 tagged GTIDs.
    MySql {
        source: String,
        gno: u64,
    },
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb { domain, server, seq } => write!(f, "{domain}-{server}-{seq}"),
            Gtid::MySql { source, gno } => write!(f, "{source}:{gno}"),
        }
    }
}

/// A MariaDB GTID position (`domain-server-seq[,...]`) with its parts trimmed; `None` when it is not one. Only
/// digits, dashes and commas pass, so the result can be quoted into a statement.
pub fn mariadb_position(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let valid = parts.iter().all(|part| {
        let numbers: Vec<&str> = part.split('-').collect();
        numbers.len() == 3
            && numbers
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    valid.then(|| parts.join(","))
}

/// One source of a MySQL GTID set: a server UUID (with an optional MySQL 8.4 tag) and its GNO intervals, inclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MysqlGtidSource {
    pub uuid: [u8; 16],
    pub tag: Option<String>,
    pub intervals: Vec<(u64, u64)>,
}

impl MysqlGtidSource {
    /// The source as [`GtidPosition`] names it: `uuid[:tag]`.
    pub fn name(&self) -> String {
        mysql_source(&self.uuid, self.tag.as_deref())
    }

    /// Whether transaction `gno` of this source is in the set.
    pub fn contains(&self, gno: u64) -> bool {
        self.intervals.iter().any(|&(start, end)| (start..=end).contains(&gno))
    }
}

/// Parses a MySQL GTID set (`uuid:1-5:7,uuid2:tag:1-3`); `None` when it is not one.
pub fn mysql_set(text: &str) -> Option<Vec<MysqlGtidSource>> {
    let mut sources = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut fields = part.split(':');
        let uuid = parse_uuid(fields.next()?)?;
        let mut current = MysqlGtidSource {
            uuid,
            tag: None,
            intervals: Vec::new(),
        };
        for field in fields {
            let field = field.trim();
            if field.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                // A tag starts a new group of intervals for the same UUID.
                let valid = field.len() <= 32 && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return None;
                }
                if !current.intervals.is_empty() {
                    sources.push(current.clone());
                }
                current = MysqlGtidSource {
                    uuid,
                    tag: Some(field.to_ascii_lowercase()),
                    intervals: Vec::new(),
                };
                continue;
            }
            let (start, end) = match field.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let n = field.parse().ok()?;
                    (n, n)
                }
            };
            if start == 0 || end < start {
                return None;
            }
            current.intervals.push((start, end));
        }
        if current.intervals.is_empty() {
            return None;
        }
        sources.push(current);
    }
    (!sources.is_empty()).then_some(sources)
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex_digits: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex_digits.len() != 32 || text.trim().len() != 36 {
        return None;
    }
    hex::decode(hex_digits).ok()?.try_into().ok()
}

/// A MySQL GTID source: the server UUID in text form, with `:tag` for MySQL 8.4 tagged GTIDs.
pub fn mysql_source(uuid: &[u8; 16], tag: Option<impl fmt::Display>) -> String {
    match tag {
        Some(tag) => format!("{}:{tag}", uuid_text(uuid)),
        None => uuid_text(uuid),
    }
}

/// A server UUID in MySQL's text form.
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&uuid[..4]),
        hex::encode(&uuid[4..6]),
        hex::encode(&uuid[6..8]),
        hex::encode(&uuid[8..10]),
        hex::encode(&uuid[10..])
    )
}

/// The GTID position after the transactions read so far.
#[derive(Clone, Debug, Default)]
pub struct GtidPosition {
    /// MariaDB: the last GTID of each domain.
    domains: BTreeMap<u32, Gtid>,
    /// MySQL: executed GNOs per source, as sorted, disjoint, inclusive intervals.
    sets: BTreeMap<String, Vec<(u64, u64)>>,
    /// The position's text, rendered when it changes (once per transaction) rather than for every entry read.
    rendered: Option<String>,
}

impl GtidPosition {
    /// Adds MariaDB's position text (`0-1-100,1-2-7`); malformed parts are ignored.
    pub fn seed_mariadb(&mut self, position: &str) {
        for part in position.split(',').map(str::trim) {
            let numbers: Vec<&str> = part.split('-').collect();
            if let [domain, server, seq] = numbers[..]
                && let (Ok(domain), Ok(server), Ok(seq)) = (domain.parse(), server.parse(), seq.parse())
            {
                self.domains.insert(domain, Gtid::MariaDb { domain, server, seq });
            }
        }
        self.render();
    }

    /// Adds MySQL's previous-GTIDs of a file: `start..end` intervals with `end` exclusive, as the binlog has them.
    pub fn seed_mysql(&mut self, source: &str, intervals: impl IntoIterator<Item = (u64, u64)>) {
        for (start, end) in intervals {
            if end > start {
                self.add_interval(source, start, end - 1);
            }
        }
    }

    /// Adds a GTID position in either server's text form: a MySQL GTID set or MariaDB's `domain-server-seq` list.
    pub fn seed(&mut self, position: &str) {
        match mysql_set(position) {
            Some(sources) => {
                for source in sources {
                    let name = source.name();
                    for (start, end) in source.intervals {
                        self.add_interval(&name, start, end);
                    }
                }
            }
            None => self.seed_mariadb(position),
        }
    }

    /// Records a completed transaction.
    pub fn complete(&mut self, gtid: &Gtid) {
        match gtid {
            Gtid::MariaDb { domain, .. } => {
                self.domains.insert(*domain, gtid.clone());
                self.render();
            }
            Gtid::MySql { source, gno } => self.add_interval(source, *gno, *gno),
        }
    }

    fn add_interval(&mut self, source: &str, start: u64, end: u64) {
        let intervals = self.sets.entry(source.to_string()).or_default();
        intervals.push((start, end));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(s, e) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *intervals = merged;
        self.render();
    }

    /// The position as text: MariaDB's `d-s-n,...` or MySQL's GTID set; `None` before any GTID is known.
    pub fn text(&self) -> Option<String> {
        self.rendered.clone()
    }

    fn render(&mut self) {
        let mut parts: Vec<String> = self.domains.values().map(Gtid::to_string).collect();
        for (source, intervals) in &self.sets {
            let ranges: Vec<String> = intervals
                .iter()
                .map(|&(s, e)| if s == e { s.to_string() } else { format!("{s}-{e}") })
                .collect();
            parts.push(format!("{source}:{}", ranges.join(":")));
        }
        self.rendered = (!parts.is_empty()).then(|| parts.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_sets_parse_with_tags_and_reject_garbage() {
        let set = mysql_set("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7, 3e11fa47-71ca-11e1-9e33-c80aa9429562:blue:2")
            .expect("a set");
        assert_eq!(set.len(), 2);
        assert_eq!(set[0].intervals, [(1, 5), (7, 7)]);
        assert!(set[0].contains(3) && !set[0].contains(6));
        assert_eq!(set[1].name(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:blue");
        for bad in [
            "",
            "0-1-100",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562",
            "3e11fa47:1-5",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-1",
        ] {
            assert!(mysql_set(bad).is_none(), "{bad}");
        }
        let mut position = GtidPosition::default();
        position.seed("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7");
        position.complete(&Gtid::MySql {
            source: "3e11fa47-71ca-11e1-9e33-c80aa9429562".into(),
            gno: 6,
        });
        assert_eq!(
            position.text().as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7")
        );
    }

    #[test]
    fn mariadb_positions_are_checked_and_trimmed() {
        assert_eq!(mariadb_position("0-1-100, 1-2-7").as_deref(), Some("0-1-100,1-2-7"));
        for bad in ["", "0-1", "0-1-x", "0-1-2,", "0-1-2'; DROP"] {
            assert_eq!(mariadb_position(bad), None, "{bad}");
        }
    }

    #[test]
    fn mariadb_position_keeps_the_last_gtid_of_each_domain() {
        let mut position = GtidPosition::default();
        position.seed_mariadb("0-1-100, 1-2-7, junk");
        position.complete(&Gtid::MariaDb {
            domain: 0,
            server: 3,
            seq: 101,
        });
        assert_eq!(position.text().as_deref(), Some("0-3-101,1-2-7"));
    }

    #[test]
    fn mysql_sets_merge_adjacent_and_overlapping_intervals() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut position = GtidPosition::default();
        position.seed_mysql(uuid, [(1, 6), (9, 10)]);
        for gno in [6, 7, 11] {
            position.complete(&Gtid::MySql {
                source: uuid.into(),
                gno,
            });
        }
        assert_eq!(position.text().unwrap(), format!("{uuid}:1-7:9:11"));
        position.complete(&Gtid::MySql {
            source: uuid.into(),
            gno: 10,
        });
        position.complete(&Gtid::MySql {
            source: uuid.into(),
            gno: 8,
        });
        assert_eq!(position.text().unwrap(), format!("{uuid}:1-11"));
        assert_eq!(GtidPosition::default().text(), None);
    }
}
