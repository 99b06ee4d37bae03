//! Where transactions begin and end in a binlog, and the MariaDB GTID event that mysql_common leaves undecoded.
//!
//! Both readers of transaction boundaries use this: the converter, which delivers TRANSACTIONBEGIN and
//! TRANSACTIONEND entries, and the search for a start time, which must start at a transaction's first event.

use mysql_common::binlog::events::{Event, EventData};

/// MariaDB's GTID event type code, which mysql_common reads as an unknown event.
pub const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB GTID flag: the event group has no BEGIN/COMMIT (DDL and non-transactional statements).
const MARIADB_FL_STANDALONE: u8 = 1;
/// MariaDB GTID flag: a group commit id (8 bytes) follows the flags.
const MARIADB_FL_GROUP_COMMIT_ID: u8 = 2;
/// MariaDB GTID flag: the group is the first phase of an XA transaction, ended by `XA END` and XA PREPARE.
const MARIADB_FL_PREPARED_XA: u8 = 64;
/// MariaDB GTID flag: the group is the `XA COMMIT` or `XA ROLLBACK` of a prepared XA transaction.
const MARIADB_FL_COMPLETED_XA: u8 = 128;

/// The XA role of a MariaDB event group, with the XID as MySQL prints it (`X'6731',X'',1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MariaDbXa {
    /// The group opens with an implicit `XA START` of this XID.
    Prepared(String),
    /// The group is the `XA COMMIT`/`XA ROLLBACK` statement of this XID.
    Completed(String),
}

/// A MariaDB GTID event: `domain-server-seq` of the event group that follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MariaDbGtid {
    pub domain: u32,
    pub seq: u64,
    /// The group is one statement without BEGIN/COMMIT.
    pub standalone: bool,
    pub xa: Option<MariaDbXa>,
}

impl MariaDbGtid {
    /// Reads the event body: seq_no u64, domain_id u32, flags u8, all little-endian; then a commit id (u64) when
    /// flagged, and for an XA group the XID: formatID u32, gtrid and bqual lengths (u8 each) and their bytes.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let too_short = || format!("MariaDB GTID event too short ({} bytes)", data.len());
        let seq = data.get(..8).ok_or_else(too_short)?;
        let domain = data.get(8..12).ok_or_else(too_short)?;
        let flags = *data.get(12).ok_or_else(too_short)?;
        let mut rest = data.get(13..).ok_or_else(too_short)?;
        if flags & MARIADB_FL_GROUP_COMMIT_ID != 0 {
            rest = rest.get(8..).ok_or_else(too_short)?;
        }
        let xa = if flags & (MARIADB_FL_PREPARED_XA | MARIADB_FL_COMPLETED_XA) != 0 {
            let format_id = rest.get(..4).ok_or_else(too_short)?;
            let format_id = i32::from_le_bytes(format_id.try_into().map_err(|_| too_short())?);
            let gtrid_length = usize::from(*rest.get(4).ok_or_else(too_short)?);
            let bqual_length = usize::from(*rest.get(5).ok_or_else(too_short)?);
            let gtrid = rest.get(6..6 + gtrid_length).ok_or_else(too_short)?;
            let bqual = rest
                .get(6 + gtrid_length..6 + gtrid_length + bqual_length)
                .ok_or_else(too_short)?;
            let xid = format!("X'{}',X'{}',{format_id}", hex::encode(gtrid), hex::encode(bqual));
            Some(if flags & MARIADB_FL_PREPARED_XA != 0 {
                MariaDbXa::Prepared(xid)
            } else {
                MariaDbXa::Completed(xid)
            })
        } else {
            None
        };
        Ok(Self {
            seq: u64::from_le_bytes(seq.try_into().map_err(|_| too_short())?),
            domain: u32::from_le_bytes(domain.try_into().map_err(|_| too_short())?),
            standalone: flags & MARIADB_FL_STANDALONE != 0,
            xa,
        })
    }
}

/// What a QUERY event's statement means for transaction boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryBoundary {
    Begin,
    Commit,
    /// `XA START xid`: opens an XA transaction (MySQL; MariaDB flags its GTID event instead).
    XaStart,
    /// `XA END xid`: the last event of an XA transaction's first phase; the XA PREPARE event follows.
    XaEnd,
    /// `XA COMMIT xid`, a group of its own.
    XaCommit,
    /// `XA ROLLBACK xid`, a group of its own.
    XaRollback,
    /// MariaDB's placeholder for an event the replica did not declare it understands; carries nothing.
    Placeholder,
    /// Any other statement: inside a transaction it is content, outside it is a transaction of its own.
    Statement,
}

