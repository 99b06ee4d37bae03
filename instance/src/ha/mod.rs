//! High availability through ZooKeeper, in canal's node layout.
//!
//! [`election`] decides which instance of a destination is active (and, for client HA, which consumer of a client
//! id), with a [`Lease`](election::Lease) that fences an instance that may have lost its node. [`zk`] is canal's node
//! layout and the ZooKeeper operations the rest of canal-rs uses.

pub mod election;
pub mod zk;

pub use election::{Election, Leadership, Lease, Standing, ZooKeeperSession};
