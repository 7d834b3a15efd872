//! A token endpoint's answer (Entra ID's, Google's), whatever its status
//! and bytes: a token that is a valid header value with a bounded
//! lifetime, or an error; never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::oauth::parse_token_response;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    // The first byte picks the status: 200 half the time.
    let status = if first < 128 { 200 } else { 100 + u16::from(first) * 2 };
    let Ok(status) = http::StatusCode::from_u16(status) else {
        return;
    };
    if let Ok(token) = parse_token_response(status, body) {
        assert!(http::HeaderValue::from_str(&token.access_token).is_ok());
        assert!(token.lifetime.as_secs() >= 1 && token.lifetime.as_secs() <= 24 * 3600);
    }
});
