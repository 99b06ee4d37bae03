//! canal-instance: a canal-compatible change-data-capture server for MySQL and MariaDB.
//!
//! The data path follows the binlog: [`source`] dumps it from the database, [`prefetch`] reads the dump ahead on a
//! task of its own, [`convert`] turns row events into canal
//! Entries (with [`schema`] describing each table and [`ddl`] classifying statements), [`filter`] drops unwanted
//! tables, [`store`] buffers entries into batches with backpressure, and [`server`] speaks canal's TCP protocol to
//! clients. [`meta`] persists each client's acknowledged cursor, in a file or in ZooKeeper. [`instance`] wires these
//! together for one destination. With ZooKeeper, [`ha`] elects the active instance in canal's layout ([`zk`]);
//! [`consumers`] admits one connection per client id. [`health`] serves the probes and the [`metrics`], and
//! [`report`] tells Kubernetes the pod's role. [`client`] and [`tail`] are the consumer side; [`decode`] runs a local
//! binlog file through the same converter, and [`gtid`] keeps the GTID positions cursors carry.

pub mod client;
pub mod config;
pub mod consumers;
pub mod convert;
pub mod ddl;
pub mod decode;
pub mod error;
pub mod filter;
pub mod gtid;
pub mod ha;
pub mod health;
pub mod history;
pub mod instance;
pub mod meta;
pub mod metrics;
pub mod position;
pub mod prefetch;
pub mod proto;
pub mod report;
pub mod schema;
pub mod server;
pub mod source;
pub mod store;
pub mod tail;
pub mod zk;

pub use error::{Error, Result};
