//! The one owner of what canal-rs knows about tables while it reads a binlog: the table maps of the current stream,
//! the schema history they are completed from, and the DDL statements that move that history on.
//!
//! The converter hands every TABLE_MAP and every QUERY statement to the tracker, and asks it for the table of a rows
//! event. The tracker also decides what of the history is not stored yet and stores it, through a [`HistoryStore`],
//! before the reader puts into the store any entry that follows the DDL which changed it, so a cursor never passes a
//! DDL whose effect could be lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mysql_common::binlog::events::TableMapEvent;

use super::column_type::Dialect;
use super::ddl::{self, Statement};
use super::history::{Change, ColumnDef, SchemaHistory, TableHistory};
use super::table::{TableInfo, TableMapError};
use crate::binlog::position::BinlogPosition;
use crate::binlog::source::BinlogSource;
use crate::error::Result;
use crate::protocol::EventType;

/// Where the schema history is persisted (the cursor store: a file, or ZooKeeper).
pub trait HistoryStore {
    fn load_history(&self) -> impl Future<Output = Result<Vec<TableHistory>>> + Send;
    /// Stores the given tables' versions, replacing what was stored of them.
    fn save_history(&self, changed: Vec<TableHistory>) -> impl Future<Output = Result<()>> + Send;
}

/// A table as the current stream's TABLE_MAP describes it, completed from the history where the binlog lacks
/// metadata.
pub struct MappedTable {
    pub map: TableMapEvent<'static>,
    pub info: Arc<TableInfo>,
    /// The TABLE_MAP event's bytes and the DDL generation it was described in: the same table map after no DDL
    /// (one comes with every transaction) is described once.
    raw: Vec<u8>,
    generation: u64,
}

/// Table maps, schema history and DDL, for one destination.
#[derive(Default)]
pub struct SchemaTracker {
    history: SchemaHistory,
    tables: HashMap<u64, MappedTable>,
    /// Counts DDL statements read, so that table descriptions made before one are made again.
    generation: u64,
    /// `(schema, table, reason)` already warned about, so a table without metadata is reported once.
    warnings: HashSet<(String, String, String)>,
}

impl SchemaTracker {
    pub fn new(history: SchemaHistory) -> Self {
        Self {
            history,
            ..Self::default()
        }
    }

