//! The HTTP side of the admin client: one `reqwest` client, bearer auth,
//! fail-over between admin URLs, and the admin API's error body turned into
//! an [`ApiFailure`].
//!
//! A call goes to the admin URL that answered last. When that node cannot
//! be reached, or answers 503 (no leader) or 504 (the cluster did not
//! confirm in time), the same request is sent to the next URL, and so on
//! for up to [`RETRY_WINDOW`] after the first failure. Every write carries an
//! `Idempotency-Key` of its own, the same on every attempt, so a write that
//! was applied before its answer was lost is applied once and answers its
//! first result.

use super::error::UsageError;
use anyhow::{bail, Context};
use rand::RngCore;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use sluice_admin::idempotency::HEADER as IDEMPOTENCY_KEY;
use sluice_admin::ErrorBody;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long one admin call may take. Membership changes wait for the
/// cluster, so this is generous; connecting is not.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call keeps being sent again (to the next admin URL) after
/// its first connection failure, 503 or 504.
pub const RETRY_WINDOW: Duration = Duration::from_secs(10);
/// Pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// `admin/v1/<rest…>` as path segments.
pub fn v1_path<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    ["admin", "v1"]
        .into_iter()
        .chain(rest.iter().copied())
        .collect()
}

/// Where an admin token is found, for the errors that need one.
pub const TOKEN_WHERE: &str = "`sluice dev` keeps one in .sluice-dev/admin-token; \
     `sluice init` writes one to the admin-token file of its --out directory; \
     `sluice tokens create` makes more";

/// An error the admin API answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// The error `type` (`validation_error`, `not_found`, ...).
    pub kind: String,
    pub message: String,
    /// The request field at fault, when the server named one.
    pub field: Option<String>,
    /// What to do about it, when the client knows (printed on a line of
    /// its own).
    pub hint: Option<String>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): ", self.kind, self.status.as_u16())?;
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiFailure {}

/// A client of a cluster's admin API, through any of its nodes.
pub struct AdminClient {
    bases: Vec<Url>,
    token: String,
    http: reqwest::Client,
    /// Index in `bases` of the node that answered last: calls start there.
    current: AtomicUsize,
    /// How long a call is sent again after its first failure.
    retry_window: Duration,
}

/// What one attempt came to.
enum Attempt {
    /// An answer to return, success or the API's error.
    Answered(anyhow::Result<(Url, Vec<u8>)>),
    /// No node answered for the cluster (connection failure, 503, 504):
    /// worth sending again elsewhere. `why` says so in a few words.
    Unavailable { why: String, err: anyhow::Error },
}

