//! Turns binlog events into canal Entries.
//!
//! One event yields at most one Entry, so an entry is identified by the binlog position of its event. The converter
//! tracks the current binlog file and transaction, keeps the table maps, applies the table filter, and attaches to
//! every entry the [`ResumePoint`] that reproduces the stream right after it.

pub mod filter;
pub mod value;

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mysql_common::binlog::consts::EventFlags;
use mysql_common::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_common::binlog::row::BinlogRow;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::io::ParseBuf;
use prost::Message;

use crate::binlog::gtid::{Gtid, GtidPosition, mysql_source};
use crate::binlog::position::{BinlogPosition, ResumePoint};
use crate::convert::filter::{FieldFilter, TableFilter};
use crate::error::{Error, Result};
use crate::protocol::entry::{self as canal, Entry, Header, RowChange, TransactionBegin, TransactionEnd};
use crate::protocol::{EntryType, EventType, pair};
use crate::schema::ddl;
use crate::schema::history::{Change, SchemaHistory};
use crate::schema::table::{ColumnInfo, TableInfo};

/// MariaDB's GTID event, which mysql_common leaves undecoded.
const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB GTID flag: the event group has no BEGIN/COMMIT (DDL and non-transactional statements).
const MARIADB_FL_STANDALONE: u8 = 1;
/// canal lets an empty transaction (all its rows filtered out) through at most this often, so cursors still move.
const EMPTY_TRANSACTION_INTERVAL: Duration = Duration::from_secs(5);

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

struct Table {
    map: TableMapEvent<'static>,
    info: Arc<TableInfo>,
    /// Which columns the field filter delivers; `None` for all.
    delivered: Option<Vec<bool>>,
    /// The table map event's bytes and the DDL generation it was described in: the same table map after no DDL
    /// (one comes with every transaction) is described once.
    raw: Vec<u8>,
    generation: u64,
}

