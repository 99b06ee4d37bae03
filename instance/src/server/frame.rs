//! canal's framing: a 4-byte big-endian length, then one serialized `Packet`. Also builds the packets the server
//! sends, byte-compatible with canal's.

use bytes::Bytes;
use prost::Message;
use tokio_util::codec::LengthDelimitedCodec;

use crate::proto::packet::{self, Ack, Messages, Packet, PacketType, packet::VersionPresent};

/// Largest frame a client may send. Requests are a few hundred bytes; a larger declared length is garbage or an
/// attack, and the connection is closed before anything is allocated for it.
pub const MAX_REQUEST_FRAME: usize = 16 * 1024 * 1024;

/// Largest frame a client accepts from a server (a batch of entries).
pub const MAX_RESPONSE_FRAME: usize = 1024 * 1024 * 1024;

/// A codec for canal frames with the given size limit.
pub fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_frame)
        .new_codec()
}

fn packet(packet_type: PacketType, body: Bytes, with_version: bool) -> Bytes {
    Packet {
        magic_number_present: None,
        version_present: with_version.then_some(VersionPresent::Version(1)),
        r#type: packet_type as i32,
        compression_present: None,
        body,
    }
    .encode_to_vec()
    .into()
}

/// The first packet of every connection.
pub fn handshake(seed: &[u8]) -> Bytes {
    let body = packet::Handshake {
        seeds: Bytes::copy_from_slice(seed),
        ..Default::default()
    };
    packet(PacketType::Handshake, body.encode_to_vec().into(), true)
}

/// A success reply (an empty Ack).
pub fn ok() -> Bytes {
    packet(PacketType::Ack, Bytes::new(), true)
}

/// An error reply with canal's error code.
pub fn error(code: i32, message: &str) -> Bytes {
    let body = Ack {
        error_code_present: Some(packet::ack::ErrorCodePresent::ErrorCode(code)),
        error_message: message.to_string(),
    };
    packet(PacketType::Ack, body.encode_to_vec().into(), true)
}

/// A batch of serialized entries. Like canal's raw fast path, a non-empty batch carries no version field.
pub fn messages(batch_id: i64, entries: Vec<Bytes>) -> Bytes {
    let with_version = batch_id == -1;
    let body = Messages {
        batch_id,
        messages: entries,
    };
    packet(PacketType::Messages, body.encode_to_vec().into(), with_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_match_canal_bytes() {
        let seed = [9u8; 8];
        let mut want = vec![0x10, 0x01, 0x18, 0x01, 0x2A, 0x0A, 0x12, 0x08];
        want.extend_from_slice(&seed);
        assert_eq!(handshake(&seed).as_ref(), want.as_slice());
        assert_eq!(ok().as_ref(), &[0x10, 0x01, 0x18, 0x03]);
        let empty = messages(-1, Vec::new());
        assert_eq!(
            empty.as_ref(),
            &[
                0x10, 0x01, 0x18, 0x07, 0x2A, 0x0B, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01
            ]
        );
        let raw = messages(5, vec![Bytes::from_static(b"ab")]);
        assert_eq!(
            raw.as_ref(),
            &[0x18, 0x07, 0x2A, 0x06, 0x08, 0x05, 0x12, 0x02, b'a', b'b']
        );
    }
}
