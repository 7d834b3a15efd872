//! Bearer tokens the gateway obtains for providers: Microsoft Entra ID
//! tokens of `azure_openai` providers configured with `entra`, and Google
//! OAuth tokens of `vertex` providers' service accounts.
//!
//! One [`TokenSource`] per provider version is shared by every worker (the
//! [`Tokens`] registry), so a node asks Entra ID once per token, not once
//! per worker thread. A token is fetched on first use, refreshed by the
//! first request that finds it three quarters through its lifetime (one
//! fetch at a time; requests meanwhile keep using the current token), and
//! not used in the last tenth of its lifetime (at most a minute). A failed
//! fetch is not retried for [`RETRY_AFTER`]: while the current token is
//! still good requests go on with it, after that they fail fast with the
//! reason, instead of each waiting on the token endpoint.
//!
//! The client secret or service account key lives only in memory, opened
//! from its sealed form; the token is only ever written into a sensitive
//! header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use sluice_core::provider::EntraSettings;
use sluice_core::Redacted;
use sluice_providers::entra;
use sluice_providers::google::ServiceAccount;
use sluice_providers::oauth::{parse_token_response, TokenError};
use sluice_providers::{BearerToken, Timeouts, UpstreamClient};

/// How long a failed fetch is believed before the token endpoint is asked
/// again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The largest token answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// The deadlines of one token request.
const TOKEN_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    first_byte: Duration::from_secs(10),
    total: Duration::from_secs(15),
};

/// Every provider's token source, shared by the workers.
#[derive(Default)]
pub(crate) struct Tokens {
    /// By provider name: the provider version (`updated_at_ms`) and its
    /// source. A new version (another secret, tenant or client) starts
    /// afresh.
    sources: Mutex<HashMap<String, (u64, Arc<TokenSource>)>>,
}

impl Tokens {
    /// The token source of provider `name` at `version`, made with
    /// `grant` the first time.
    pub(crate) fn source(
        &self,
        name: &str,
        version: u64,
        grant: impl FnOnce() -> Grant,
    ) -> Arc<TokenSource> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, source)) = sources.get(name) {
            if *v == version {
                return Arc::clone(source);
            }
        }
        let source = Arc::new(TokenSource::new(grant()));
        sources.insert(name.to_owned(), (version, Arc::clone(&source)));
        source
    }
}

/// How a token is asked for.
pub(crate) enum Grant {
    /// Microsoft Entra ID's client credentials.
    Entra {
        settings: EntraSettings,
        client_secret: Redacted<String>,
    },
    /// A Google service account's signed JWT.
    ServiceAccount(ServiceAccount),
}

impl Grant {
    fn request(&self) -> Result<http::Request<Bytes>, TokenError> {
        match self {
            Grant::Entra {
                settings,
                client_secret,
            } => entra::token_request(settings, client_secret.expose()),
            Grant::ServiceAccount(account) => {
                let now = crate::clock::now_ms() / 1000;
                account.token_request(now, &ring::rand::SystemRandom::new())
            }
        }
    }

    /// Who asks, for the log (never a secret).
    fn who(&self) -> String {
        match self {
            Grant::Entra { settings, .. } => format!(
                "Entra ID tenant {} client {}",
                settings.tenant_id, settings.client_id
            ),
            Grant::ServiceAccount(account) => {
                format!("Google service account {}", account.client_email)
            }
        }
    }
}

/// A token held, and when to refresh and stop using it.
struct Held {
    token: Arc<str>,
    refresh_at: Instant,
    usable_until: Instant,
}

/// The last fetch that failed, believed until `retry_at`.
struct Failed {
    error: TokenError,
    retry_at: Instant,
}

#[derive(Default)]
struct Slot {
    held: Option<Held>,
    failed: Option<Failed>,
}

/// One credential's token.
pub(crate) struct TokenSource {
    grant: Grant,
    slot: RwLock<Slot>,
    /// Held while a fetch is under way: one at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl BearerToken for TokenSource {
    fn current(&self) -> Option<Arc<str>> {
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        slot.held
            .as_ref()
            .filter(|h| Instant::now() < h.usable_until)
            .map(|h| Arc::clone(&h.token))
    }
}

/// What a request may do now.
enum Now {
    /// Use the current token.
    Use,
    /// Fail with this error (a recent fetch failed, no usable token).
    Fail(TokenError),
    /// Fetch one first (refresh due, or none held).
    Fetch,
}