/// The conversion state for one binlog stream.
pub struct Converter {
    options: ConvertOptions,
    filter: Arc<RwLock<TableFilter>>,
    tables: HashMap<u64, Table>,
    /// Counts DDL statements read, so that table descriptions made before one are made again.
    ddl_generation: u64,
    journal: String,
    /// Offset of the event that opened the current transaction (GTID or BEGIN), if inside one.
    txn_start: Option<u64>,
    /// A GTID event seen before its BEGIN query (MySQL) or before a standalone statement (MariaDB).
    gtid_start: Option<u64>,
    pending_begin: Option<Converted>,
    txn_has_content: bool,
    last_empty_emit: Option<Instant>,
    skip: Option<ResumePoint>,
    /// Whether the binlog was written by MariaDB, from its format description event.
    mariadb: bool,
    /// The GTID of the transaction being read (MariaDB `domain-server-seq`, MySQL `uuid:gno`).
    txn_gtid: Option<Gtid>,
    /// The GTID position after the transactions completed so far.
    gtids: GtidPosition,
    /// The server's binlog files, to read the name in a connection's first ROTATE.
    files: Vec<String>,
    /// `@@server_id` of the server whose binlog is read, when known.
    source_server_id: Option<u32>,
    history: Option<Arc<Mutex<SchemaHistory>>>,
    /// Whether a DDL changed the schema history since [`Converter::take_history_changed`].
    history_changed: bool,
    /// `(schema, table, reason)` already warned about, so a table without metadata is reported once.
    history_warnings: HashSet<(String, String, String)>,
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
    pub fn new(options: ConvertOptions, filter: Arc<RwLock<TableFilter>>, resume: &ResumePoint) -> Self {
        Self {
            options,
            filter,
            tables: HashMap::new(),
            ddl_generation: 0,
            journal: resume.start.journal_name.clone(),
            txn_start: None,
            gtid_start: None,
            pending_begin: None,
            txn_has_content: false,
            last_empty_emit: None,
            skip: resume.skip_through.is_some().then(|| resume.clone()),
            mariadb: false,
            txn_gtid: None,
            gtids: GtidPosition::default(),
            files: Vec::new(),
            source_server_id: None,
            history: None,
            history_changed: false,
            history_warnings: HashSet::new(),
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
                self.mariadb = fde.server_version().contains("MariaDB");
                Vec::new()
            }
            Some(EventData::TableMapEvent(tme))
                if self
                    .tables
                    .get(&tme.table_id())
                    .is_some_and(|t| t.generation == self.ddl_generation && t.raw.as_slice() == event.data()) =>
            {
                Vec::new()
            }
            Some(EventData::TableMapEvent(tme)) => {
                let mut info = TableInfo::from_table_map(&tme, self.mariadb)
                    .map_err(|e| self.decode_error(offset, e.to_string()))?;
                if !info.has_names || !info.has_signedness {
                    self.complete_from_history(&mut info, offset);
                }
                let names: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
                let delivered = self.options.fields.mask(&info.schema, &info.table, &names);
                self.tables.insert(
                    tme.table_id(),
                    Table {
                        map: tme.into_owned(),
                        info: Arc::new(info),
                        delivered,
                        raw: event.data().to_vec(),
                        generation: self.ddl_generation,
                    },
                );
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
            Some(EventData::XidEvent(xid)) => self.end(xid.xid.to_string(), &info),
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

    /// Keeps a schema history: DDL read from the binlog is recorded in it, and table maps without column metadata
    /// are completed from it.
    pub fn with_history(mut self, history: Arc<Mutex<SchemaHistory>>) -> Self {
        self.history = Some(history);
        self
    }

    /// Whether the last events changed the schema history (so it must be stored before their entries go on).
    pub fn take_history_changed(&mut self) -> bool {
        std::mem::take(&mut self.history_changed)
    }

    fn history(&self) -> Option<MutexGuard<'_, SchemaHistory>> {
        self.history
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn complete_from_history(&mut self, info: &mut TableInfo, offset: u64) {
        let at = BinlogPosition {
            journal_name: self.journal.clone(),
            position: offset,
        };
        let outcome = match self.history() {
            None => return,
            Some(history) => match history.columns_at(&info.schema, &info.table, &at) {
                Some(definition) => info.complete_from(definition),
                None => Err("the schema history has no definition of the table here".to_string()),
            },
        };
        if let Err(reason) = outcome {
            // Table maps repeat with every transaction: say it once per table and reason.
            if self
                .history_warnings
                .insert((info.schema.clone(), info.table.clone(), reason.clone()))
            {
                tracing::warn!(
                    table = %format!("{}.{}", info.schema, info.table),
                    position = %at,
                    reason = %reason,
                    "the binlog has no column metadata for this table and the schema history cannot supply it: \
                     columns are reported as @0, @1, ...; set binlog_row_metadata=FULL on the server"
                );
            }
        }
    }

    fn record_ddl(&mut self, sql: &str, session_schema: &str, offset: u64) {
        let at = BinlogPosition {
            journal_name: self.journal.clone(),
            position: offset,
        };
        let Some(mut history) = self.history() else {
            return;
        };
        let changes = history.apply_ddl(sql, session_schema, &at);
        drop(history);
        self.history_changed |= !changes.is_empty();
        for change in changes {
            match change {
                Change::Defined { schema, table } => {
                    tracing::info!(table = %format!("{schema}.{table}"), position = %at, "schema history: new table definition")
                }
                Change::Removed { schema, table } => {
                    tracing::info!(table = %format!("{schema}.{table}"), position = %at, "schema history: table removed")
                }
                Change::Unknown { schema, table, reason } => tracing::warn!(
                    table = %format!("{schema}.{table}"),
                    position = %at,
                    reason = %reason,
                    "schema history: cannot follow this DDL; the table's columns are unknown from here on unless the \
                     binlog carries binlog_row_metadata=FULL"
                ),
            }
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

    fn begin(&mut self, thread_id: u32, info: &EventInfo) -> Vec<Converted> {
        self.txn_start = Some(self.gtid_start.take().unwrap_or(info.offset));
        self.txn_has_content = false;
        let body = TransactionBegin {
            thread_id: Some(thread_id as i64),
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

    fn end(&mut self, transaction_id: String, info: &EventInfo) -> Vec<Converted> {
        let body = TransactionEnd {
            transaction_id: Some(transaction_id),
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
        // seq_no u64, domain_id u32, flags u8, all little-endian.
        let flags = *data
            .get(12)
            .ok_or_else(|| format!("MariaDB GTID event too short ({} bytes)", data.len()))?;
        let seq = u64::from_le_bytes(
            data[..8]
                .try_into()
                .map_err(|_| "MariaDB GTID event too short".to_string())?,
        );
        let domain = u32::from_le_bytes(
            data[8..12]
                .try_into()
                .map_err(|_| "MariaDB GTID event too short".to_string())?,
        );
        self.txn_gtid = Some(Gtid::MariaDb {
            domain,
            server: info.server_id,
            seq,
        });
        if flags & MARIADB_FL_STANDALONE != 0 {
            self.gtid_start = Some(info.offset);
            return Ok(Vec::new());
        }
        self.gtid_start = Some(info.offset);
        Ok(self.begin(0, &info))
    }

    fn query(&mut self, sql: &str, session_schema: &str, thread_id: u32, info: &EventInfo) -> Vec<Converted> {
        let trimmed = sql.trim();
        if trimmed.eq_ignore_ascii_case("BEGIN") {
            return self.begin(thread_id, info);
        }
        if trimmed.eq_ignore_ascii_case("COMMIT") {
            return self.end("0".into(), info);
        }
        // MariaDB replaces events a replica did not declare it understands with these placeholders.
        if trimmed.starts_with("# Dummy event") {
            return Vec::new();
        }
        let statement = ddl::classify(sql);
        if statement.is_ddl() {
            self.ddl_generation += 1;
        }
        if statement.is_ddl() && statement.event_type != EventType::Query {
            self.record_ddl(sql, session_schema, info.offset);
        }
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
        if !wanted {
            if !in_transaction {
                self.record_completed();
            }
            return Vec::new();
        }
        let change = RowChange {
            event_type: Some(statement.event_type as i32),
            is_ddl: Some(statement.is_ddl()),
            sql: Some(sql.to_string()),
            ddl_schema_name: (!session_schema.is_empty()).then(|| session_schema.to_string()),
            ..Default::default()
        };
        let entry = Entry {
            header: Some(self.header(info, schema, &statement.table, Some(statement.event_type))),
            entry_type: Some(EntryType::Rowdata as i32),
            store_value: Some(Bytes::from(change.encode_to_vec())),
        };
        let converted = self.converted(entry, EntryKind::Statement, info, 0);
        let converted = if in_transaction {
            converted
        } else {
            self.complete(converted)
        };
        if in_transaction {
            self.content(converted)
        } else {
            vec![converted]
        }
    }

    fn rows(&mut self, rows: &RowsEventData<'_>, info: &EventInfo) -> std::result::Result<Vec<Converted>, String> {
        let table_id = rows.table_id();
        let table = self.tables.get(&table_id).ok_or_else(|| {
            format!(
                "rows event for table id {table_id} has no preceding TABLE_MAP event (dump started mid-transaction?)"
            )
        })?;
        let info_table = table.info.clone();
        let accepted = self.options.rows
            && self
                .filter
                .read()
                .map(|f| f.accepts(&info_table.schema, &info_table.table))
                .unwrap_or(true);
        if !accepted {
            return Ok(Vec::new());
        }
        let event_type = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => EventType::Insert,
            RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => EventType::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => EventType::Delete,
        };
        let before_image = image_columns(rows.columns_before_image(), info_table.columns.len());
        let after_image = image_columns(rows.columns_after_image(), info_table.columns.len());
        let delivered = table.delivered.as_deref();
        let tz = &self.options.time_zone;
        // mysql_common indexes metadata and buffers without bounds checks in places; a malformed event must become
        // a decode error, never a crash of the process.
        // The RowChange is written field by field: its rows go straight into the encoded message, each column
        // encoded once. Built as nested prost messages, every column's length was computed three times over
        // (RowChange, RowData, Column), a quarter of the instance's CPU time on wide rows. Field order and bytes are
        // what prost would write.
        let head = RowChange {
            table_id: Some(table_id as i64),
            event_type: Some(event_type as i32),
            is_ddl: Some(false),
            ..Default::default()
        };
        let mut change = head.encode_to_vec();
        let decoded = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<usize, String> {
            let row_error = |e: std::io::Error| format!("row of `{}`.`{}`: {e}", info_table.schema, info_table.table);
            let mut count = 0;
            let mut row_data = Vec::new();
            let mut column = Vec::new();
            let mut push = |before: Option<Vec<Option<BinlogValue<'static>>>>,
                            after: Option<Vec<Option<BinlogValue<'static>>>>| {
                let before_columns = match &before {
                    Some(r) => render_image(&info_table, &before_image, delivered, r, None, tz)?,
                    None => Vec::new(),
                };
                let after_columns = match &after {
                    Some(r) => render_image(&info_table, &after_image, delivered, r, Some(&before_columns), tz)?,
                    None => Vec::new(),
                };
                encode_row_data(&mut row_data, &mut column, &before_columns, &after_columns);
                put_message(&mut change, ROW_CHANGE_ROW_DATAS, &row_data);
                count += 1;
                Ok::<(), String>(())
            };
            if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
                // JSON partial updates carry a shared image only mysql_common's row reader understands.
                for row in rows.rows(&table.map) {
                    let (before, after) = row.map_err(row_error)?;
                    let values = |r: BinlogRow| -> Vec<Option<BinlogValue<'static>>> {
                        (0..r.len())
                            .map(|i| r.as_ref(i).map(|v| v.clone().into_owned()))
                            .collect()
                    };
                    push(before.map(values), after.map(values))?;
                }
            } else {
                let mut data = rows.rows_data();
                while !data.is_empty() {
                    let before = match rows.columns_before_image() {
                        Some(_) => Some(read_image(&mut data, &info_table, &before_image).map_err(row_error)?),
                        None => None,
                    };
                    let after = match rows.columns_after_image() {
                        Some(_) => Some(read_image(&mut data, &info_table, &after_image).map_err(row_error)?),
                        None => None,
                    };
                    push(before, after)?;
                }
            }
            Ok(count)
        }))
        .map_err(|_| {
            format!(
                "malformed rows event for `{}`.`{}`",
                info_table.schema, info_table.table
            )
        })??;
        let count = decoded;
        let mut header = self.header(info, &info_table.schema, &info_table.table, Some(event_type));
        if count > 0 {
            header.props.push(pair("rowsCount", count.to_string()));
        }
        let entry = Entry {
            header: Some(header),
            entry_type: Some(EntryType::Rowdata as i32),
            store_value: Some(Bytes::from(change)),
        };
        let converted = self.converted(entry, EntryKind::Row, info, count);
        Ok(self.content(converted))
    }
}

/// Field numbers of EntryProtocol.proto that the rows encoder writes itself.
const ROW_CHANGE_ROW_DATAS: u32 = 12;
const ROW_DATA_BEFORE_COLUMNS: u32 = 1;
const ROW_DATA_AFTER_COLUMNS: u32 = 2;

/// Protobuf wire types of the fields written here.
const VARINT: u32 = 0;
const LENGTH_DELIMITED: u32 = 2;

/// Appends a varint; most are one byte (keys, flags, short lengths), which skips prost's general loop.
fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        prost::encoding::encode_varint(value, out);
    }
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from(field << 3 | wire_type));
}

