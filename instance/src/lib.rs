//! canal-instance: a canal-compatible change-data-capture server for MySQL and MariaDB.
//!
//! The modules follow the data, upstream first:
//!
//! ```text
//! binlog ──events──▶ convert (with schema) ──entries──▶ store ──batches──▶ server ──▶ clients
//!                                                         ▲ acks      │
//!                                                         └── meta ◀──┘  (cursors, schema history)
//! ha: which instance is active          observe: metrics, health, Kubernetes reporting
//! ```
//!
//! - [`binlog`] dumps the binlog from the database as a replica and reads it ahead.
//! - [`schema`] knows each table's columns at each point of the binlog.
//! - [`convert`] turns row and query events into canal Entries and applies the filters.
//! - [`store`] buffers entries into batches with backpressure, and tracks what each client acknowledged.
//! - [`meta`] persists each client's cursor and the schema history, in a file or in ZooKeeper.
//! - [`server`] speaks canal's TCP protocol ([`protocol`]) to clients; [`sink`] publishes the same batches in
//!   canal's MQ format.
//! - [`ha`] elects the active instance in canal's ZooKeeper layout; [`observe`] shows what happens.
//! - [`instance`] wires these together for one destination; [`decode`] runs a local binlog file through the same
//!   converter.
//! - [`client`] is the consumer side: a library client and the `tail` command.
//!
//! [`config`] reads the instance configuration and [`error`] is the one error type.

pub mod binlog;
pub mod client;
pub mod config;
pub mod convert;
pub mod decode;
pub mod error;
pub mod ha;
pub mod instance;
pub mod meta;
pub mod observe;
pub mod protocol;
pub mod schema;
pub mod server;
pub mod sink;
pub mod store;

pub use error::{Error, Result};
