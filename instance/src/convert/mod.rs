//! Turns binlog events into canal Entries.
//!
//! One event yields at most one Entry, so an entry is identified by the binlog position of its event. The converter
//! tracks the current binlog file and transaction, keeps the table maps, applies the table filter, and attaches to
//! every entry the [`ResumePoint`] that reproduces the stream right after it.

mod encode;
pub mod filter;
mod rows;
pub mod value;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mysql_common::binlog::consts::EventFlags;
use mysql_common::binlog::events::{Event, EventData};
use prost::Message;

use crate::binlog::gtid::{Gtid, GtidPosition, mysql_source};
use crate::binlog::position::{BinlogPosition, ResumePoint};
use crate::binlog::transaction::{MARIADB_GTID_EVENT, MariaDbGtid, MariaDbXa, QueryBoundary};
use crate::convert::filter::{FieldFilter, TableFilter};
use crate::error::{Error, Result};
use crate::protocol::entry::{self as canal, Entry, Header, Pair, RowChange, TransactionBegin, TransactionEnd};
use crate::protocol::{EntryType, EventType};
use crate::schema::SchemaTracker;
use crate::schema::charset::decode_text;
use crate::schema::column_type::Dialect;
use value::java_float;

/// MariaDB's ANNOTATE_ROWS event: the text of the statement whose row events follow (mysql_common leaves it
/// undecoded).
const MARIADB_ANNOTATE_ROWS_EVENT: u8 = 160;
/// The TABLE_MAP event type, the only event that may stand between a statement's text and its rows.
const TABLE_MAP_EVENT: u8 = 19;
/// The QUERY event type, and the events that carry a statement's context just before it (statement-based
/// replication): INSERT_ID/LAST_INSERT_ID, RAND() seeds, user variables.
const QUERY_EVENT: u8 = 2;
const INTVAR_EVENT: u8 = 5;
const RAND_EVENT: u8 = 13;
const USER_VAR_EVENT: u8 = 14;

/// canal lets an empty transaction (all its rows filtered out) through at most this often, so cursors still move.
const EMPTY_TRANSACTION_INTERVAL: Duration = Duration::from_secs(5);

/// canal's `XA_TYPE` and `XA_XID` props.
fn xa_props(xa_type: &str, xid: &str) -> Vec<Pair> {
    vec![
        Pair {
            key: Some("XA_TYPE".into()),
            value: Some(xa_type.into()),
        },
        Pair {
            key: Some("XA_XID".into()),
            value: Some(xid.into()),
        },
    ]
}

/// The XA props of an `XA ...` statement: its keywords, and the rest of the text as the XID.
fn xa_statement_props(sql: &str) -> Vec<Pair> {
    match QueryBoundary::xa(sql) {
        Some((boundary, xid)) => xa_props(boundary.xa_type().unwrap_or_default(), xid),
        None => Vec::new(),
    }
}

/// What kind of boundary an entry is; the store and cursors care about transaction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Begin,
    Row,
    End,
    /// DDL or another statement outside row events.
    Statement,
}

/// An encoded Entry and what the rest of the pipeline needs to know about it without decoding it.
#[derive(Clone, Debug)]
pub struct Converted {
    pub bytes: Bytes,
    pub kind: EntryKind,
    pub position: BinlogPosition,
    /// Binlog event length: the unit of canal's MEMSIZE accounting.
    pub event_length: u64,
    /// Event time, milliseconds since the epoch.
    pub execute_time: i64,
    pub server_id: u32,
    pub rows: usize,
    /// Where to restart so that the next entry after this one comes first.
    pub resume_after: ResumePoint,
    /// On a transaction end or standalone statement: the GTID position after it (MariaDB's `domain-server-seq`
    /// per domain, or MySQL's GTID set), for cursors, once GTIDs are known.
    pub gtid: Option<String>,
}

/// Static conversion options.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub ddl: bool,
    pub dcl: bool,
    pub dml: bool,
    pub rows: bool,
    pub transaction_entries: bool,
    pub fields: FieldFilter,
    pub time_zone: jiff::tz::TimeZone,
}