/// Appends a length-delimited field: an encoded message or a string's bytes.
fn put_message(out: &mut Vec<u8>, field: u32, message: &[u8]) {
    put_key(out, field, LENGTH_DELIMITED);
    put_varint(out, message.len() as u64);
    out.extend_from_slice(message);
}

/// Appends an int32 field as protobuf does: negative values sign-extended to ten bytes.
fn put_int32(out: &mut Vec<u8>, field: u32, value: i32) {
    put_key(out, field, VARINT);
    put_varint(out, i64::from(value) as u64);
}

fn put_bool(out: &mut Vec<u8>, field: u32, value: bool) {
    put_key(out, field, VARINT);
    out.push(u8::from(value));
}

/// One rendered column of a row image: what an Entry's Column holds, borrowing the name and MySQL type from the
/// table's description instead of copying them into every row.
struct RenderedColumn<'a> {
    index: usize,
    info: &'a ColumnInfo,
    sql_type: i32,
    value: Option<String>,
    updated: bool,
}

impl RenderedColumn<'_> {
    /// Writes the Column message's fields as prost writes a Column with `index`, `sqlType`, `name`, `isKey`,
    /// `updated`, `isNull`, `value` (unless NULL) and `mysqlType` set.
    fn encode(&self, out: &mut Vec<u8>) {
        put_int32(out, 1, self.index as i32);
        put_int32(out, 2, self.sql_type);
        put_message(out, 3, self.info.name.as_bytes());
        put_bool(out, 4, self.info.primary_key);
        put_bool(out, 5, self.updated);
        put_bool(out, 6, self.value.is_none());
        if let Some(value) = &self.value {
            put_message(out, 8, value.as_bytes());
        }
        put_message(out, 10, self.info.mysql_type.as_bytes());
    }
}

