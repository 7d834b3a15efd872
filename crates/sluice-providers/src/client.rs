//! The pooled upstream HTTP client: HTTP/1.1 and HTTP/2 (chosen by ALPN) over
//! rustls with the webpki roots plus an optional extra CA per provider, with
//! connect, first-byte and total timeouts.
//!
//! One [`UpstreamClient`] per provider (its extra CA is part of the TLS
//! configuration); it is cheap to clone and shares one connection pool.
//! [`UpstreamClient::send`] returns as soon as the response head has arrived;
//! the body is an [`UpstreamBody`], a stream of `Bytes` frames that is never
//! buffered whole and yields [`UpstreamError::TotalTimeout`] once the total
//! deadline passes.
//!
//! Nothing here logs or formats header values: they carry API keys. The
//! `Debug` output of [`UpstreamResponse`] lists header names only.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How one provider's client is built.
#[derive(Clone)]
pub struct ClientOptions {
    /// PEM certificates trusted in addition to the webpki roots (a private
    /// CA in front of a self-hosted model server).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Connect timeout (TCP and TLS) used when a connection is opened
    /// outside [`UpstreamClient::send`]'s [`Timeouts::connect`].
    pub default_connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            extra_ca_pem: None,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 512,
            default_connect_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(Vec::len))
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("default_connect_timeout", &self.default_connect_timeout)
            .finish()
    }
}

/// The deadlines of one upstream call, all measured from the call's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a new connection: TCP connect plus the TLS handshake. A
    /// pooled connection skips it.
    pub connect: Duration,
    /// Until the response head (status and headers) has arrived.
    pub first_byte: Duration,
    /// Until the last byte of the body has arrived.
    pub total: Duration,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("extra CA PEM: {0}")]
    InvalidCaPem(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why an upstream call failed. Never carries header values.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be opened (refused, DNS, TLS handshake, connect
    /// timeout). The request never left: always safe to retry.
    #[error("connect to upstream failed: {message}")]
    Connect { message: String, timed_out: bool },
    /// The response head did not arrive in time. Nothing was received.
    #[error("upstream sent no response within {0:?}")]
    FirstByteTimeout(Duration),
    /// The total deadline passed, before the head (`received == false`) or
    /// during the body.
    #[error("upstream response not finished within {limit:?}")]
    TotalTimeout { limit: Duration, received: bool },
    /// The connection failed after it was open.
    #[error("upstream I/O error: {message}")]
    Io { message: String, received: bool },
    /// The upstream broke HTTP (bad framing, a body cut short, a reset
    /// stream).
    #[error("upstream protocol error: {message}")]
    Protocol { message: String, received: bool },
    /// The request could not be sent at all (a bad URI, an unsupported
    /// scheme). Retrying will not help.
    #[error("invalid upstream request: {0}")]
    InvalidRequest(String),
    /// [`UpstreamBody::collect`] hit its size limit.
    #[error("upstream body larger than {0} bytes")]
    BodyTooLarge(usize),
}

impl UpstreamError {
    /// Whether the call may be retried (on this or another deployment)
    /// without risking a duplicate answer reaching anyone: connect errors
    /// always; after the request was sent, only while nothing was received.
    pub fn retry_safe(&self) -> bool {
        match self {
            UpstreamError::Connect { .. } | UpstreamError::FirstByteTimeout(_) => true,
            UpstreamError::TotalTimeout { received, .. }
            | UpstreamError::Io { received, .. }
            | UpstreamError::Protocol { received, .. } => !received,
            UpstreamError::InvalidRequest(_) | UpstreamError::BodyTooLarge(_) => false,
        }
    }

    /// Whether any part of the response had arrived when the call failed.
    pub fn received(&self) -> bool {
        match self {
            UpstreamError::TotalTimeout { received, .. }
            | UpstreamError::Io { received, .. }
            | UpstreamError::Protocol { received, .. } => *received,
            UpstreamError::BodyTooLarge(_) => true,
            _ => false,
        }
    }

    /// Whether this is one of the timeouts.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::FirstByteTimeout(_)
                | UpstreamError::TotalTimeout { .. }
                | UpstreamError::Connect {
                    timed_out: true,
                    ..
                }
        )
    }
}