impl Default for ConvertOptions {
    /// Everything delivered, timestamps in UTC: canal's defaults.
    fn default() -> Self {
        Self {
            ddl: true,
            dcl: true,
            dml: true,
            rows: true,
            transaction_entries: true,
            fields: FieldFilter::default(),
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }
}

/// The conversion state for one binlog stream.
pub struct Converter {
    options: ConvertOptions,
    filter: Arc<RwLock<TableFilter>>,
    schema: SchemaTracker,
    /// Which columns of each mapped table the field filter delivers; `None` for all.
    delivered: HashMap<u64, Option<Vec<bool>>>,
    journal: String,
    /// Offset of the event that opened the current transaction (GTID or BEGIN), if inside one.
    txn_start: Option<u64>,
    /// A GTID event seen before its BEGIN query (MySQL) or before a standalone statement (MariaDB).
    gtid_start: Option<u64>,
    pending_begin: Option<Converted>,
    /// The statement text of the row events that follow (MariaDB's annotate rows, MySQL's rows query), held back
    /// until a TABLE_MAP shows that one of its tables passes the filter.
    pending_statement: Option<PendingStatement>,
    /// The context of the statement that follows (canal's `SET INSERT_ID = 5`, ...), held until that statement
    /// proves to be delivered.
    statement_context: Vec<PendingStatement>,
    txn_has_content: bool,
    last_empty_emit: Option<Instant>,
    skip: Option<ResumePoint>,
    /// Whether the binlog was written by MariaDB, from its format description event.
    mariadb: bool,
    /// How the server that wrote the binlog prints column types, from the same event.
    dialect: Dialect,
    /// The GTID of the transaction being read (MariaDB `domain-server-seq`, MySQL `uuid:gno`).
    txn_gtid: Option<Gtid>,
    /// The GTID position after the transactions completed so far.
    gtids: GtidPosition,
    /// The server's binlog files, to read the name in a connection's first ROTATE.
    files: Vec<String>,
    /// `@@server_id` of the server whose binlog is read, when known.
    source_server_id: Option<u32>,
}

/// A row statement's text waiting for the table maps of its rows.
struct PendingStatement {
    sql: String,
    info: EventInfo,
    /// MySQL's rows query entry names the table (canal parses it from the text); MariaDB's annotate does not.
    names_table: bool,
}

/// Event header facts every entry needs.
struct EventInfo {
    offset: u64,
    next: u64,
    length: u64,
    timestamp_ms: i64,
    server_id: u32,
}

impl Converter {
    /// A converter for a dump starting at `resume`: entries it covers were already delivered and are dropped.
    /// `schema` describes the tables; the converter gives it back with [`Converter::into_schema`].
    pub fn new(
        options: ConvertOptions,
        filter: Arc<RwLock<TableFilter>>,
        resume: &ResumePoint,
        mut schema: SchemaTracker,
    ) -> Self {
        schema.new_stream();
        Self {
            options,
            filter,
            schema,
            delivered: HashMap::new(),
            journal: resume.start.journal_name.clone(),
            txn_start: None,
            gtid_start: None,
            pending_begin: None,
            pending_statement: None,
            statement_context: Vec::new(),
            txn_has_content: false,
            last_empty_emit: None,
            skip: resume.skip_through.is_some().then(|| resume.clone()),
            mariadb: false,
            dialect: Dialect::default(),
            txn_gtid: None,
            gtids: GtidPosition::default(),
            files: Vec::new(),
            source_server_id: None,
        }
    }

    /// The binlog file currently being read.
    pub fn journal(&self) -> &str {
        &self.journal
    }

