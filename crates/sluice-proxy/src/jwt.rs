//! JWT client authentication: a bearer token from an identity provider the
//! node trusts (`[[proxy.jwt_issuers]]`), checked here instead of a virtual
//! key.
//!
//! A token is accepted only when all of this holds:
//! * its `iss` is exactly one configured issuer's;
//! * its header names a key (`kid`) of that issuer's JWKS, and the
//!   algorithm that key is for: RS256/384/512, PS256/384/512, ES256/384
//!   or EdDSA. `none`, HMAC (`HS*`) and a key of another family than the
//!   header's algorithm (the key-confusion attack) are refused; so are
//!   symmetric keys a JWKS lists;
//! * the signature verifies (ring, through `jsonwebtoken`);
//! * `aud` holds the issuer's audience, `exp` is present and not past, and
//!   `nbf`, if present, is not ahead, each within the issuer's clock skew,
//!   against the proxy's clock;
//! * the subject claim (`sub` by default) is a string or a number, and the
//!   template claim (if configured) selects a key template, or there is a
//!   default template.
//!
//! The subject then stands for a key of its own (see
//! `sluice_core::KeySubject`), with its template's routes and quotas.
//!
//! # Keys
//! Each issuer's JWKS is fetched on first use and cached for every worker.
//! It is fetched again in the background when it is older than
//! [`REFRESH_AFTER`] (requests keep using the cached keys meanwhile, and if
//! that fetch fails), and when a token names a `kid` it does not hold, at
//! most once per [`REFETCH_AT_MOST_EVERY`], so tokens with made-up `kid`s
//! cannot make the node hammer the identity provider. One fetch at a time
//! per issuer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::Uri;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sluice_core::KeySubject;
use sluice_providers::{Timeouts, UpstreamClient};

use crate::error::ProxyError;

/// A cached JWKS older than this is fetched again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);
/// The least time between two fetches of one issuer's JWKS.
pub const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);
/// The largest JWKS answer read.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The largest token looked at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The deadlines of one JWKS request.
const JWKS_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    first_byte: Duration::from_secs(10),
    total: Duration::from_secs(15),
};

/// One trusted issuer (`[[proxy.jwt_issuers]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    /// The issuer's name in Sluice: subject keys are named by it.
    pub name: String,
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// Where its signing keys are published (a JWKS).
    pub jwks_url: Uri,
    /// What `aud` must hold.
    pub audience: String,
    /// The claim naming the subject (`sub`).
    pub subject_claim: String,
    /// The claim whose value selects a key template (`templates`), if any.
    pub template_claim: Option<String>,
    /// Key template (a key id) by the template claim's value.
    pub templates: BTreeMap<String, String>,
    /// The key template of a token whose template claim selects none.
    pub default_template: Option<String>,
    /// How far `exp` and `nbf` may be off the proxy's clock.
    pub clock_skew: Duration,
}

/// Whether `token` has a JWT's shape (three base64url parts, a JSON header
/// first), so it is checked as one and not looked up as a virtual key.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The issuers a proxy trusts, with their cached keys.
pub(crate) struct Jwt {
    issuers: Vec<Arc<Issuer>>,
}

struct Issuer {
    config: JwtIssuer,
    keys: RwLock<Arc<KeySet>>,
    /// Held while the JWKS is being fetched: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// One fetch of an issuer's JWKS.
#[derive(Default)]
struct KeySet {
    /// By `kid` (a key without one is listed under "").
    keys: HashMap<String, (Arc<DecodingKey>, Algorithm)>,
    /// When it was fetched (`None`: never).
    fetched_at: Option<Instant>,
    /// When a fetch was last tried, and why it failed if it did.
    tried_at: Option<Instant>,
    failure: Option<String>,
}

impl KeySet {
    fn key(&self, kid: &str) -> Option<(Arc<DecodingKey>, Algorithm)> {
        self.keys.get(kid).cloned()
    }
}

impl Jwt {
    pub(crate) fn new(issuers: &[JwtIssuer]) -> Option<Self> {
        (!issuers.is_empty()).then(|| Jwt {
            issuers: issuers
                .iter()
                .map(|config| {
                    Arc::new(Issuer {
                        config: config.clone(),
                        keys: RwLock::new(Arc::new(KeySet::default())),
                        fetching: tokio::sync::Mutex::new(()),
                    })
                })
                .collect(),
        })
    }