impl AdminClient {
    /// A client of the admin API at `admin_urls` (at least one; empty
    /// entries, as left by a trailing comma, are skipped), trusting the CA
    /// certificates in the PEM file `cacert` for `https://` URLs (the
    /// cluster's `ca.pem`); without it, the usual public roots.
    pub fn new<S: AsRef<str>>(
        admin_urls: &[S],
        token: String,
        cacert: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let bases = parse_bases(admin_urls)?;
        if bases.is_empty() {
            bail!("no admin URL: set SLUICE_ADMIN_URL or pass --admin-url");
        }
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = cacert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            // Every certificate of the file: during a CA rotation `ca.pem`
            // holds the old CA and the new one.
            let cas = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|cas| !cas.is_empty())
                .with_context(|| format!("{} is not a PEM CA certificate", path.display()))?;
            // The cluster's CAs alone: a node must show a certificate one
            // signed, not one any public CA did.
            builder = builder.tls_built_in_root_certs(false);
            for ca in cas {
                builder = builder.add_root_certificate(ca);
            }
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(AdminClient {
            bases,
            token,
            http,
            current: AtomicUsize::new(0),
            retry_window: RETRY_WINDOW,
        })
    }

    /// A client of the one node at `admin_url`, with this client's token
    /// and trust, making one attempt per call: for probing that node,
    /// where its silence is the answer.
    pub fn for_node(&self, admin_url: &str) -> anyhow::Result<Self> {
        let bases = parse_bases(&[admin_url])?;
        Ok(AdminClient {
            bases,
            token: self.token.clone(),
            http: self.http.clone(),
            current: AtomicUsize::new(0),
            retry_window: Duration::ZERO,
        })
    }

    /// The URL of `segments` under `base`; each segment is percent-encoded
    /// on its own, so a route name's `/` stays inside it.
    fn url(base: &Url, segments: &[&str]) -> anyhow::Result<Url> {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("admin URL {base} cannot take a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Calls the API; returns the JSON body (`Value::Null` for 204).
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<Value> {
        let body = body
            .map(|b| serde_json::to_vec(b).context("encoding the request body"))
            .transpose()?
            .map(|bytes| ("application/json", bytes));
        let (url, bytes) = self.send(method.clone(), segments, None, body).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {url}: the response is not JSON"))
    }

    /// GETs `segments` with `query` (percent-encoded for you); the body as
    /// text (e.g. CSV).
    pub async fn get_text(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let mut encoded = Self::url(&self.bases[0], segments)?;
        encoded.query_pairs_mut().extend_pairs(query);
        let (url, bytes) = self
            .send(Method::GET, segments, encoded.query(), None)
            .await?;
        String::from_utf8(bytes).with_context(|| format!("GET {url}: the response is not UTF-8"))
    }

    /// GETs `segments` with `query`; the JSON body.
    pub async fn get_query(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let text = self.get_text(segments, query).await?;
        serde_json::from_str(&text).context("the admin API answered with something not JSON")
    }

    /// Calls the API with `query` and `body` (of `content_type`), if any;
    /// returns the URL called and the raw body of a success, or the API's
    /// error. Fails over between the admin URLs as the module says.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> anyhow::Result<(Url, Vec<u8>)> {
        let key = (method != Method::GET).then(new_idempotency_key);
        let first = self.current.load(Ordering::Relaxed);
        let mut retry_until: Option<Instant> = None;
        for attempt in 0usize.. {
            let index = (first + attempt) % self.bases.len();
            let base = &self.bases[index];
            let request = Request {
                method: &method,
                segments,
                query,
                body: body.as_ref(),
                idempotency_key: key.as_deref(),
            };
            match self.send_once(base, request).await {
                Attempt::Answered(answer) => {
                    self.current.store(index, Ordering::Relaxed);
                    return answer;
                }
                Attempt::Unavailable { why, err } => {
                    if self.retry_window.is_zero() {
                        return Err(err);
                    }
                    let until =
                        *retry_until.get_or_insert_with(|| Instant::now() + self.retry_window);
                    if Instant::now() >= until {
                        return Err(err.context(format!(
                            "no admin URL answered for the cluster within {} s",
                            self.retry_window.as_secs()
                        )));
                    }
                    let next = &self.bases[(index + 1) % self.bases.len()];
                    let same_key = if key.is_some() {
                        " with the same Idempotency-Key"
                    } else {
                        ""
                    };
                    eprintln!("note: {base} {why}; trying {next}{same_key}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        unreachable!("the attempts loop only ends by returning")
    }

    /// One attempt of `request` against `base`.
    async fn send_once(&self, base: &Url, request: Request<'_>) -> Attempt {
        let method = request.method;
        let mut url = match Self::url(base, request.segments) {
            Ok(url) => url,
            Err(err) => return Attempt::Answered(Err(err)),
        };
        url.set_query(request.query);
        let mut builder = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token);
        if let Some(key) = request.idempotency_key {
            builder = builder.header(IDEMPOTENCY_KEY, key);
        }
        if let Some((content_type, body)) = request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(err) if untrusted(&err) => {
                // Every node shows a certificate of the same CA: no other
                // URL would do better.
                return Attempt::Answered(Err(anyhow::Error::new(err).context(format!(
                    "{method} {url}: the node's TLS certificate is not trusted; pass the \
                     cluster's CA certificate with --cacert FILE or SLUICE_CACERT (`sluice \
                     init` writes ca.pem in its --out directory, `sluice dev` \
                     .sluice-dev/ca.pem)"
                ))));
            }
            Err(err) => {
                let doing = format!("{method} {url}: cannot reach the admin API");
                return lost(err, "cannot be reached", doing);
            }
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => {
                let doing = format!("{method} {url}: reading the response");
                return lost(err, "did not finish its answer", doing);
            }
        };
        if status.is_success() {
            return Attempt::Answered(Ok((url, bytes.to_vec())));
        }
        if let Some(failure) = proxy_listener(base, status, &bytes) {
            return Attempt::Answered(Err(failure.into()));
        }
        let failure = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ApiFailure {
                status,
                hint: (status == StatusCode::UNAUTHORIZED).then(|| {
                    format!("the token in SLUICE_ADMIN_TOKEN (or --admin-token) is not one this cluster knows; {TOKEN_WHERE}")
                }),
                kind: body.error.kind,
                message: body.error.message,
                field: body.error.field,
            }
            .into(),
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.chars().take(500).collect();
                anyhow::anyhow!("{method} {url}: HTTP {status}: {}", text.trim())
            }
        };
        if retryable(status) {
            Attempt::Unavailable {
                why: format!("answered {}", status.as_u16()),
                err: failure.context(format!("{method} {url}")),
            }
        } else {
            Attempt::Answered(Err(failure))
        }
    }

    /// A GET whose answer is not JSON (a backup file).
    pub async fn get_bytes(&self, segments: &[&str]) -> anyhow::Result<Vec<u8>> {
        let (_, bytes) = self.send(Method::GET, segments, None, None).await?;
        Ok(bytes)
    }

    /// A POST of raw bytes (a backup file) with an optional query string
    /// (`force=true`); the answer is JSON.
    pub async fn post_bytes(
        &self,
        segments: &[&str],
        query: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let (url, bytes) = self
            .send(
                Method::POST,
                segments,
                query,
                Some(("application/octet-stream", body)),
            )
            .await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("POST {url}: the response is not JSON"))
    }

    pub async fn get(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.call(Method::GET, segments, None::<&()>).await
    }

    pub async fn post(&self, segments: &[&str], body: &impl Serialize) -> anyhow::Result<Value> {
        self.call(Method::POST, segments, Some(body)).await
    }

    /// A POST without a body (actions such as `revoke`).
    pub async fn post_empty(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.call(Method::POST, segments, None::<&()>).await
    }

    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<Value> {
        self.call(Method::DELETE, segments, None::<&()>).await
    }
}