    /// Converts one event; returns the entries to deliver, in order.
    pub fn convert(&mut self, event: &Event) -> Result<Vec<Converted>> {
        let header = event.header();
        let raw_type = header.event_type_raw();
        let log_pos = header.log_pos() as u64;
        let length = header.event_size() as u64;
        let artificial = log_pos == 0 || header.flags().contains(EventFlags::LOG_EVENT_ARTIFICIAL_F);
        let info = EventInfo {
            offset: log_pos.saturating_sub(length),
            next: log_pos,
            length,
            timestamp_ms: header.timestamp() as i64 * 1000,
            server_id: header.server_id(),
        };
        let offset = info.offset;
        if raw_type != TABLE_MAP_EVENT {
            // None of the statement's tables passed the filter: its text goes with them.
            self.pending_statement = None;
        }
        if !matches!(raw_type, INTVAR_EVENT | RAND_EVENT | USER_VAR_EVENT | QUERY_EVENT) {
            self.statement_context.clear();
        }
        if raw_type == MARIADB_ANNOTATE_ROWS_EVENT {
            self.hold_statement(String::from_utf8_lossy(event.data()).into_owned(), info, false);
            return Ok(Vec::new());
        }
        if raw_type == MARIADB_GTID_EVENT {
            return self
                .mariadb_gtid(event.data(), info)
                .map_err(|message| self.decode_error(offset, message));
        }
        let data = event
            .read_data()
            .map_err(|e| self.decode_error(offset, format!("event type {raw_type}: {e}")))?;
        let produced = match data {
            Some(EventData::RotateEvent(rotate)) => {
                self.rotate(&rotate.name(), artificial);
                Vec::new()
            }
            Some(EventData::FormatDescriptionEvent(fde)) => {
                self.dialect = Dialect::of_server(&fde.server_version());
                self.mariadb = self.dialect.is_mariadb();
                Vec::new()
            }
            Some(EventData::TableMapEvent(tme)) => {
                let table_id = tme.table_id();
                // Only a held statement needs the names past the table map.
                let names = self
                    .pending_statement
                    .is_some()
                    .then(|| (tme.database_name().into_owned(), tme.table_name().into_owned()));
                let at = self.at(offset);
                let described = self
                    .schema
                    .map_table(tme, event.data(), self.dialect, &at)
                    .map_err(|e| self.decode_error(offset, e.to_string()))?;
                if described && let Some(table) = self.schema.table(table_id) {
                    let info = &table.info;
                    let names: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
                    let delivered = self.options.fields.mask(&info.schema, &info.table, &names);
                    self.delivered.insert(table_id, delivered);
                }
                match names {
                    Some((schema, table)) => self.release_statement(&schema, &table),
                    None => Vec::new(),
                }
            }
            Some(EventData::RowsQueryEvent(query)) => {
                self.hold_statement(query.query().into_owned(), info, true);
                Vec::new()
            }
            Some(EventData::IntvarEvent(intvar)) => {
                // canal prints both kinds (INSERT_ID and LAST_INSERT_ID) the same way, as a signed 64-bit value.
                self.hold_context(format!("SET INSERT_ID = {}", intvar.value() as i64), info);
                Vec::new()
            }
            Some(EventData::RandEvent(rand)) => {
                let (seed1, seed2) = (rand.seed1.0 as i64, rand.seed2.0 as i64);
                self.hold_context(format!("SET SESSION rand_seed1 = {seed1} , rand_seed2 = {seed2}"), info);
                Vec::new()
            }
            Some(EventData::UserVarEvent(var)) => {
                let text = user_variable(&var).map_err(|message| self.decode_error(offset, message))?;
                self.hold_context(text, info);
                Vec::new()
            }
            Some(EventData::GtidEvent(gtid)) => {
                self.gtid_start = Some(info.offset);
                self.txn_gtid = Some(Gtid::MySql {
                    source: mysql_source(&gtid.sid(), gtid.tag()),
                    gno: gtid.gno(),
                });
                Vec::new()
            }
            Some(EventData::PreviousGtidsEvent(previous)) => {
                // The GTID set of everything before this file: where a cursor's set starts.
                for sid in previous.sids() {
                    let source = mysql_source(&sid.uuid(), sid.tag());
                    self.gtids
                        .seed_mysql(&source, sid.intervals().iter().map(|i| (i.start(), i.end())));
                }
                Vec::new()
            }
            Some(EventData::QueryEvent(query)) => self.query(&query.query(), &query.schema(), query.thread_id(), &info),
            Some(EventData::XidEvent(xid)) => self.end(xid.xid.to_string(), Vec::new(), &info),
            Some(EventData::RowsEvent(rows)) => self
                .rows(&rows, &info)
                .map_err(|message| self.decode_error(offset, message))?,
            _ => Vec::new(),
        };
        Ok(self.skip_delivered(produced))
    }

