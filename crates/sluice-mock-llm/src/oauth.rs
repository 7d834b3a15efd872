//! The access tokens the mock's token endpoints issued (Entra ID's,
//! Google's), each accepted until it expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct IssuedTokens {
    issued: Mutex<HashMap<String, Instant>>,
    seq: AtomicU64,
}

impl IssuedTokens {
    /// Whether `token` is one of ours and unexpired.
    pub(crate) fn accepts(&self, token: &str) -> bool {
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires)
    }

    /// A new token, `prefix-N`, valid for `ttl`.
    pub(crate) fn issue(&self, prefix: &str, ttl: Duration) -> String {
        let token = format!("{prefix}-{}", self.seq.fetch_add(1, Ordering::Relaxed) + 1);
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        issued.retain(|_, expires| *expires > now);
        issued.insert(token.clone(), now + ttl);
        token
    }
}
