//! A client's request body on every endpoint, prepared for every provider
//! kind: parse errors and untranslatable requests are reported, never a
//! panic. This is the first code a request body from the internet reaches.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use sluice_core::ProviderKind;
use sluice_providers::{prepare, ClientRequest, Endpoint, Target};

fuzz_target!(|data: &[u8]| {
    let target = Target {
        name: "fuzzed".into(),
        base_url: "http://127.0.0.1:1/v1".into(),
        api_key: Some("sk-fuzz".into()),
        extra_headers: HeaderMap::new(),
        ..Target::default()
    };
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Messages,
        Endpoint::Responses,
    ] {
        let Ok(request) = ClientRequest::parse(endpoint, data, &HeaderMap::new()) else {
            continue;
        };
        for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
            let _ = prepare(&request, kind, &target, "upstream-model", 1024);
        }
    }
});