/// Encodes a RowData (without its length prefix) into `out`, using `scratch` for each column.
fn encode_row_data(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    before: &[RenderedColumn<'_>],
    after: &[RenderedColumn<'_>],
) {
    out.clear();
    for (field, list) in [(ROW_DATA_BEFORE_COLUMNS, before), (ROW_DATA_AFTER_COLUMNS, after)] {
        for c in list {
            scratch.clear();
            c.encode(scratch);
            put_message(out, field, scratch);
        }
    }
}

/// Reads one row image (null bitmap, then the values of the non-NULL columns in `image`) straight from the rows
/// event's bytes. mysql_common's own row reader also builds a full column description (schema, table and column
/// names copied) for every row, which profiling showed to be a third of the instance's CPU time.
fn read_image(
    data: &mut &[u8],
    table: &TableInfo,
    image: &[usize],
) -> std::io::Result<Vec<Option<BinlogValue<'static>>>> {
    let mut buf = ParseBuf(data);
    let null_bitmap: &[u8] = buf.parse(image.len().div_ceil(8))?;
    let mut values = Vec::with_capacity(image.len());
    for (slot, &index) in image.iter().enumerate() {
        let is_null = null_bitmap[slot / 8] & (1 << (slot % 8)) != 0;
        if is_null {
            values.push(Some(BinlogValue::Value(mysql_common::value::Value::NULL)));
            continue;
        }
        let column = table.columns.get(index).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no column {index} in the table map"),
            )
        })?;
        let ctx = (column.column_type, column.meta.as_slice(), column.unsigned, false);
        values.push(Some(buf.parse::<BinlogValue<'_>>(ctx)?.into_owned()));
    }
    let consumed = data.len() - buf.0.len();
    *data = &data[consumed..];
    Ok(values)
}

