//! Untrusted input on the reverse translation path, non-streamed: a client's
//! Messages request and an OpenAI-compatible upstream's response. Both report
//! errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::anthropic::MessagesRequest;
use sluice_providers::body;
use sluice_providers::openai::ChatResponse;
use sluice_providers::{chat_response_to_messages, messages_to_chat};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = body::parse::<MessagesRequest>(data) {
        if let Ok(chat) = messages_to_chat(&request, "upstream-model") {
            let _ = serde_json::to_vec(&chat);
        }
    }
    if let Ok(response) = body::parse::<ChatResponse>(data) {
        if let Ok(message) = chat_response_to_messages(&response, "client-model") {
            let _ = serde_json::to_vec(&message);
        }
    }
});