    fn decode_error(&self, offset: u64, message: String) -> Error {
        Error::Decode {
            position: format!("{}:{offset}", self.journal),
            message,
        }
    }

    /// Drops entries a previous run already delivered (see [`ResumePoint`]).
    fn skip_delivered(&mut self, produced: Vec<Converted>) -> Vec<Converted> {
        let Some(skip) = &self.skip else {
            return produced;
        };
        let mut kept = Vec::with_capacity(produced.len());
        for entry in produced {
            if skip.covers(&entry.position.journal_name, entry.position.position) {
                continue;
            }
            kept.push(entry);
        }
        if !kept.is_empty() {
            self.skip = None;
        }
        kept
    }

    fn rotate(&mut self, name: &str, artificial: bool) {
        if let Some(next) = crate::binlog::position::rotated_to(&self.journal, name, artificial, &self.files) {
            tracing::info!(from = %self.journal, to = %next, "binlog rotated");
            self.journal = next;
        }
    }

    fn header(&self, info: &EventInfo, schema: &str, table: &str, event_type: Option<EventType>) -> Header {
        Header {
            version: Some(1),
            logfile_name: Some(self.journal.clone()),
            logfile_offset: Some(info.offset as i64),
            server_id: Some(info.server_id as i64),
            serveren_code: Some("UTF-8".into()),
            execute_time: Some(info.timestamp_ms),
            source_type: Some(canal::Type::Mysql as i32),
            schema_name: Some(schema.to_string()),
            table_name: Some(table.to_string()),
            event_length: Some(info.length as i64),
            event_type: event_type.map(|t| t as i32),
            props: Vec::new(),
            gtid: self.txn_gtid.as_ref().map(Gtid::to_string),
        }
    }

    fn converted(&self, entry: Entry, kind: EntryKind, info: &EventInfo, rows: usize) -> Converted {
        let resume_after = match (kind, self.txn_start) {
            (EntryKind::End, _) | (_, None) => ResumePoint::at(&self.journal, info.next),
            (_, Some(start)) => ResumePoint {
                skip_through: Some(info.offset),
                ..ResumePoint::at(&self.journal, start)
            },
        };
        // Inside a transaction the GTID position is the one before it: resuming by GTID repeats the transaction
        // whole. At a boundary, `complete` moves it past the transaction.
        let resume_after = ResumePoint {
            gtid: self.gtids.text(),
            server_id: self.source_server_id,
            ..resume_after
        };
        Converted {
            bytes: Bytes::from(entry.encode_to_vec()),
            kind,
            position: BinlogPosition {
                journal_name: self.journal.clone(),
                position: info.offset,
            },
            event_length: info.length,
            execute_time: info.timestamp_ms,
            server_id: info.server_id,
            rows,
            resume_after,
            gtid: None,
        }
    }

    /// The table descriptions and schema history, for storing what changed.
    pub fn schema_mut(&mut self) -> &mut SchemaTracker {
        &mut self.schema
    }

    /// Ends the conversion and gives the schema tracker back, for the next stream.
    pub fn into_schema(self) -> SchemaTracker {
        self.schema
    }

    fn at(&self, offset: u64) -> BinlogPosition {
        BinlogPosition {
            journal_name: self.journal.clone(),
            position: offset,
        }
    }

    /// The server's binlog files, as the dump found them.
    pub fn set_server_files(&mut self, files: Vec<String>) {
        self.files = files;
    }

    /// `@@server_id` of the server being read, recorded in every resume point.
    pub fn set_source_server_id(&mut self, server_id: u32) {
        self.source_server_id = Some(server_id);
    }

    /// Starts the GTID position from the server's position at the dump's start (MariaDB) or the GTID set the dump
    /// started after (MySQL).
    pub fn seed_gtid_position(&mut self, position: &str) {
        self.gtids.seed(position);
    }

    /// Adds the GTID of the transaction just read to the position, delivered or filtered out alike.
    fn record_completed(&mut self) {
        if let Some(gtid) = self.txn_gtid.take() {
            self.gtids.complete(&gtid);
        }
    }

