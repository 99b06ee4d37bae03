//! The source stage: everything that reads the binlog from MySQL or MariaDB.
//!
//! [`source`] connects as a replica, checks the server and starts the dump (by file and offset or by GTID), and finds
//! start positions (the end, the earliest file, a point in time). [`readahead`] reads the dump on a task of its own so
//! that reading and converting overlap. [`transaction`] tells where transactions begin and end. [`position`] and
//! [`gtid`] are the coordinates a cursor keeps.

pub mod gtid;
pub mod position;
pub mod readahead;
pub mod source;
pub mod transaction;