    /// The destination's schema history as stored, or, the first time, seeded from `information_schema`. A seed
    /// that cannot be read is logged and the history starts empty: tables whose binlog lacks metadata then show
    /// positional column names until their CREATE TABLE is read.
    pub async fn load(store: &impl HistoryStore, source: &BinlogSource) -> Self {
        let mut history = match store.load_history().await {
            Ok(tables) => SchemaHistory::from_tables(tables),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored schema history; rebuilding it from information_schema");
                SchemaHistory::default()
            }
        };
        if history.is_empty() {
            match seed_definitions(source).await {
                Ok((tables, at)) => {
                    tracing::info!(tables = tables.len(), position = %at, "schema history seeded from information_schema");
                    history.seed(tables, &at);
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot read information_schema to seed the schema history; without binlog_row_metadata=FULL, \
                     tables not created in the binlog read from here show columns as @0, @1, ..."
                ),
            }
        }
        let mut tracker = Self::new(history);
        if let Err(e) = tracker.persist(store).await {
            tracing::warn!(error = %e, "cannot store the schema history yet; retrying when the dump starts");
        }
        tracker
    }

    /// Stores the history's versions not stored yet. On failure they stay unstored, and the next call tries again.
    pub async fn persist(&mut self, store: &impl HistoryStore) -> Result<()> {
        let changed = self.history.take_changed();
        if changed.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.save_history(changed.clone()).await {
            self.history.unsaved(&changed);
            return Err(e);
        }
        Ok(())
    }

    pub fn history(&self) -> &SchemaHistory {
        &self.history
    }

    /// Forgets the table maps: a new dump connection sends them again before the rows that use them.
    pub fn new_stream(&mut self) {
        self.tables.clear();
    }

    /// Describes the table of a TABLE_MAP event read at `at`. Returns whether the description is new; a table map
    /// repeated unchanged since the last DDL keeps the description it had.
    pub fn map_table(
        &mut self,
        map: TableMapEvent<'_>,
        raw: &[u8],
        dialect: Dialect,
        at: &BinlogPosition,
    ) -> std::result::Result<bool, TableMapError> {
        let table_id = map.table_id();
        if self
            .tables
            .get(&table_id)
            .is_some_and(|t| t.generation == self.generation && t.raw == raw)
        {
            return Ok(false);
        }
        let mut info = TableInfo::from_table_map(&map, dialect)?;
        if !info.has_names || !info.has_signedness {
            self.complete_from_history(&mut info, at);
        }
        if let Some(definition) = self.history.columns_at(&info.schema, &info.table, at) {
            info.declare_types(definition);
        }
        self.tables.insert(
            table_id,
            MappedTable {
                map: map.into_owned(),
                info: Arc::new(info),
                raw: raw.to_vec(),
                generation: self.generation,
            },
        );
        Ok(true)
    }

    /// The table a rows event names, if its TABLE_MAP was read on this stream.
    pub fn table(&self, table_id: u64) -> Option<&MappedTable> {
        self.tables.get(&table_id)
    }

    /// Reads a QUERY event's statement (parsed once): what canal reports it as, and, for DDL, its effect on the
    /// history from `at` on.
    pub fn statement(&mut self, sql: &str, session_schema: &str, at: &BinlogPosition) -> Statement {
        let parsed = ddl::parse(sql);
        let statement = parsed.statement.clone();
        if statement.is_ddl() {
            self.generation += 1;
            if statement.event_type != EventType::Query {
                let changes = self.history.apply(parsed, session_schema, at);
                log_changes(changes, at);
            }
        }
        statement
    }

    fn complete_from_history(&mut self, info: &mut TableInfo, at: &BinlogPosition) {
        if let Some((derived, seed)) = self.history.seed_disagreement(&info.schema, &info.table, at)
            && self
                .warnings
                .insert((info.schema.clone(), info.table.clone(), "seed".into()))
        {
            tracing::warn!(
                table = %format!("{}.{}", info.schema, info.table),
                position = %at,
                from_ddl = ?derived,
                information_schema = ?seed,
                "the DDL read from the binlog does not arrive at the columns information_schema reported here; \
                 rows from here on use information_schema's, and rows before may have been named wrongly: set \
                 binlog_row_metadata=FULL on the server"
            );
        }
        let outcome = match self.history.columns_at(&info.schema, &info.table, at) {
            Some(definition) => info.complete_from(definition),
            None => Err("the schema history has no definition of the table here".to_string()),
        };
        if let Err(reason) = outcome {
            // Table maps repeat with every transaction: say it once per table and reason.
            if self
                .warnings
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
}

fn log_changes(changes: Vec<Change>, at: &BinlogPosition) {
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

/// Every base table's current columns from `information_schema`, and the binlog position they describe: what a new
/// schema history starts from.
async fn seed_definitions(source: &BinlogSource) -> Result<(Vec<(String, String, Vec<ColumnDef>)>, BinlogPosition)> {
    const QUERY: &str = "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.COLUMN_KEY, \
         c.CHARACTER_SET_NAME FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
         ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE t.TABLE_TYPE = 'BASE TABLE' \
         AND c.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
         ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION";
    type Row = (String, String, String, String, String, Option<String>);
    let (rows, at) = source.query_at_stable_position::<Row>(QUERY).await?;
    let mut tables: Vec<(String, String, Vec<ColumnDef>)> = Vec::new();
    for (schema, table, name, column_type, key, charset) in rows {
        let column = ColumnDef::from_information_schema(name, &column_type, key == "PRI", charset);
        match tables.last_mut() {
            Some((s, t, columns)) if *s == schema && *t == table => columns.push(column),
            _ => tables.push((schema, table, vec![column])),
        }
    }
    Ok((tables, at))
}