/// One request, as every attempt sends it.
struct Request<'a> {
    method: &'a Method,
    segments: &'a [&'a str],
    query: Option<&'a str>,
    body: Option<&'a (&'static str, Vec<u8>)>,
    idempotency_key: Option<&'a str>,
}

/// The admin URLs, each checked ([`parse_base`]); empty entries, as left
/// by a trailing comma, are skipped.
pub fn parse_bases<S: AsRef<str>>(admin_urls: &[S]) -> anyhow::Result<Vec<Url>> {
    admin_urls
        .iter()
        .map(|u| u.as_ref().trim())
        .filter(|u| !u.is_empty())
        .map(parse_base)
        .collect()
}

/// An admin URL, checked: absolute `http(s)://`. A bad one is a
/// [`UsageError`] that shows the URL as it was probably meant.
fn parse_base(admin_url: &str) -> anyhow::Result<Url> {
    let refuse = || {
        let meant = if admin_url.contains("://") {
            String::new()
        } else {
            format!(" (did you mean http://{admin_url}?)")
        };
        UsageError::new(format!(
            "admin URL {admin_url:?} must start with http:// or https://{meant}"
        ))
    };
    let base = Url::parse(admin_url).map_err(|_| refuse())?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err(refuse().into());
    }
    Ok(base)
}

/// The failure to report when `base` answered as a Sluice proxy listener
/// does (a 404 with OpenAI's `unknown_url` code): the admin URL names the
/// proxy's port.
fn proxy_listener(base: &Url, status: StatusCode, body: &[u8]) -> Option<ApiFailure> {
    if status != StatusCode::NOT_FOUND {
        return None;
    }
    let body: Value = serde_json::from_slice(body).ok()?;
    if body["error"]["code"] != "unknown_url" {
        return None;
    }
    let base_text = base.as_str().trim_end_matches('/');
    let admin = dev_admin_url_for(base_text).map_or_else(
        || {
            let example = match (base.host_str(), base.port()) {
                (Some(host), Some(port)) if port > 1 => {
                    format!(
                        " (`sluice init` puts it one port below the proxy's: http://{host}:{})",
                        port - 1
                    )
                }
                _ => String::new(),
            };
            format!("the node's `[listen] admin` address{example}")
        },
        |url| format!("{url} (from .sluice-dev/dev.json)"),
    );
    Some(ApiFailure {
        status,
        kind: "not_the_admin_api".to_owned(),
        message: format!("{base_text} answered as a proxy listener, not the admin API"),
        field: None,
        hint: Some(format!(
            "this looks like a proxy listener; the admin API is on {admin}: set SLUICE_ADMIN_URL to it"
        )),
    })
}

