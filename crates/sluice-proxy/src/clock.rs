//! The proxy's one wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, for what takes a time rather than a number (a request's signature).
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Milliseconds since the Unix epoch (0 before it, `u64::MAX` past what a
/// `u64` holds).
pub fn now_ms() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
