//! The Confluent wire format of a record value under a Schema Registry: byte `0`, the schema id
//! as 4 bytes big-endian, then the payload (here JSON). Beside it, plain JSON records (no
//! registry, or written before one was turned on): a JSON text never starts with a 0 byte, so
//! the first byte tells the two apart and one topic may hold both.

/// The first byte of a framed record.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte and schema id.
pub const FRAME_HEADER_LEN: usize = 5;

/// A record value, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// JSON as it is, no registry involved.
    Plain(&'a [u8]),
    /// JSON under the registry's schema `schema_id`.
    Framed { schema_id: u32, json: &'a [u8] },
}

impl<'a> Body<'a> {
    /// The JSON, framed or not.
    pub fn json(&self) -> &'a [u8] {
        match *self {
            Body::Plain(json) | Body::Framed { json, .. } => json,
        }
    }
    pub fn schema_id(&self) -> Option<u32> {
        match *self {
            Body::Plain(_) => None,
            Body::Framed { schema_id, .. } => Some(schema_id),
        }
    }
}

/// A value that starts like a frame but is too short to be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated Schema Registry frame: {0} bytes, a frame has at least {FRAME_HEADER_LEN} (byte 0 and a 4-byte schema id) before its JSON")]
pub struct TruncatedFrame(pub usize);

/// Prefixes `json` with the frame of `schema_id`.
pub fn frame(schema_id: u32, json: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(FRAME_HEADER_LEN + json.len());
    framed.push(MAGIC_BYTE);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(json);
    framed
}

/// Tells a framed value from a plain one.
pub fn unframe(value: &[u8]) -> Result<Body<'_>, TruncatedFrame> {
    if value.first() != Some(&MAGIC_BYTE) {
        return Ok(Body::Plain(value));
    }
    if value.len() < FRAME_HEADER_LEN {
        return Err(TruncatedFrame(value.len()));
    }
    let id: [u8; 4] = value[1..FRAME_HEADER_LEN].try_into().expect("4 bytes");
    Ok(Body::Framed {
        schema_id: u32::from_be_bytes(id),
        json: &value[FRAME_HEADER_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_plain_json_passes_through() {
        let framed = frame(0x0102_0304, br#"{"a":1}"#);
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        let body = unframe(&framed).unwrap();
        assert_eq!(body.schema_id(), Some(0x0102_0304));
        assert_eq!(body.json(), br#"{"a":1}"#);
        assert_eq!(unframe(b" {}").unwrap(), Body::Plain(b" {}"));
        assert_eq!(unframe(b"").unwrap(), Body::Plain(b""));
    }

    #[test]
    fn a_short_frame_is_truncated() {
        assert_eq!(unframe(&[0, 0, 1]), Err(TruncatedFrame(3)));
        // The header alone is a frame around an empty payload, which the JSON decode refuses.
        assert_eq!(unframe(&[0, 0, 0, 0, 7]).unwrap().json(), b"");
    }
}
