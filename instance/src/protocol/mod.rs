//! canal's wire format, shared by the server and the client: the protobuf messages (generated at build time from
//! `proto/`, see build.rs), the length-prefixed [`frame`]s that carry them, and the password scramble of [`auth`].

pub mod auth;
pub mod frame;

/// Packets of the client/server protocol (`CanalProtocol.proto`).
#[allow(clippy::all, missing_docs)]
pub mod packet {
    include!(concat!(env!("OUT_DIR"), "/canal.packet.rs"));
}

/// Change records (`EntryProtocol.proto`, proto2).
#[allow(clippy::all, missing_docs)]
pub mod entry {
    include!(concat!(env!("OUT_DIR"), "/canal.entry.rs"));
}

pub use entry::{Entry, EntryType, EventType};
pub use packet::{Packet, PacketType};

/// Builds a proto2 `Pair`.
pub fn pair(key: &str, value: impl Into<String>) -> entry::Pair {
    entry::Pair {
        key: Some(key.to_string()),
        value: Some(value.into()),
    }
}
