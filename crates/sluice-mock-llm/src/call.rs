//! What every API request goes through before its handler answers, in this
//! order: counted, header overrides resolved, slow headers, auth, injected
//! failure.

use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::behavior::Plan;
use crate::fault::Fault;
use crate::server::Mock;
use crate::stats::{Endpoint, InFlight};

/// An admitted request: the behaviour it runs under and its in-flight guard,
/// to be moved into the response body.
pub(crate) struct Call {
    pub plan: Plan,
    pub guard: InFlight,
}

impl Mock {
    pub(crate) async fn admit(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
    ) -> Result<Call, Fault> {
        self.admit_as(endpoint, headers, || self.check_credential(headers))
            .await
    }

    /// [`admit`](Self::admit) with the API's own credential check in its
    /// place (Bedrock's SigV4), whose refusal `E` may say more than a
    /// [`Fault`] can.
    pub(crate) async fn admit_as<E: From<Fault>>(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
        check_credential: impl FnOnce() -> Result<(), E>,
    ) -> Result<Call, E> {
        let guard = self.counters.admit(endpoint);
        let plan = self.behavior.load().plan(headers)?;
        if !plan.header_delay.is_zero() {
            tokio::time::sleep(plan.header_delay).await;
        }
        if let Err(refusal) = check_credential() {
            self.counters.bump(&self.counters.unauthorized);
            return Err(refusal);
        }
        if let Some(status) = plan.fail_status {
            return Err(Fault::Injected {
                status,
                retry_after_ms: plan.retry_after_ms,
            }
            .into());
        }
        Ok(Call { plan, guard })
    }

    /// The request's credential, when the mock requires one: the
    /// configured key, or a live token of its Entra ID.
    fn check_credential(&self, headers: &HeaderMap) -> Result<(), Fault> {
        if self.config.require_api_key.is_none() && self.config.entra.is_none() {
            return Ok(());
        }
        let key = presented_key(headers).ok_or(Fault::MissingKey)?;
        if self.config.require_api_key.as_deref() == Some(key) || self.issued.accepts(key) {
            Ok(())
        } else {
            Err(Fault::WrongKey)
        }
    }

    /// 404 unless the model is served.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), Fault> {
        if self.config.serves(model) {
            Ok(())
        } else {
            Err(Fault::ModelNotFound {
                model: model.to_owned(),
            })
        }
    }
}

/// `Authorization: Bearer KEY`, `x-api-key: KEY`, `api-key: KEY` or
/// `x-goog-api-key: KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = bearer(headers) {
        return Some(token);
    }
    ["x-api-key", "api-key", "x-goog-api-key"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
}

/// The token of `Authorization: Bearer TOKEN`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Parses a JSON request body, naming the field at fault.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Fault> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(Fault::from_json)
}
