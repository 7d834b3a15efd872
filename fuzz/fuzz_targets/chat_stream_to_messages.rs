//! An OpenAI-compatible upstream's stream, as SSE bytes, translated into
//! Anthropic events: errors are reported, never a panic, and a stream that
//! ends cleanly has sent `message_stop`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::openai::{ChatChunk, STREAM_DONE};
use sluice_providers::{ChatToMessagesStream, SseParser};

fuzz_target!(|data: &[u8]| {
    let Ok(events) = SseParser::with_max_buffered(1 << 16).feed(data) else {
        return;
    };
    let mut stream = ChatToMessagesStream::new("client-model");
    for event in &events {
        if event.data == STREAM_DONE {
            if stream.finish().is_ok() {
                assert!(stream.is_finished());
            }
        } else if let Ok(chunk) = serde_json::from_str::<ChatChunk>(&event.data) {
            if let Ok(events) = stream.feed(&chunk) {
                let _ = serde_json::to_vec(&events);
            }
        }
    }
    let _ = stream.usage();
});
