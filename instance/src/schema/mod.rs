//! What each table looks like at each point of the binlog.
//!
//! [`table`] describes a table from its table map event (with binlog metadata when the server writes it), [`history`]
//! keeps the versions of every table's columns, seeded from `information_schema` and advanced by the DDL read from
//! the binlog, and [`ddl`] classifies statements (which entry type, which table).

pub mod ddl;
pub mod history;
pub mod table;
