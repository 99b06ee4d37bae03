//! canal's framing: a 4-byte big-endian length, then one serialized `Packet`. Also builds the packets the server
//! sends, byte-compatible with canal's.

use bytes::Bytes;
use prost::Message;
use tokio_util::codec::LengthDelimitedCodec;

use crate::protocol::packet::{self, Ack, Packet, PacketType, packet::VersionPresent};

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

/// A whole frame (length prefix included) carrying a batch of serialized entries: the Packet and its Messages body
/// written field by field around the entries, so each entry is copied once, straight into the frame. Built as
/// nested prost messages and then framed, a batch was copied three times. Like canal's raw fast path, a non-empty
/// batch carries no version field.
pub fn messages_frame(batch_id: i64, entries: &[Bytes]) -> Vec<u8> {
    use prost::encoding::{encode_varint, encoded_len_varint};
    // Messages: batchId = 1 (int64), messages = 2 (repeated bytes).
    let body_len = 1
        + encoded_len_varint(batch_id as u64)
        + entries
            .iter()
            .map(|e| 1 + encoded_len_varint(e.len() as u64) + e.len())
            .sum::<usize>();
    // Packet: version = 2 (only on an empty batch), type = 3, body = 5.
    let with_version = batch_id == -1;
    let packet_len = if with_version { 2 } else { 0 } + 2 + 1 + encoded_len_varint(body_len as u64) + body_len;
    let mut out = Vec::with_capacity(4 + packet_len);
    out.extend_from_slice(&(packet_len as u32).to_be_bytes());
    if with_version {
        out.extend_from_slice(&[0x10, 0x01]);
    }
    out.extend_from_slice(&[0x18, PacketType::Messages as u8, 0x2A]);
    encode_varint(body_len as u64, &mut out);
    out.push(0x08);
    encode_varint(batch_id as u64, &mut out);
    for entry in entries {
        out.push(0x12);
        encode_varint(entry.len() as u64, &mut out);
        out.extend_from_slice(entry);
    }
    out
}

/// The Packet of [`messages_frame`] without the frame's length prefix: the value of a record in canal's non-flat
/// MQ format.
pub fn messages_packet(batch_id: i64, entries: &[Bytes]) -> Vec<u8> {
    let mut frame = messages_frame(batch_id, entries);
    frame.drain(..4);
    frame
}

/// A Packet of MESSAGES built the way canal serializes a batch it assembled itself rather than received whole:
/// version 1, and a Messages body with the entries and no batch id.
pub fn rebuilt_messages_packet(entries: &[Bytes]) -> Vec<u8> {
    let body = packet::Messages {
        messages: entries.to_vec(),
        ..Default::default()
    };
    let packet = packet::Packet {
        version_present: Some(packet::packet::VersionPresent::Version(1)),
        r#type: PacketType::Messages as i32,
        body: body.encode_to_vec().into(),
        ..Default::default()
    };
    packet.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::Messages;

    #[test]
    fn packets_match_canal_bytes() {
        let seed = [9u8; 8];
        let mut want = vec![0x10, 0x01, 0x18, 0x01, 0x2A, 0x0A, 0x12, 0x08];
        want.extend_from_slice(&seed);
        assert_eq!(handshake(&seed).as_ref(), want.as_slice());
        assert_eq!(ok().as_ref(), &[0x10, 0x01, 0x18, 0x03]);
        let empty = messages_frame(-1, &[]);
        assert_eq!(
            empty.as_slice(),
            &[
                0, 0, 0, 17, 0x10, 0x01, 0x18, 0x07, 0x2A, 0x0B, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                0xFF, 0x01
            ]
        );
        let raw = messages_frame(5, &[Bytes::from_static(b"ab")]);
        assert_eq!(
            raw.as_slice(),
            &[0, 0, 0, 10, 0x18, 0x07, 0x2A, 0x06, 0x08, 0x05, 0x12, 0x02, b'a', b'b']
        );
    }

    #[test]
    fn a_batch_frame_is_what_prost_and_the_codec_write() {
        use tokio_util::codec::Encoder;
        // Entries of 0, 1, 127 and 300 bytes cover one- and two-byte lengths; the body exceeds 127 bytes too.
        let entries: Vec<Bytes> = [0usize, 1, 127, 300]
            .iter()
            .map(|n| Bytes::from(vec![7u8; *n]))
            .collect();
        for batch_id in [-1, 1, 300, i64::MAX] {
            let body = Messages {
                batch_id,
                messages: entries.clone(),
            };
            let packet = packet(PacketType::Messages, body.encode_to_vec().into(), batch_id == -1);
            let mut want = bytes::BytesMut::new();
            codec(MAX_RESPONSE_FRAME).encode(packet, &mut want).unwrap();
            assert_eq!(messages_frame(batch_id, &entries), want.as_ref(), "batch {batch_id}");
        }
    }
}