/// The response head and its streaming body.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

impl fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header names only: values may carry keys.
        let names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
        f.debug_struct("UpstreamResponse")
            .field("status", &self.status)
            .field("version", &self.version)
            .field("header_names", &names)
            .finish_non_exhaustive()
    }
}

tokio::task_local! {
    /// The connect timeout of the `send` being polled. The pooled client
    /// starts a new connection from within the caller's task, so the
    /// connector reads it there; a connection opened elsewhere falls back to
    /// [`ClientOptions::default_connect_timeout`].
    static CONNECT_TIMEOUT: Duration;
}

/// The connector: TCP + TLS (or plain TCP for `http://`) under a connect
/// timeout, counting the connections it opens.
#[derive(Clone)]
pub struct TimedConnector {
    inner: HttpsConnector<HttpConnector>,
    default_timeout: Duration,
    opened: Arc<AtomicU64>,
}

type ConnectFuture = Pin<
    Box<
        dyn Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, ConnectError>>
            + Send
            + 'static,
    >,
>;

/// A connection attempt failed (kept distinct so `send` can tell a connect
/// timeout from a refused connection).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    message: String,
    timed_out: bool,
}

impl tower_service::Service<http::Uri> for TimedConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = ConnectError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::poll_ready(&mut self.inner, cx).map_err(|e| ConnectError {
            message: chain(&*e),
            timed_out: false,
        })
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let limit = CONNECT_TIMEOUT
            .try_with(|d| *d)
            .unwrap_or(self.default_timeout);
        let fut = tower_service::Service::call(&mut self.inner, uri);
        let opened = Arc::clone(&self.opened);
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(Ok(stream)) => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    Ok(stream)
                }
                Ok(Err(e)) => Err(ConnectError {
                    message: chain(&*e),
                    timed_out: false,
                }),
                Err(_) => Err(ConnectError {
                    message: format!("timed out after {limit:?}"),
                    timed_out: true,
                }),
            }
        })
    }
}

/// A pooled upstream client for one provider. Clones share the pool.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<TimedConnector, Full<Bytes>>,
    opened: Arc<AtomicU64>,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("connections_opened", &self.connections_opened())
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// Builds the client. Does not touch the network; the pool's idle timer
    /// needs a tokio runtime when requests are sent.
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(pem) = &options.extra_ca_pem {
            let mut added = 0usize;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientBuildError::InvalidCaPem(e.to_string()))?;
                roots.add(cert)?;
                added += 1;
            }
            if added == 0 {
                return Err(ClientBuildError::InvalidCaPem(
                    "no CERTIFICATE block found".into(),
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let opened = Arc::new(AtomicU64::new(0));
        let connector = TimedConnector {
            inner: https,
            default_timeout: options.default_connect_timeout,
            opened: Arc::clone(&opened),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.pool_max_idle_per_host)
            .build(connector);
        Ok(Self { client, opened })
    }

    /// Connections opened so far (pooled reuse does not count).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends `request` and waits for the response head. The body is
    /// streamed by the returned [`UpstreamBody`] under the same total
    /// deadline.
    pub async fn send(
        &self,
        request: Request<Bytes>,
        timeouts: Timeouts,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let uri = request.uri();
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(UpstreamError::InvalidRequest(
                "the URI must be absolute, http:// or https://".into(),
            ));
        }
        let start = Instant::now();
        let total_deadline = start + timeouts.total;
        let head_deadline = (start + timeouts.first_byte).min(total_deadline);
        let request = request.map(Full::new);
        let call = CONNECT_TIMEOUT.scope(timeouts.connect, self.client.request(request));
        let response = match tokio::time::timeout_at(head_deadline, call).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(classify_client_error(&e)),
            Err(_) if head_deadline >= total_deadline => {
                return Err(UpstreamError::TotalTimeout {
                    limit: timeouts.total,
                    received: false,
                })
            }
            Err(_) => return Err(UpstreamError::FirstByteTimeout(timeouts.first_byte)),
        };
        let (parts, body) = response.into_parts();
        Ok(UpstreamResponse {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: UpstreamBody {
                inner: Some(body),
                deadline: Box::pin(tokio::time::sleep_until(total_deadline)),
                limit: timeouts.total,
            },
        })
    }
}