    /// Checks `token` at `now_ms` (fetching its issuer's keys with `client`
    /// if needed): the subject it stands for, or the 401 (503 when the keys
    /// cannot be had) to answer.
    pub(crate) async fn verify(
        &self,
        client: &UpstreamClient,
        token: &str,
        now_ms: u64,
    ) -> Result<KeySubject, ProxyError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused(format!(
                "the token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refused(format!("its header cannot be read ({e})")))?;
        let iss = unverified_issuer(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| refused(format!("its issuer {} is not trusted", shown(&iss))))?;
        let kid = header.kid.as_deref().unwrap_or("");
        let (key, algorithm) = issuer.key(client, kid).await?;
        if header.alg != algorithm {
            return Err(refused(format!(
                "it is signed with {:?}, but its key `{}` is for {algorithm:?}",
                header.alg,
                shown(kid)
            )));
        }
        let claims = issuer.check(token, &key, algorithm, now_ms)?;
        issuer.subject(&claims)
    }
}

impl Issuer {
    /// The key `kid` and its algorithm, fetching the JWKS if it is not
    /// cached. A cached key is used at once; if the cache is old, a fetch
    /// starts beside the request (no request waits on the identity provider
    /// for a key it already has).
    async fn key(
        self: &Arc<Self>,
        client: &UpstreamClient,
        kid: &str,
    ) -> Result<(Arc<DecodingKey>, Algorithm), ProxyError> {
        let now = Instant::now();
        let cached = self.cached();
        if let Some(found) = cached.key(kid) {
            if is_due(cached.fetched_at, now, REFRESH_AFTER) && self.may_fetch(&cached, now) {
                let (issuer, client) = (Arc::clone(self), client.clone());
                tokio::spawn(async move { issuer.fetch_once(&client, &cached).await });
            }
            return Ok(found);
        }
        if !self.may_fetch(&cached, now) {
            return Err(self.unknown_kid(&cached, kid));
        }
        self.fetch_once(client, &cached).await;
        let fetched = self.cached();
        fetched
            .key(kid)
            .ok_or_else(|| self.unknown_kid(&fetched, kid))
    }

    /// Fetches the JWKS unless another fetch replaced `seen` meanwhile
    /// (one fetch at a time; those that waited use its result).
    async fn fetch_once(&self, client: &UpstreamClient, seen: &Arc<KeySet>) {
        let _one = self.fetching.lock().await;
        if Arc::ptr_eq(&self.cached(), seen) {
            self.fetch(client).await;
        }
    }

