//! Upstream SSE bytes, cut at a fuzzer-chosen point: the parser reports errors,
//! never panics, and the cut never changes the events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = SseParser::with_max_buffered(4096).feed(bytes);
    let mut split = SseParser::with_max_buffered(4096);
    let at = usize::from(cut).min(bytes.len());
    let first = split.feed(&bytes[..at]);
    if let (Ok(whole), Ok(mut events)) = (whole, first) {
        if let Ok(rest) = split.feed(&bytes[at..]) {
            events.extend(rest);
            assert_eq!(whole, events);
        }
    }
});
