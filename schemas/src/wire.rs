//! The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro body.

use crate::error::{Error, Result};

const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;

/// Splits a framed message into its schema id and Avro body.
pub fn split_frame(message: &[u8]) -> Result<(u32, &[u8])> {
    if message.len() < HEADER_LEN {
        return Err(Error::BadFraming(format!(
            "{} bytes is shorter than the 5-byte header",
            message.len()
        )));
    }
    if message[0] != MAGIC {
        return Err(Error::BadFraming(format!(
            "magic byte is {} instead of 0",
            message[0]
        )));
    }
    let id = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
    Ok((id, &message[HEADER_LEN..]))
}

/// Frames an Avro body with its schema id.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let framed = frame(258, b"body");
        assert_eq!(framed[..5], [0, 0, 0, 1, 2]);
        assert_eq!(split_frame(&framed).unwrap(), (258, &b"body"[..]));
    }

    #[test]
    fn refuses_bad_frames() {
        assert!(split_frame(b"\0\0").is_err());
        assert!(split_frame(b"\x01\0\0\0\x01x").is_err());
    }
}
