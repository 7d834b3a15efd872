//! The connection limits of a listener (`[proxy]` with `[limits]
//! max_header_bytes`, and `[admin]`), over `ConnectionLimits`' defaults.

use super::check::Problems;
use sluice_proxy::ConnectionLimits;
use std::time::Duration;

/// A listener's limit fields as written, each optional.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RawConnectionLimits {
    pub first_request_timeout_ms: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub max_connections: Option<u64>,
}

/// The admin listener's defaults: its requests are small and few.
pub(super) fn admin_defaults() -> ConnectionLimits {
    ConnectionLimits {
        first_request_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_header_bytes: 16 * 1024,
        max_headers: 100,
        max_connections: 1_000,
    }
}

/// `raw` over `base`; fields are named `{section}.{field}`, except the
/// head size, named `header_bytes_field` (the proxy's is in `[limits]`).
pub(super) fn connection_limits(
    p: &mut Problems,
    section: &str,
    header_bytes_field: &str,
    raw: RawConnectionLimits,
    base: ConnectionLimits,
) -> ConnectionLimits {
    let mut c = base;
    let mut ms = |field: &str, value: Option<u64>, out: &mut Duration| match value {
        Some(v) if !(1..=3_600_000).contains(&v) => p.push(
            format!("{section}.{field}"),
            "must be between 1 and 3600000",
        ),
        Some(v) => *out = Duration::from_millis(v),
        None => {}
    };
    ms(
        "first_request_timeout_ms",
        raw.first_request_timeout_ms,
        &mut c.first_request_timeout,
    );
    ms(
        "header_read_timeout_ms",
        raw.header_read_timeout_ms,
        &mut c.header_read_timeout,
    );
    ms("idle_timeout_ms", raw.idle_timeout_ms, &mut c.idle_timeout);
    let mut count =
        |field: String, value: Option<u64>, min: u64, max: u64, out: &mut usize| match value {
            Some(v) if !(min..=max).contains(&v) => {
                p.push(field, format!("must be between {min} and {max}"))
            }
            Some(v) => *out = v as usize,
            None => {}
        };
    count(
        header_bytes_field.to_string(),
        raw.max_header_bytes,
        1024,
        1024 * 1024,
        &mut c.max_header_bytes,
    );
    count(
        format!("{section}.max_headers"),
        raw.max_headers,
        1,
        10_000,
        &mut c.max_headers,
    );
    count(
        format!("{section}.max_connections"),
        raw.max_connections,
        1,
        1_000_000,
        &mut c.max_connections,
    );
    c
}