    fn cached(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether a fetch may start now (the last try is old enough).
    fn may_fetch(&self, set: &KeySet, now: Instant) -> bool {
        is_due(set.tried_at, now, REFETCH_AT_MOST_EVERY)
    }

    fn unknown_kid(&self, set: &KeySet, kid: &str) -> ProxyError {
        match (&set.failure, set.fetched_at) {
            // No keys at all: the identity provider's fault, not the token's.
            (Some(why), None) => ProxyError::auth_unavailable(
                format!(
                    "The signing keys of issuer `{}` cannot be fetched: {why}",
                    self.config.name
                ),
                REFETCH_AT_MOST_EVERY,
            ),
            _ => refused(format!(
                "its key `{}` is not one of issuer `{}`'s signing keys",
                shown(kid),
                self.config.name
            )),
        }
    }

    /// Fetches the JWKS and stores what came (or the failure, keeping the
    /// keys fetched before).
    async fn fetch(&self, client: &UpstreamClient) {
        let fetched = fetch_jwks(client, &self.config.jwks_url).await;
        let now = Instant::now();
        let mut slot = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let next = match fetched {
            Ok(keys) => KeySet {
                keys,
                fetched_at: Some(now),
                tried_at: Some(now),
                failure: None,
            },
            Err(why) => {
                tracing::warn!(issuer = %self.config.name, url = %self.config.jwks_url, "JWKS fetch failed: {why}");
                KeySet {
                    keys: slot.keys.clone(),
                    fetched_at: slot.fetched_at,
                    tried_at: Some(now),
                    failure: Some(why),
                }
            }
        };
        *slot = Arc::new(next);
    }

    /// The verified claims, or why the token is refused.
    fn check(
        &self,
        token: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
        now_ms: u64,
    ) -> Result<Map<String, Value>, ProxyError> {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        // Time is checked below, against the proxy's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| refused(why_not(&e, &self.config.audience)))?;
        let claims = data.claims;
        let now_s = now_ms / 1000;
        let skew = self.config.clock_skew.as_secs();
        match claims.get("exp").and_then(Value::as_u64) {
            None => return Err(refused("it has no `exp` (expiry) claim".into())),
            Some(exp) if now_s >= exp.saturating_add(skew) => {
                return Err(refused("it has expired".into()))
            }
            Some(_) => {}
        }
        if let Some(nbf) = claims.get("nbf") {
            match nbf.as_u64() {
                Some(nbf) if now_s.saturating_add(skew) >= nbf => {}
                Some(_) => return Err(refused("it is not valid yet (`nbf`)".into())),
                None => return Err(refused("its `nbf` is not a number".into())),
            }
        }
        Ok(claims)
    }

    /// The subject the claims name, with its key template.
    fn subject(&self, claims: &Map<String, Value>) -> Result<KeySubject, ProxyError> {
        let config = &self.config;
        let subject = claim_text(claims, &config.subject_claim).ok_or_else(|| {
            refused(format!(
                "it has no `{}` claim naming its subject",
                config.subject_claim
            ))
        })?;
        if subject.len() > sluice_core::key::MAX_SUBJECT_LEN || subject.is_empty() {
            return Err(refused(format!(
                "its `{}` claim is empty or longer than {} bytes",
                config.subject_claim,
                sluice_core::key::MAX_SUBJECT_LEN
            )));
        }
        let selected = config.template_claim.as_ref().and_then(|claim| {
            claim_values(claims, claim)
                .into_iter()
                .find_map(|value| config.templates.get(&value))
        });
        let template = selected
            .or(config.default_template.as_ref())
            .ok_or_else(|| {
                refused(match &config.template_claim {
                    Some(claim) => format!(
                        "its `{claim}` claim selects no key template of issuer `{}`",
                        config.name
                    ),
                    None => format!("issuer `{}` has no key template", config.name),
                })
            })?;
        Ok(KeySubject {
            issuer: config.name.clone(),
            subject,
            template: template.clone(),
        })
    }
}

/// Whether something last done `at` is due again after `every`.
fn is_due(at: Option<Instant>, now: Instant, every: Duration) -> bool {
    at.is_none_or(|at| now.saturating_duration_since(at) >= every)
}

/// The 401 for a token refused because `why`.
fn refused(why: String) -> ProxyError {
    ProxyError::unauthenticated(format!("The bearer token was refused: {why}."))
}

/// A value from a token, as an error message shows it: quoted, and cut
/// short (a token is the client's to fill).
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Why `jsonwebtoken` refused a token, for the client.
fn why_not(error: &jsonwebtoken::errors::Error, audience: &str) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match error.kind() {
        K::InvalidSignature => "its signature does not verify".into(),
        K::InvalidAudience => format!("its audience (`aud`) is not {audience:?}"),
        K::InvalidIssuer => "its issuer does not match its key's".into(),
        K::InvalidAlgorithm => "its algorithm does not match its key".into(),
        K::MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
        other => format!("it cannot be read ({other:?})"),
    }
}

/// The `iss` of a token not yet verified (only to pick whose keys verify
/// it).
fn unverified_issuer(token: &str) -> Result<String, ProxyError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| refused("it is not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| refused("its claims are not base64url".into()))?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let iss: Iss =
        serde_json::from_slice(&bytes).map_err(|_| refused("its claims are not JSON".into()))?;
    iss.iss
        .ok_or_else(|| refused("it has no `iss` (issuer) claim".into()))
}

/// A claim as text: a string, or a number written out.
fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A claim's values: one text, or each text of an array (`groups`).
fn claim_values(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => claim_text(claims, name).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Fetches and reads a JWKS.
async fn fetch_jwks(
    client: &UpstreamClient,
    url: &Uri,
) -> Result<HashMap<String, (Arc<DecodingKey>, Algorithm)>, String> {
    let request = http::Request::get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let response = client
        .send(request, JWKS_TIMEOUTS)
        .await
        .map_err(|e| format!("{url} did not answer: {e}"))?;
    let status = response.status;
    let body = response
        .body
        .collect(MAX_JWKS_BYTES)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    read_jwks(&body)
}

/// The usable signing keys of a JWKS document: every key this gateway can
/// verify with, by `kid`. Keys it cannot use (encryption keys, symmetric
/// keys, unknown types or curves) are left out, not an error, so one odd
/// key does not lock out the rest.
pub(crate) fn read_jwks(
    body: &[u8],
) -> Result<HashMap<String, (Arc<DecodingKey>, Algorithm)>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(algorithm) = signing_algorithm(&jwk) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        keys.insert(kid, (Arc::new(key), algorithm));
    }
    Ok(keys)
}

/// The one algorithm a JWK verifies: its `alg`, or what its type and
/// curve imply. `None` for anything but an asymmetric signing key.
fn signing_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    use Algorithm::*;
    let (implied, family): (Algorithm, &[Algorithm]) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (RS256, &[RS256, RS384, RS512, PS256, PS384, PS512]),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => (ES256, &[ES256]),
            EllipticCurve::P384 => (ES384, &[ES384]),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => (EdDSA, &[EdDSA]),
            _ => return None,
        },
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let Some(stated) = &jwk.common.key_algorithm else {
        return Some(implied);
    };
    let stated = match stated {
        KeyAlgorithm::RS256 => RS256,
        KeyAlgorithm::RS384 => RS384,
        KeyAlgorithm::RS512 => RS512,
        KeyAlgorithm::PS256 => PS256,
        KeyAlgorithm::PS384 => PS384,
        KeyAlgorithm::PS512 => PS512,
        KeyAlgorithm::ES256 => ES256,
        KeyAlgorithm::ES384 => ES384,
        KeyAlgorithm::EdDSA => EdDSA,
        _ => return None,
    };
    // The stated algorithm must be one the key's type and curve can do.
    family.contains(&stated).then_some(stated)
}

#[cfg(test)]
mod tests;
