//! The upstream client over TLS: a server signed by a private CA is trusted
//! only with that CA as `extra_ca_pem`, and ALPN picks HTTP/2 on one pooled
//! connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sluice_providers::{ClientOptions, Timeouts, UpstreamClient, UpstreamError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    first_byte: Duration::from_secs(5),
    total: Duration::from_secs(8),
};

struct TlsServer {
    addr: SocketAddr,
    ca_pem: String,
    task: JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTPS server for `localhost`, signed by a fresh CA, answering every
/// request with the HTTP version it was received over.
async fn tls_server() -> Result<TlsServer, Box<dyn std::error::Error>> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&leaf_key, &ca, &ca_key)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = format!("{:?}", req.version());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(TlsServer {
        addr,
        ca_pem: ca.pem(),
        task,
    })
}

fn get(server: &TlsServer) -> Request<Bytes> {
    Request::builder()
        .uri(format!(
            "https://localhost:{}/v1/models",
            server.addr.port()
        ))
        .body(Bytes::new())
        .unwrap()
}

#[tokio::test]
async fn extra_ca_is_trusted_and_alpn_picks_http2() -> TestResult {
    tokio::time::timeout(Duration::from_secs(10), async {
        let server = tls_server().await?;
        let client = UpstreamClient::new(ClientOptions {
            extra_ca_pem: Some(server.ca_pem.clone().into_bytes()),
            ..ClientOptions::default()
        })?;
        for _ in 0..2 {
            let response = client.send(get(&server), TIMEOUTS).await?;
            assert_eq!(response.status, StatusCode::OK);
            assert_eq!(response.version, Version::HTTP_2);
            let body = response.body.collect(1024).await?;
            assert_eq!(&body[..], b"HTTP/2.0");
        }
        assert_eq!(client.connections_opened(), 1);
        Ok(())
    })
    .await?
}

#[tokio::test]
async fn an_unknown_ca_is_a_connect_error() -> TestResult {
    tokio::time::timeout(Duration::from_secs(10), async {
        let server = tls_server().await?;
        let client = UpstreamClient::new(ClientOptions::default())?;
        let err = client.send(get(&server), TIMEOUTS).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Connect { .. }), "{err:?}");
        assert!(err.retry_safe());
        assert_eq!(client.connections_opened(), 0);
        Ok(())
    })
    .await?
}

#[tokio::test]
async fn a_stalled_handshake_is_a_connect_timeout() -> TestResult {
    tokio::time::timeout(Duration::from_secs(10), async {
        // Accepts TCP and never answers the TLS ClientHello.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let client = UpstreamClient::new(ClientOptions::default())?;
        let request = Request::builder()
            .uri(format!("https://localhost:{port}/v1/models"))
            .body(Bytes::new())?;
        let timeouts = Timeouts {
            connect: Duration::from_millis(200),
            ..TIMEOUTS
        };
        let started = tokio::time::Instant::now();
        let err = client.send(request, timeouts).await.unwrap_err();
        hold.abort();
        assert!(
            matches!(
                err,
                UpstreamError::Connect {
                    timed_out: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.retry_safe() && err.is_timeout());
        // The per-call connect timeout, not the 5 s first-byte one.
        assert!(started.elapsed() < Duration::from_secs(4));
        Ok(())
    })
    .await?
}
