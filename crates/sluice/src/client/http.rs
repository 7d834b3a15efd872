//! The HTTP side of the admin client: one `reqwest` client, bearer auth, and
//! the admin API's error body turned into an [`ApiFailure`].

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use sluice_admin::ErrorBody;
use std::time::Duration;

/// How long one admin call may take. Membership changes wait for the
/// cluster, so this is generous; connecting is not.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `admin/v1/<rest…>` as path segments.
pub fn v1_path<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    ["admin", "v1"]
        .into_iter()
        .chain(rest.iter().copied())
        .collect()
}

/// An error the admin API answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// The error `type` (`validation_error`, `not_found`, ...).
    pub kind: String,
    pub message: String,
    /// The request field at fault, when the server named one.
    pub field: Option<String>,
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

/// A connection to one node's admin API.
pub struct AdminClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(admin_url: &str, token: String) -> anyhow::Result<Self> {
        let base = Url::parse(admin_url)
            .with_context(|| format!("admin URL {admin_url:?} is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("admin URL {admin_url:?} must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(AdminClient { base, token, http })
    }

    /// The URL of `segments` under the base URL; each segment is
    /// percent-encoded on its own, so a route name's `/` stays inside it.
    fn url(&self, segments: &[&str]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("admin URL {} cannot take a path", self.base))?
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
        let mut encoded = self.url(segments)?;
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
    /// error.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> anyhow::Result<(Url, Vec<u8>)> {
        let mut url = self.url(segments)?;
        url.set_query(query);
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token);
        if let Some((content_type, body)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}: cannot reach the admin API"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{method} {url}: reading the response"))?;
        if status.is_success() {
            return Ok((url, bytes.to_vec()));
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ApiFailure {
                status,
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
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_one_by_one() {
        let client = AdminClient::new("http://127.0.0.1:9090/", "t".into()).unwrap();
        let url = client
            .url(&["admin", "v1", "routes", "meta-llama/Llama-3"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9090/admin/v1/routes/meta-llama%2FLlama-3"
        );
        let behind_proxy = AdminClient::new("https://ops.example/sluice", "t".into()).unwrap();
        let url = behind_proxy.url(&["admin", "v1", "keys"]).unwrap();
        assert_eq!(url.as_str(), "https://ops.example/sluice/admin/v1/keys");
        assert!(AdminClient::new("ftp://x", "t".into()).is_err());
        assert!(AdminClient::new("not a url", "t".into()).is_err());
    }

    #[test]
    fn failures_print_type_status_field_and_message() {
        let failure = ApiFailure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "validation_error".into(),
            message: "must be between 1 and 10000".into(),
            field: Some("deployments[0].weight".into()),
        };
        assert_eq!(
            failure.to_string(),
            "validation_error (422): field `deployments[0].weight`: must be between 1 and 10000"
        );
    }
}