impl QueryBoundary {
    pub fn of(sql: &str) -> Self {
        let trimmed = sql.trim();
        if let Some((boundary, _)) = Self::xa(trimmed) {
            boundary
        } else if trimmed.eq_ignore_ascii_case("BEGIN") {
            QueryBoundary::Begin
        } else if trimmed.eq_ignore_ascii_case("COMMIT") {
            QueryBoundary::Commit
        } else if trimmed.starts_with("# Dummy event") {
            QueryBoundary::Placeholder
        } else {
            QueryBoundary::Statement
        }
    }

    /// An XA statement's boundary and the text after its keywords (the XID, with the space before it, as canal
    /// reports it in `XA_XID`).
    pub fn xa(sql: &str) -> Option<(Self, &str)> {
        const KEYWORDS: [(&str, QueryBoundary); 4] = [
            ("XA START", QueryBoundary::XaStart),
            ("XA END", QueryBoundary::XaEnd),
            ("XA COMMIT", QueryBoundary::XaCommit),
            ("XA ROLLBACK", QueryBoundary::XaRollback),
        ];
        let sql = sql.trim_start();
        KEYWORDS.iter().find_map(|(keyword, boundary)| {
            let head = sql.get(..keyword.len())?;
            head.eq_ignore_ascii_case(keyword)
                .then(|| (*boundary, &sql[keyword.len()..]))
        })
    }

    /// The name canal gives the statement in `XA_TYPE`.
    pub fn xa_type(self) -> Option<&'static str> {
        match self {
            QueryBoundary::XaStart => Some("XA START"),
            QueryBoundary::XaEnd => Some("XA END"),
            QueryBoundary::XaCommit => Some("XA COMMIT"),
            QueryBoundary::XaRollback => Some("XA ROLLBACK"),
            _ => None,
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
                self.in_transaction = matches!(
                    QueryBoundary::of(&query.query()),
                    QueryBoundary::Begin | QueryBoundary::XaStart
                );
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
                standalone: true,
                xa: None,
            })
        );
        for cut in 0..body.len() {
            assert!(MariaDbGtid::parse(&body[..cut]).is_err(), "{cut} bytes");
        }
    }

    #[test]
    fn an_xa_gtid_event_carries_its_xid_as_mysql_prints_it() {
        let mut body = 3u64.to_le_bytes().to_vec();
        body.extend(0u32.to_le_bytes());
        body.push(MARIADB_FL_PREPARED_XA | MARIADB_FL_GROUP_COMMIT_ID);
        body.extend(99u64.to_le_bytes());
        body.extend(7i32.to_le_bytes());
        body.extend([2, 2]);
        body.extend(b"g1b1");
        let gtid = MariaDbGtid::parse(&body).unwrap();
        assert_eq!(gtid.xa, Some(MariaDbXa::Prepared("X'6731',X'6231',7".into())));
        assert!(!gtid.standalone);
        for cut in 13..body.len() {
            assert!(MariaDbGtid::parse(&body[..cut]).is_err(), "{cut} bytes");
        }
        body[12] = MARIADB_FL_COMPLETED_XA;
        body.drain(13..21);
        assert_eq!(
            MariaDbGtid::parse(&body).unwrap().xa,
            Some(MariaDbXa::Completed("X'6731',X'6231',7".into()))
        );
    }

    #[test]
    fn xa_statements_are_boundaries_with_the_xid_after_their_keywords() {
        assert_eq!(
            QueryBoundary::xa("XA START X'67',X'',1"),
            Some((QueryBoundary::XaStart, " X'67',X'',1"))
        );
        assert_eq!(QueryBoundary::of("XA END X'67',X'',1"), QueryBoundary::XaEnd);
        assert_eq!(QueryBoundary::of("xa commit X'67',X'',1"), QueryBoundary::XaCommit);
        assert_eq!(QueryBoundary::of("XA ROLLBACK X'67',X'',1"), QueryBoundary::XaRollback);
        assert_eq!(QueryBoundary::of("XA RECOVER"), QueryBoundary::Statement);
        assert_eq!(QueryBoundary::XaEnd.xa_type(), Some("XA END"));
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