/// Column indexes present in a row image, in order.
fn image_columns(bitmap: Option<&bitvec::slice::BitSlice<u8>>, count: usize) -> Vec<usize> {
    match bitmap {
        Some(bits) => (0..count).filter(|i| bits.get(*i).is_some_and(|b| *b)).collect(),
        None => (0..count).collect(),
    }
}

/// Renders one row image, leaving out what the field filter does not deliver. For an after image, `before` marks
/// which columns changed.
fn render_image<'t>(
    table: &'t TableInfo,
    image: &[usize],
    delivered: Option<&[bool]>,
    row: &[Option<BinlogValue<'_>>],
    before: Option<&[RenderedColumn<'_>]>,
    tz: &jiff::tz::TimeZone,
) -> std::result::Result<Vec<RenderedColumn<'t>>, String> {
    let mut out = Vec::with_capacity(image.len());
    // Both images list columns in ascending index order, so the before column of each after column is found by
    // walking forward once.
    let mut before_at = 0;
    for (slot, &index) in image.iter().enumerate() {
        if delivered.is_some_and(|d| !d.get(index).copied().unwrap_or(true)) {
            continue;
        }
        let column = table
            .columns
            .get(index)
            .ok_or_else(|| format!("row has column {index} but the table map has {}", table.columns.len()))?;
        let value = row
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("row image misses column {}", column.name))?;
        let rendered = value::render(column, value, tz).map_err(|e| format!("column `{}`: {e}", column.name))?;
        let updated = match before {
            None => false,
            Some(before) => {
                while before.get(before_at).is_some_and(|b| b.index < index) {
                    before_at += 1;
                }
                match before.get(before_at) {
                    Some(b) if b.index == index => b.value != rendered.value,
                    _ => true,
                }
            }
        };
        out.push(RenderedColumn {
            index,
            info: column,
            sql_type: rendered.sql_type,
            value: rendered.value,
            updated,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entry::{Column, RowData};

    #[test]
    fn rows_written_field_by_field_are_the_bytes_prost_writes() {
        let info = |index: usize, sql_type: &str| ColumnInfo {
            index,
            name: format!("c{index}"),
            column_type: mysql_common::constants::ColumnType::MYSQL_TYPE_LONG,
            meta: Vec::new(),
            unsigned: false,
            primary_key: index == 0,
            collation: 0,
            members: Vec::new(),
            mysql_type: sql_type.to_string(),
        };
        let infos = [info(0, "int(11)"), info(1, "varchar(20)")];
        let ours_column = |index: usize, value: Option<&str>, updated: bool| RenderedColumn {
            index,
            info: &infos[index],
            // Negative sqlTypes (BIGINT is -5) take ten bytes as a varint.
            sql_type: if index == 1 { -5 } else { 4 },
            value: value.map(str::to_string),
            updated,
        };
        let prost_column = |c: &RenderedColumn<'_>| Column {
            index: Some(c.index as i32),
            sql_type: Some(c.sql_type),
            name: Some(c.info.name.clone()),
            is_key: Some(c.info.primary_key),
            updated: Some(c.updated),
            is_null: Some(c.value.is_none()),
            value: c.value.clone(),
            mysql_type: Some(c.info.mysql_type.clone()),
            ..Default::default()
        };
        let before = vec![ours_column(0, Some("1"), false), ours_column(1, None, false)];
        // A value longer than 127 bytes takes a two-byte length.
        let long = "x".repeat(200);
        let after = vec![ours_column(0, Some("1"), false), ours_column(1, Some(&long), true)];
        let head = RowChange {
            table_id: Some(42),
            event_type: Some(EventType::Update as i32),
            is_ddl: Some(false),
            ..Default::default()
        };
        let mut expected = head.clone();
        let mut ours = head.encode_to_vec();
        let (mut row_data, mut scratch) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            expected.row_datas.push(RowData {
                before_columns: before.iter().map(prost_column).collect(),
                after_columns: after.iter().map(prost_column).collect(),
                props: Vec::new(),
            });
            encode_row_data(&mut row_data, &mut scratch, &before, &after);
            put_message(&mut ours, ROW_CHANGE_ROW_DATAS, &row_data);
        }
        assert_eq!(ours, expected.encode_to_vec());
    }
}
