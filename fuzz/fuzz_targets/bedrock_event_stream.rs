//! Bedrock's ConverseStream: AWS event-stream frames through the relays
//! the proxy runs for a bedrock provider (to chat completions, and on to
//! Anthropic Messages and the Responses API). Random bytes rarely pass a
//! frame's CRCs, so the input is read as a sequence of well-framed events
//! (a fuzzer-chosen event type and JSON-ish payload each, with real CRCs),
//! optionally with one byte flipped and raw bytes appended, fed cut at a
//! fuzzer-chosen point: errors are reported, never a panic, and what a
//! relay writes is always whole SSE events.
#![no_main]

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use libfuzzer_sys::fuzz_target;
use sluice_core::ProviderKind;
use sluice_providers::sse::SseParser;
use sluice_providers::{stream_relay, Conversion, Endpoint, Exchange};

const KINDS: [&str; 8] = [
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
    "throttlingException",
    "somethingNew",
];

/// Frames from `data`: each a kind byte, a length byte and that many
/// payload bytes.
fn frames(mut data: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    while let [kind, len, rest @ ..] = data {
        let len = usize::from(*len).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        data = tail;
        let kind = KINDS[usize::from(*kind) % KINDS.len()];
        let exception = kind.ends_with("Exception");
        let message = Message::new(payload.to_vec())
            .add_header(Header::new(
                if exception {
                    ":exception-type"
                } else {
                    ":event-type"
                },
                HeaderValue::String(kind.to_owned().into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String(if exception { "exception" } else { "event" }.into()),
            ));
        if write_message_to(&message, &mut wire).is_err() {
            break;
        }
    }
    wire
}

fuzz_target!(|data: &[u8]| {
    let [cut, flip, raw_len, rest @ ..] = data else {
        return;
    };
    let raw_len = usize::from(*raw_len).min(rest.len());
    let (raw, framed) = rest.split_at(raw_len);
    let mut wire = frames(framed);
    if *flip != 0 && !wire.is_empty() {
        let at = usize::from(*flip) * 7 % wire.len();
        wire[at] ^= 0x5a;
    }
    wire.extend_from_slice(raw);
    let cut = (usize::from(*cut) * 3).min(wire.len());
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Messages, Endpoint::Responses] {
        for client_wants_usage in [false, true] {
            let exchange = Exchange {
                provider: "fuzzed".into(),
                endpoint,
                kind: ProviderKind::Bedrock,
                conversion: Conversion::Native,
                stream: true,
                client_wants_usage,
                base64: false,
            };
            let mut relay = stream_relay(&exchange, "m", 0);
            let mut out = Vec::new();
            let fed = relay
                .feed(&wire[..cut], &mut out)
                .and_then(|()| relay.feed(&wire[cut..], &mut out));
            if fed.is_ok() {
                let _ = relay.finish();
            }
            let _ = relay.usage();
            let mut parser = SseParser::new();
            assert!(parser.feed(&out).is_ok());
            assert!(out.is_empty() || out.ends_with(b"\n\n"));
        }
    }
});