impl TokenSource {
    fn new(grant: Grant) -> Self {
        Self {
            grant,
            slot: RwLock::new(Slot::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn now(&self, now: Instant) -> Now {
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        let usable = slot.held.as_ref().is_some_and(|h| now < h.usable_until);
        let due = slot.held.as_ref().is_none_or(|h| now >= h.refresh_at);
        match &slot.failed {
            // A fetch failed lately: no new one before its retry time.
            Some(failed) if now < failed.retry_at => {
                if usable {
                    Now::Use
                } else {
                    Now::Fail(failed.error.clone())
                }
            }
            _ if !due => Now::Use,
            _ => Now::Fetch,
        }
    }

    /// Makes sure a token is usable for a request sent now, fetching one
    /// with `client` if it is due.
    pub(crate) async fn ready(&self, client: &UpstreamClient) -> Result<(), TokenError> {
        self.ready_with(|request| async move {
            let response =
                client
                    .send(request, TOKEN_TIMEOUTS)
                    .await
                    .map_err(|e| TokenError::Unreadable {
                        status: 0,
                        reason: format!("the token endpoint did not answer: {e}"),
                    })?;
            let status = response.status;
            let body =
                response
                    .body
                    .collect(MAX_ANSWER)
                    .await
                    .map_err(|e| TokenError::Unreadable {
                        status: status.as_u16(),
                        reason: e.to_string(),
                    })?;
            Ok((status, body))
        })
        .await
    }

    /// [`TokenSource::ready`] with the token endpoint `fetch`.
    async fn ready_with<F, Fut>(&self, fetch: F) -> Result<(), TokenError>
    where
        F: FnOnce(http::Request<Bytes>) -> Fut,
        Fut: std::future::Future<Output = Result<(StatusCode, Bytes), TokenError>>,
    {
        match self.now(Instant::now()) {
            Now::Use => return Ok(()),
            Now::Fail(error) => return Err(error),
            Now::Fetch => {}
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        match self.now(Instant::now()) {
            Now::Use => return Ok(()),
            Now::Fail(error) => return Err(error),
            Now::Fetch => {}
        }
        let asked_at = Instant::now();
        let request = self.grant.request()?;
        let issued = match fetch(request).await {
            Ok((status, body)) => parse_token_response(status, &body),
            Err(error) => Err(error),
        };
        let mut slot = self.slot.write().unwrap_or_else(|e| e.into_inner());
        match issued {
            Ok(issued) => {
                let lifetime = issued.lifetime;
                let margin = (lifetime / 10).min(Duration::from_secs(60));
                slot.held = Some(Held {
                    token: issued.access_token.into(),
                    refresh_at: asked_at + lifetime * 3 / 4,
                    usable_until: asked_at + lifetime - margin,
                });
                slot.failed = None;
                Ok(())
            }
            Err(error) => {
                let usable = slot
                    .held
                    .as_ref()
                    .is_some_and(|h| Instant::now() < h.usable_until);
                tracing::warn!(
                    credential = %self.grant.who(),
                    error = %error,
                    still_using_the_current_token = usable,
                    "cannot get a token for a provider"
                );
                slot.failed = Some(Failed {
                    error: error.clone(),
                    retry_at: Instant::now() + RETRY_AFTER,
                });
                if usable {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn entra() -> EntraSettings {
        EntraSettings {
            tenant_id: "t".into(),
            client_id: "c".into(),
            authority_url: "http://127.0.0.1:9".into(),
            scope: "s".into(),
        }
    }

    fn grant() -> Grant {
        Grant::Entra {
            settings: entra(),
            client_secret: Redacted("secret".into()),
        }
    }

    fn source() -> TokenSource {
        TokenSource::new(grant())
    }

    /// Changes the token held (as time passing would).
    fn held(token: &TokenSource, change: impl FnOnce(&mut Held)) {
        change(token.slot.write().unwrap().held.as_mut().unwrap());
    }

    /// Gets a first token, `name`, valid for an hour.
    async fn fetched(token: &TokenSource, name: &'static str) {
        token
            .ready_with(|_| async move { answer(name, 3600) })
            .await
            .unwrap();
    }

    fn answer(token: &str, seconds: u64) -> Result<(StatusCode, Bytes), TokenError> {
        Ok((
            StatusCode::OK,
            Bytes::from(format!(
                r#"{{"token_type":"Bearer","expires_in":{seconds},"access_token":"{token}"}}"#
            )),
        ))
    }

    fn refused() -> Result<(StatusCode, Bytes), TokenError> {
        Ok((
            StatusCode::UNAUTHORIZED,
            Bytes::from_static(br#"{"error":"invalid_client","error_description":"bad secret"}"#),
        ))
    }

    #[tokio::test]
    async fn a_token_is_fetched_once_and_reused() {
        let token = source();
        let fetches = AtomicUsize::new(0);
        for _ in 0..3 {
            token
                .ready_with(|request| {
                    fetches.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        String::from_utf8_lossy(request.body()).contains("client_secret=secret")
                    );
                    async { answer("tok1", 3600) }
                })
                .await
                .unwrap();
        }
        assert_eq!(fetches.load(Ordering::Relaxed), 1);
        assert_eq!(token.current().as_deref(), Some("tok1"));
    }

    #[tokio::test]
    async fn a_refresh_is_due_three_quarters_through() {
        let token = source();
        fetched(&token, "old").await;
        // Pretend the token was fetched long ago.
        held(&token, |h| h.refresh_at = Instant::now());
        fetched(&token, "new").await;
        assert_eq!(token.current().as_deref(), Some("new"));
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_a_good_token_and_is_not_retried_at_once() {
        let token = source();
        fetched(&token, "old").await;
        held(&token, |h| h.refresh_at = Instant::now());
        token.ready_with(|_| async { refused() }).await.unwrap();
        assert_eq!(token.current().as_deref(), Some("old"));
        // Within RETRY_AFTER: no fetch.
        token
            .ready_with(|_| async { panic!("fetched again at once") })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_a_token_a_refusal_fails_fast_with_its_reason() {
        let token = source();
        let err = token.ready_with(|_| async { refused() }).await.unwrap_err();
        assert!(err.to_string().contains("invalid_client"), "{err}");
        assert!(!err.to_string().contains("secret="), "{err}");
        let again = token
            .ready_with(|_| async { panic!("fetched again at once") })
            .await
            .unwrap_err();
        assert_eq!(again, err);
        assert!(token.current().is_none());
    }

    #[tokio::test]
    async fn an_expired_token_is_never_sent() {
        let token = source();
        fetched(&token, "t").await;
        held(&token, |h| h.usable_until = Instant::now());
        assert!(token.current().is_none());
    }

    #[test]
    fn one_source_per_provider_version() {
        let tokens = Tokens::default();
        let a = tokens.source("p", 1, grant);
        let b = tokens.source("p", 1, || unreachable!("the same version is reused"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = tokens.source("p", 2, grant);
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