    /// Marks the current transaction (or standalone statement) complete: its GTID joins the position, which
    /// `converted` then carries for cursors.
    fn complete(&mut self, mut converted: Converted) -> Converted {
        self.record_completed();
        converted.gtid = self.gtids.text();
        converted.resume_after.gtid = converted.gtid.clone();
        converted
    }

    fn begin(&mut self, thread_id: u32, props: Vec<Pair>, info: &EventInfo) -> Vec<Converted> {
        self.txn_start = Some(self.gtid_start.take().unwrap_or(info.offset));
        self.txn_has_content = false;
        let body = TransactionBegin {
            thread_id: Some(thread_id as i64),
            props,
            ..Default::default()
        };
        let entry = Entry {
            header: Some(self.header(info, "", "", None)),
            entry_type: Some(EntryType::Transactionbegin as i32),
            store_value: Some(Bytes::from(body.encode_to_vec())),
        };
        let begin = self.converted(entry, EntryKind::Begin, info, 0);
        // Held back until the transaction proves to have content, so filtered-out transactions cost nothing.
        self.pending_begin = self.options.transaction_entries.then_some(begin);
        Vec::new()
    }

    fn end(&mut self, transaction_id: String, props: Vec<Pair>, info: &EventInfo) -> Vec<Converted> {
        let body = TransactionEnd {
            transaction_id: Some(transaction_id),
            props,
            ..Default::default()
        };
        let entry = Entry {
            header: Some(self.header(info, "", "", None)),
            entry_type: Some(EntryType::Transactionend as i32),
            store_value: Some(Bytes::from(body.encode_to_vec())),
        };
        let end = self.converted(entry, EntryKind::End, info, 0);
        let end = self.complete(end);
        let begin = self.pending_begin.take();
        let had_content = std::mem::take(&mut self.txn_has_content);
        self.txn_start = None;
        self.gtid_start = None;
        if !self.options.transaction_entries {
            return Vec::new();
        }
        if had_content {
            return vec![end];
        }
        let due = self
            .last_empty_emit
            .is_none_or(|t| t.elapsed() >= EMPTY_TRANSACTION_INTERVAL);
        if !due {
            return Vec::new();
        }
        self.last_empty_emit = Some(Instant::now());
        begin.into_iter().chain(Some(end)).collect()
    }

    /// Emits `entry` after the held-back BEGIN of its transaction.
    fn content(&mut self, entry: Converted) -> Vec<Converted> {
        self.txn_has_content = true;
        self.pending_begin.take().into_iter().chain(Some(entry)).collect()
    }

    fn mariadb_gtid(&mut self, data: &[u8], info: EventInfo) -> std::result::Result<Vec<Converted>, String> {
        let gtid = MariaDbGtid::parse(data)?;
        self.txn_gtid = Some(Gtid::MariaDb {
            domain: gtid.domain,
            server: info.server_id,
            seq: gtid.seq,
        });
        self.gtid_start = Some(info.offset);
        match gtid.xa {
            // The XA COMMIT/ROLLBACK statement that follows is a group of its own, as on MySQL.
            _ if gtid.standalone => Ok(Vec::new()),
            Some(MariaDbXa::Completed(_)) => Ok(Vec::new()),
            // MariaDB writes no XA START statement: the flag stands for it, so the BEGIN carries its props.
            Some(MariaDbXa::Prepared(xid)) => Ok(self.begin(0, xa_props("XA START", &format!(" {xid}")), &info)),
            None => Ok(self.begin(0, Vec::new(), &info)),
        }
    }

    /// Keeps a row statement's text until the table maps after it show whether its rows are delivered.
    fn hold_statement(&mut self, sql: String, info: EventInfo, names_table: bool) {
        if self.options.dml {
            self.pending_statement = Some(PendingStatement { sql, info, names_table });
        }
    }

    /// Keeps a statement's context (an INTVAR, RAND or USER_VAR event) until the statement after it is delivered.
    fn hold_context(&mut self, sql: String, info: EventInfo) {
        if self.options.dml {
            self.statement_context.push(PendingStatement {
                sql,
                info,
                names_table: false,
            });
        }
    }

