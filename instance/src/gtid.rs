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
    }

    /// Adds MySQL's previous-GTIDs of a file: `start..end` intervals with `end` exclusive, as the binlog has them.
    pub fn seed_mysql(&mut self, source: &str, intervals: impl IntoIterator<Item = (u64, u64)>) {
        for (start, end) in intervals {
            if end > start {
                self.add_interval(source, start, end - 1);
            }
        }
    }

    /// Records a completed transaction.
    pub fn complete(&mut self, gtid: &Gtid) {
        match gtid {
            Gtid::MariaDb { domain, .. } => {
                self.domains.insert(*domain, gtid.clone());
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
    }

    /// The position as text: MariaDB's `d-s-n,...` or MySQL's GTID set; `None` before any GTID is known.
    pub fn text(&self) -> Option<String> {
        let mut parts: Vec<String> = self.domains.values().map(Gtid::to_string).collect();
        for (source, intervals) in &self.sets {
            let ranges: Vec<String> = intervals
                .iter()
                .map(|&(s, e)| if s == e { s.to_string() } else { format!("{s}-{e}") })
                .collect();
            parts.push(format!("{source}:{}", ranges.join(":")));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
