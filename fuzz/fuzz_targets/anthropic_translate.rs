//! Untrusted input on both translation paths: a client's chat request and an
//! upstream's Anthropic stream. Both report errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::openai::ChatRequest;
use sluice_providers::sse::SseParser;
use sluice_providers::{chat_to_messages, StreamTranslator};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<ChatRequest>(data) {
        let _ = chat_to_messages(request, 1024);
    }
    let mut translator = StreamTranslator::new(0);
    if let Ok(events) = SseParser::with_max_buffered(1 << 16).feed(data) {
        for event in &events {
            if let Ok(Some(chunk)) = translator.translate_sse(event) {
                let _ = serde_json::to_vec(&chunk);
            }
        }
        let _ = translator.usage_chunk();
    }
});