fn classify_client_error(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return UpstreamError::Connect {
                message: c.message.clone(),
                timed_out: c.timed_out,
            };
        }
        source = s.source();
    }
    if e.is_connect() {
        return UpstreamError::Connect {
            message: chain(e),
            timed_out: false,
        };
    }
    let message = chain(e);
    if has_io_source(e) {
        UpstreamError::Io {
            message,
            received: false,
        }
    } else {
        UpstreamError::Protocol {
            message,
            received: false,
        }
    }
}

fn classify_body_error(e: &hyper::Error) -> UpstreamError {
    let message = chain(e);
    if has_io_source(e) {
        UpstreamError::Io {
            message,
            received: true,
        }
    } else {
        UpstreamError::Protocol {
            message,
            received: true,
        }
    }
}

fn has_io_source(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its sources, `: `-joined. hyper's and rustls's errors never
/// include header values.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A response body as a stream of data frames (trailers are skipped), ended
/// by an error if the total deadline passes first. After an error the stream
/// ends.
pub struct UpstreamBody {
    inner: Option<Incoming>,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("finished", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// Reads the whole body (for non-streaming responses), refusing more
    /// than `max` bytes.
    pub async fn collect(mut self, max: usize) -> Result<Bytes, UpstreamError> {
        use futures::StreamExt;
        // A body that arrives in one frame (most small answers) is that
        // frame, not a copy of it.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        let mut len = 0;
        while let Some(frame) = self.next().await {
            let frame = frame?;
            len += frame.len();
            if len > max {
                return Err(UpstreamError::BodyTooLarge(max));
            }
            match first.take() {
                None if buf.is_empty() => first = Some(frame),
                earlier => {
                    if let Some(earlier) = earlier {
                        buf.extend_from_slice(&earlier);
                    }
                    buf.extend_from_slice(&frame);
                }
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    }
}

impl Stream for UpstreamBody {
    type Item = Result<Bytes, UpstreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    this.inner = None;
                    return Poll::Ready(Some(Err(classify_body_error(&e))));
                }
                Poll::Ready(None) => {
                    this.inner = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        // Dropping `Incoming` abandons the connection.
                        this.inner = None;
                        return Poll::Ready(Some(Err(UpstreamError::TotalTimeout {
                            limit: this.limit,
                            received: true,
                        })));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_safety_follows_what_was_received() {
        assert!(UpstreamError::Connect {
            message: "refused".into(),
            timed_out: false
        }
        .retry_safe());
        assert!(UpstreamError::FirstByteTimeout(Duration::from_secs(1)).retry_safe());
        assert!(!UpstreamError::TotalTimeout {
            limit: Duration::from_secs(1),
            received: true
        }
        .retry_safe());
        assert!(UpstreamError::Io {
            message: "reset".into(),
            received: false
        }
        .retry_safe());
        assert!(!UpstreamError::Protocol {
            message: "cut".into(),
            received: true
        }
        .retry_safe());
    }

    #[tokio::test]
    async fn a_relative_or_unsupported_uri_is_refused_before_sending() {
        let client = UpstreamClient::new(ClientOptions::default()).unwrap();
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
            total: Duration::from_secs(1),
        };
        for uri in ["/v1/models", "ftp://example.com/x"] {
            let request = Request::builder().uri(uri).body(Bytes::new()).unwrap();
            let err = client.send(request, timeouts).await.unwrap_err();
            assert!(matches!(err, UpstreamError::InvalidRequest(_)), "{err:?}");
            assert!(!err.retry_safe());
        }
        assert_eq!(client.connections_opened(), 0);
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let err = UpstreamClient::new(ClientOptions {
            extra_ca_pem: Some(b"not a pem".to_vec()),
            ..ClientOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, ClientBuildError::InvalidCaPem(_)));
    }
}
