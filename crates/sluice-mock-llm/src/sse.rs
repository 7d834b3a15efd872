//! Server-sent event framing: `event:` (Anthropic only), one `data:` line,
//! and a blank line after each event.

use axum::body::Bytes;
use serde::Serialize;

/// `data: {json}\n\n`, the OpenAI framing.
pub(crate) fn data(value: &impl Serialize) -> Bytes {
    let mut out = b"data: ".to_vec();
    write_json(&mut out, value);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// `data: [DONE]\n\n`, OpenAI's end of stream.
pub(crate) fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// `event: NAME\ndata: {json}\n\n`, the Anthropic framing.
pub(crate) fn event(name: &str, value: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    write_json(&mut out, value);
    out.extend_from_slice(b"\n\n");
    out.into()
}

fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    // Serializing a `serde_json::Value` or a plain struct into memory cannot fail.
    serde_json::to_writer(out, value).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_framed_with_a_blank_line() {
        assert_eq!(&data(&json!({"a": 1}))[..], b"data: {\"a\":1}\n\n");
        assert_eq!(
            &event("ping", &json!({"type": "ping"}))[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(&done()[..], b"data: [DONE]\n\n");
    }
}