    /// Delivers the held statement text, as a QUERY entry before its rows, once a table it writes passes the
    /// filter. canal delivers it whatever the filter says; a consumer of one schema should not see another's SQL.
    fn release_statement(&mut self, schema: &str, table: &str) -> Vec<Converted> {
        let accepted = self.filter.read().map(|f| f.accepts(schema, table)).unwrap_or(true);
        if !accepted {
            return Vec::new();
        }
        let Some(pending) = self.pending_statement.take() else {
            return Vec::new();
        };
        let table = if pending.names_table { table } else { "" };
        let converted = self.statement_text(&pending, table);
        if self.txn_start.is_some() {
            self.content(converted)
        } else {
            vec![converted]
        }
    }

    /// The QUERY entry canal makes of a statement's text or context: no schema, and the SQL only.
    fn statement_text(&self, pending: &PendingStatement, table: &str) -> Converted {
        let change = RowChange {
            event_type: Some(EventType::Query as i32),
            sql: Some(pending.sql.clone()),
            ..Default::default()
        };
        let entry = Entry {
            header: Some(self.header(&pending.info, "", table, Some(EventType::Query))),
            entry_type: Some(EntryType::Rowdata as i32),
            store_value: Some(Bytes::from(change.encode_to_vec())),
        };
        self.converted(entry, EntryKind::Statement, &pending.info, 0)
    }

    /// The second phase of an XA transaction: an XACOMMIT or XAROLLBACK entry, which no table filter applies to.
    fn xa_outcome(&mut self, boundary: QueryBoundary, sql: &str, info: &EventInfo) -> Vec<Converted> {
        let event_type = if boundary == QueryBoundary::XaCommit {
            EventType::Xacommit
        } else {
            EventType::Xarollback
        };
        let change = RowChange {
            event_type: Some(event_type as i32),
            sql: Some(sql.to_string()),
            props: xa_statement_props(sql),
            ..Default::default()
        };
        let entry = Entry {
            header: Some(self.header(info, "", "", Some(event_type))),
            entry_type: Some(EntryType::Rowdata as i32),
            store_value: Some(Bytes::from(change.encode_to_vec())),
        };
        let converted = self.converted(entry, EntryKind::Statement, info, 0);
        if self.txn_start.is_some() {
            return self.content(converted);
        }
        self.gtid_start = None;
        vec![self.complete(converted)]
    }

