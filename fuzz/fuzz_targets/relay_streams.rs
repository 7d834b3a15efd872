//! An upstream's stream bytes through every relay the proxy runs (OpenAI
//! and Anthropic passthrough, both translations, the Responses API's typed
//! events with their ids rewritten, Gemini's stream to chat completions
//! and on to Anthropic Messages, Anthropic's and Gemini's streams to the
//! Responses API), cut at a fuzzer-chosen
//! point: errors are reported, never a panic, and what a relay writes is
//! always whole SSE events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::ProviderKind;
use sluice_providers::sse::SseParser;
use sluice_providers::{stream_relay, Conversion, Endpoint, Exchange};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(wire.len());
    let exchanges = [
        (Endpoint::ChatCompletions, ProviderKind::OpenAi, Conversion::Passthrough),
        (Endpoint::Messages, ProviderKind::Anthropic, Conversion::Passthrough),
        (Endpoint::ChatCompletions, ProviderKind::Anthropic, Conversion::ChatToMessages),
        (Endpoint::Messages, ProviderKind::OpenAi, Conversion::MessagesToChat),
        (Endpoint::Responses, ProviderKind::OpenAi, Conversion::Passthrough),
        (Endpoint::ChatCompletions, ProviderKind::Gemini, Conversion::Native),
        (Endpoint::Messages, ProviderKind::Gemini, Conversion::Native),
        (Endpoint::Responses, ProviderKind::Gemini, Conversion::Native),
        (Endpoint::Responses, ProviderKind::Anthropic, Conversion::ResponsesViaChat),
        // Random bytes into Bedrock's event-stream decoder (well-framed
        // streams: bedrock_event_stream).
        (Endpoint::ChatCompletions, ProviderKind::Bedrock, Conversion::Native),
    ];
    for (endpoint, kind, conversion) in exchanges {
        for client_wants_usage in [false, true] {
            let exchange = Exchange {
                provider: "fuzzed".into(),
                endpoint,
                kind,
                conversion,
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
            // The client side must always parse as complete events.
            let mut parser = SseParser::new();
            assert!(parser.feed(&out).is_ok());
            assert!(out.is_empty() || out.ends_with(b"\n\n"));
        }
    }
});
