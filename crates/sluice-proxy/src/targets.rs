//! Providers as the adapters need them: base URL, the API key opened from
//! its sealed form, extra headers. Opening is cached per provider version
//! (its `updated_at_ms`), so the hot path does no decryption; the clear key
//! lives only in memory, in headers marked sensitive.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_core::{DataKey, Provider};
use sluice_providers::{Target, Timeouts};

pub(crate) struct Targets {
    data_key: DataKey,
    cache: RwLock<HashMap<String, (u64, Arc<Target>)>>,
}

impl Targets {
    pub(crate) fn new(data_key: DataKey) -> Self {
        Self {
            data_key,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// `provider`'s target, or why it cannot be built (a secret sealed
    /// under another data key, a header that is not valid HTTP).
    pub(crate) fn get(&self, provider: &Provider) -> Result<Arc<Target>, String> {
        if let Some((version, target)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&provider.name)
        {
            if *version == provider.updated_at_ms {
                return Ok(Arc::clone(target));
            }
        }
        let target = Arc::new(self.build(provider)?);
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                provider.name.clone(),
                (provider.updated_at_ms, Arc::clone(&target)),
            );
        Ok(target)
    }

    fn build(&self, provider: &Provider) -> Result<Target, String> {
        let api_key = match &provider.api_key {
            None => None,
            Some(sealed) => Some(
                self.data_key
                    .open(&provider.name, sealed)
                    .map_err(|e| {
                        format!(
                            "cannot open the API key of provider `{}`: {e}",
                            provider.name
                        )
                    })?
                    .expose()
                    .clone(),
            ),
        };
        let mut extra_headers = HeaderMap::new();
        for (name, value) in &provider.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("provider `{}`: invalid header name", provider.name))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                format!(
                    "provider `{}`: invalid value of header `{name}`",
                    provider.name
                )
            })?;
            extra_headers.insert(name, value);
        }
        Ok(Target {
            base_url: provider.base_url.clone(),
            api_key,
            extra_headers,
        })
    }
}

/// The client's timeouts for `provider`.
pub(crate) fn timeouts(provider: &Provider) -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(provider.timeouts.connect_ms),
        first_byte: Duration::from_millis(provider.timeouts.first_byte_ms),
        total: Duration::from_millis(provider.timeouts.total_ms),
    }
}