    fn query(&mut self, sql: &str, session_schema: &str, thread_id: u32, info: &EventInfo) -> Vec<Converted> {
        match QueryBoundary::of(sql) {
            QueryBoundary::Begin => return self.begin(thread_id, Vec::new(), info),
            QueryBoundary::Commit => return self.end("0".into(), Vec::new(), info),
            QueryBoundary::XaStart => return self.begin(thread_id, xa_statement_props(sql), info),
            // canal ends the transaction at XA END: the XA PREPARE event after it carries nothing for consumers.
            QueryBoundary::XaEnd => return self.end("0".into(), xa_statement_props(sql), info),
            boundary @ (QueryBoundary::XaCommit | QueryBoundary::XaRollback) => {
                return self.xa_outcome(boundary, sql, info);
            }
            QueryBoundary::Placeholder => return Vec::new(),
            QueryBoundary::Statement => {}
        }
        let at = self.at(info.offset);
        let statement = self.schema.statement(sql, session_schema, &at);
        let schema = if statement.schema.is_empty() {
            session_schema
        } else {
            statement.schema.as_str()
        };
        let named = || {
            let accepts = |s: &str, t: &str| self.filter.read().map(|f| f.accepts(s, t)).unwrap_or(true);
            // A rename is kept when either name passes, as in canal.
            accepts(schema, &statement.table)
                || statement.renamed_to.as_ref().is_some_and(|(s, t)| {
                    let s = if s.is_empty() { session_schema } else { s.as_str() };
                    accepts(s, t)
                })
        };
        let wanted = match statement.event_type {
            EventType::Query => self.options.dcl,
            _ if statement.is_ddl() => self.options.ddl && named(),
            _ => self.options.dml && named(),
        };
        let in_transaction = self.txn_start.is_some();
        if !in_transaction {
            // A statement outside BEGIN/COMMIT is its own boundary; a GTID that preceded it belongs to it.
            self.gtid_start = None;
        }
        let context = std::mem::take(&mut self.statement_context);
        if !wanted {
            if !in_transaction {
                self.record_completed();
            }
            return Vec::new();
        }
        let mut produced: Vec<Converted> = Vec::new();
        for pending in &context {
            let converted = self.statement_text(pending, "");
            if in_transaction {
                produced.extend(self.content(converted));
            } else {
                produced.push(converted);
            }
        }
        let change = RowChange {
            event_type: Some(statement.event_type as i32),
            is_ddl: Some(statement.is_ddl()),
            sql: Some(sql.to_string()),
            ddl_schema_name: (!session_schema.is_empty()).then(|| session_schema.to_string()),
            ..Default::default()
        };
        // A rename is reported under the table's new name, as canal does; an unqualified new name is in the
        // session's database, as MySQL reads it.
        let (header_schema, header_table) = match &statement.renamed_to {
            Some((new_schema, new_table)) if statement.event_type == EventType::Rename => {
                let new_schema = if new_schema.is_empty() {
                    session_schema
                } else {
                    new_schema.as_str()
                };
                (new_schema, new_table.as_str())
            }
            _ => (schema, statement.table.as_str()),
        };
        let mut header = self.header(info, header_schema, header_table, Some(statement.event_type));
        if header_table.is_empty() {
            // canal names a table only when its parser found one: none for CREATE/DROP DATABASE and the like.
            header.table_name = None;
        }
        let entry = Entry {
            header: Some(header),
            entry_type: Some(EntryType::Rowdata as i32),
            store_value: Some(Bytes::from(change.encode_to_vec())),
        };
        let converted = self.converted(entry, EntryKind::Statement, info, 0);
        if in_transaction {
            produced.extend(self.content(converted));
        } else {
            let converted = self.complete(converted);
            produced.push(converted);
        }
        produced
    }
}

/// canal's text for a USER_VAR event: `SET @name := value`, strings quoted as they are, numbers as Java prints them.
fn user_variable(var: &mysql_common::binlog::events::UserVarEvent<'_>) -> std::result::Result<String, String> {
    use mysql_common::constants::ItemResult;
    let name = var.name();
    if var.is_null() {
        return Ok(format!("SET @{name} := NULL"));
    }
    let bytes = var.value();
    let value = match var.value_type() {
        Ok(ItemResult::STRING_RESULT) => {
            let collation = u16::try_from(var.charset()).unwrap_or(0);
            return Ok(format!("SET @{name} := '{}'", decode_text(bytes, collation)));
        }
        Ok(ItemResult::REAL_RESULT) => {
            let raw: [u8; 8] = bytes
                .try_into()
                .map_err(|_| format!("user variable @{name}: a REAL value of {} bytes", bytes.len()))?;
            let x = f64::from_le_bytes(raw);
            java_float(x, &x.to_string())
        }
        Ok(ItemResult::INT_RESULT) => match bytes.len() {
            8 => i64::from_le_bytes(bytes.try_into().unwrap_or_default()).to_string(),
            4 => u32::from_le_bytes(bytes.try_into().unwrap_or_default()).to_string(),
            n => return Err(format!("user variable @{name}: an INT value of {n} bytes")),
        },
        Ok(ItemResult::DECIMAL_RESULT) => {
            let (precision, scale) = match bytes {
                [p, s, ..] if *p <= 65 && *s <= 30 && s <= p => (*p as usize, *s as usize),
                _ => return Err(format!("user variable @{name}: a malformed DECIMAL value")),
            };
            let decimal = mysql_common::binlog::decimal::Decimal::read_bin(&bytes[2..], precision, scale, false)
                .map_err(|e| format!("user variable @{name}: DECIMAL: {e}"))?;
            decimal.to_string()
        }
        // canal prints NULL for a type it does not read; there is nothing in such a value a consumer could use.
        other => {
            tracing::warn!(variable = %name, value_type = ?other, "user variable of a type canal does not read; given as NULL");
            return Ok(format!("SET @{name} := NULL"));
        }
    };
    Ok(format!("SET @{name} := {value}"))
}
