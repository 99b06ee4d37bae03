//! What each table looks like at each point of the binlog.
//!
//! [`tracker`] is the one owner of it while a binlog is read: table maps, the history, DDL, and storing the history.
//! [`table`] describes a table from its table map event (with binlog metadata when the server writes it), [`history`]
//! keeps the versions of every table's columns, seeded from `information_schema` and advanced by the DDL read from
//! the binlog ([`evolve`] works out what each DDL statement does to them), and [`ddl`] parses each statement once and
//! classifies it (which entry type, which table).

pub mod charset;
pub mod column_type;
pub mod ddl;
pub mod evolve;
pub mod history;
pub mod table;
pub mod tracker;

pub use tracker::{HistoryStore, MappedTable, SchemaTracker};