/// The admin URL of the `sluice dev` node whose proxy is `proxy_url`,
/// when the current directory holds a dev cluster that has it.
fn dev_admin_url_for(proxy_url: &str) -> Option<String> {
    let path = std::path::Path::new(".sluice-dev").join(crate::dev::DEV_STATE_FILE);
    let state = crate::dev::DevState::read(&path).ok()??;
    let index = state
        .proxy_urls
        .iter()
        .position(|p| p.trim_end_matches('/') == proxy_url)?;
    state.admin_urls.get(index).cloned()
}

/// The attempt of a call whose connection failed: `why` for the note on
/// stderr, `doing` the context of the error if no node answers.
fn lost(err: reqwest::Error, why: &str, doing: String) -> Attempt {
    Attempt::Unavailable {
        why: format!("{why} ({})", root_cause(&err)),
        err: anyhow::Error::new(err).context(doing),
    }
}

/// Whether a transport error is the server's certificate being refused.
fn untrusted(err: &reqwest::Error) -> bool {
    let cause = root_cause(err);
    cause.contains("certificate") || cause.contains("UnknownIssuer")
}

/// The innermost cause of a transport error, in a few words.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Whether an answer says "not this node, not now": no leader (503) or no
/// confirmation in time (504).
fn retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// A fresh key for one write: 128 random bits.
fn new_idempotency_key() -> String {
    let mut random = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut random);
    format!("sluice-cli-{}", hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_one_by_one() {
        let base = parse_base("http://127.0.0.1:7001/").unwrap();
        let url =
            AdminClient::url(&base, &["admin", "v1", "routes", "meta-llama/Llama-3"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7001/admin/v1/routes/meta-llama%2FLlama-3"
        );
        let behind_proxy = parse_base("https://ops.example/sluice").unwrap();
        let url = AdminClient::url(&behind_proxy, &["admin", "v1", "keys"]).unwrap();
        assert_eq!(url.as_str(), "https://ops.example/sluice/admin/v1/keys");
        assert!(AdminClient::new(&["ftp://x"], "t".into(), None).is_err());
        assert!(AdminClient::new(&["not a url"], "t".into(), None).is_err());
        for no_scheme in ["127.0.0.1:7001", "localhost:7001"] {
            let err = AdminClient::new(&[no_scheme], "t".into(), None)
                .err()
                .expect("refused");
            let text = err.to_string();
            assert!(
                text.contains("must start with http:// or https://")
                    && text.contains(&format!("http://{no_scheme}")),
                "{text}"
            );
            assert!(err.is::<UsageError>());
        }
    }

    #[test]
    fn several_urls_are_taken_and_a_bad_one_is_named() {
        let client = AdminClient::new(
            &["http://127.0.0.1:1", "", " http://127.0.0.1:2 "],
            "t".into(),
            None,
        )
        .unwrap();
        assert_eq!(client.bases.len(), 2);
        let err = AdminClient::new(&["http://127.0.0.1:1", "nope"], "t".into(), None)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("\"nope\""), "{err}");
        assert!(AdminClient::new(&[""], "t".into(), None).is_err());
    }

    #[test]
    fn only_no_leader_and_no_confirmation_are_sent_again() {
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::GATEWAY_TIMEOUT));
        for status in [400, 401, 404, 409, 422, 500, 502] {
            assert!(
                !retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_ne!(a, b);
        assert!(sluice_core::idempotency::check_key(&a).is_ok(), "{a}");
    }

    #[test]
    fn failures_print_type_status_field_and_message() {
        let failure = ApiFailure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "validation_error".into(),
            message: "must be between 1 and 10000".into(),
            field: Some("deployments[0].weight".into()),
            hint: None,
        };
        assert_eq!(
            failure.to_string(),
            "validation_error (422): field `deployments[0].weight`: must be between 1 and 10000"
        );
    }
}
