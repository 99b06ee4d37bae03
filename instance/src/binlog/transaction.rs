//! Where transactions begin and end in a binlog, and the MariaDB GTID event that mysql_common leaves undecoded.
//!
//! Both readers of transaction boundaries use this: the converter, which delivers TRANSACTIONBEGIN and
//! TRANSACTIONEND entries, and the search for a start time, which must start at a transaction's first event.

use mysql_common::binlog::events::{Event, EventData};

/// MariaDB's GTID event type code, which mysql_common reads as an unknown event.
pub const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB GTID flag: the event group has no BEGIN/COMMIT (DDL and non-transactional statements).
const MARIADB_FL_STANDALONE: u8 = 1;

/// A MariaDB GTID event: `domain-server-seq` of the event group that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MariaDbGtid {
    pub domain: u32,
    pub seq: u64,
    /// The group is one statement without BEGIN/COMMIT.
    pub standalone: bool,
}

impl MariaDbGtid {
    /// Reads the event body: seq_no u64, domain_id u32, flags u8, all little-endian.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let too_short = || format!("MariaDB GTID event too short ({} bytes)", data.len());
        let seq = data.get(..8).ok_or_else(too_short)?;
        let domain = data.get(8..12).ok_or_else(too_short)?;
        let flags = *data.get(12).ok_or_else(too_short)?;
        Ok(Self {
            seq: u64::from_le_bytes(seq.try_into().map_err(|_| too_short())?),
            domain: u32::from_le_bytes(domain.try_into().map_err(|_| too_short())?),
            standalone: flags & MARIADB_FL_STANDALONE != 0,
        })
    }
}

/// What a QUERY event's statement means for transaction boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryBoundary {
    Begin,
    Commit,
    /// MariaDB's placeholder for an event the replica did not declare it understands; carries nothing.
    Placeholder,
    /// Any other statement: inside a transaction it is content, outside it is a transaction of its own.
    Statement,
}

impl QueryBoundary {
    pub fn of(sql: &str) -> Self {
        let trimmed = sql.trim();
        if trimmed.eq_ignore_ascii_case("BEGIN") {
            QueryBoundary::Begin
        } else if trimmed.eq_ignore_ascii_case("COMMIT") {
            QueryBoundary::Commit
        } else if trimmed.starts_with("# Dummy event") {
            QueryBoundary::Placeholder
        } else {
            QueryBoundary::Statement
        }
    }
}

/// Follows transaction boundaries event by event, knowing nothing else of the events.
#[derive(Debug, Default)]
pub struct Boundaries {
    in_transaction: bool,
}

impl Boundaries {
    /// Whether `event` is the first event of a transaction (a GTID event, a BEGIN, or a statement of its own).
    pub fn opens(&mut self, event: &Event) -> bool {
        if event.header().event_type_raw() == MARIADB_GTID_EVENT {
            return !std::mem::replace(&mut self.in_transaction, true);
        }
        match event.read_data() {
            Ok(Some(EventData::GtidEvent(_))) => !std::mem::replace(&mut self.in_transaction, true),
            Ok(Some(EventData::QueryEvent(query))) => {
                let opens = !self.in_transaction;
                self.in_transaction = QueryBoundary::of(&query.query()) == QueryBoundary::Begin;
                opens
            }
            Ok(Some(EventData::XidEvent(_))) => {
                self.in_transaction = false;
                false
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mariadb_gtid_event_is_read_without_reading_past_its_end() {
        let mut body = 7u64.to_le_bytes().to_vec();
        body.extend(2u32.to_le_bytes());
        body.push(MARIADB_FL_STANDALONE);
        assert_eq!(
            MariaDbGtid::parse(&body),
            Ok(MariaDbGtid {
                domain: 2,
                seq: 7,
                standalone: true
            })
        );
        for cut in 0..body.len() {
            assert!(MariaDbGtid::parse(&body[..cut]).is_err(), "{cut} bytes");
        }
    }

    #[test]
    fn queries_are_read_as_boundaries_whatever_their_case_and_spacing() {
        assert_eq!(QueryBoundary::of(" begin "), QueryBoundary::Begin);
        assert_eq!(QueryBoundary::of("COMMIT"), QueryBoundary::Commit);
        assert_eq!(
            QueryBoundary::of("# Dummy event replacing event type 160"),
            QueryBoundary::Placeholder
        );
        assert_eq!(QueryBoundary::of("CREATE TABLE t (id int)"), QueryBoundary::Statement);
    }
}
