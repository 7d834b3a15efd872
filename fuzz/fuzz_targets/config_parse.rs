//! Operator-written TOML: parsing and validation report errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(raw) = sluice::config::parse(text) {
            let _ = sluice::config::validate(raw, std::path::Path::new("/nonexistent"));
        }
    }
});
