//! The admin API against a real single-node cluster: each test starts one
//! `ClusterNode` on 127.0.0.1 in a temporary directory and drives the router
//! with `tower::ServiceExt::oneshot`.

use crate::{router, AdminContext};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use sluice_core::{secret::hash_secret, DataKey};
use sluice_raft::tls::TlsFiles;
use sluice_raft::{Bootstrap, ClusterNode, Member, NodeOptions, RaftTiming};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

mod audit;
mod backup;
mod dashboard;
mod errors;
mod idempotency;
mod meta;
mod resources;
mod roles;
mod usage;

pub(crate) const TOKEN: &str = "sluice-admin-bootstrap-for-tests";

/// One running single-node cluster and the admin router over it.
pub(crate) struct Fixture {
    node: Arc<ClusterNode>,
    router: Router,
    _dir: tempfile::TempDir,
}

/// Writes a test CA and a node certificate signed by it (SANs
/// `node-1.sluice` and `cluster.sluice`, server and client auth).
fn write_tls(dir: &std::path::Path) -> TlsFiles {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sluice test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");

    let node_key = KeyPair::generate().expect("node key");
    let mut node = CertificateParams::new(vec![
        "node-1.sluice".to_string(),
        "cluster.sluice".to_string(),
    ])
    .expect("node params");
    node.distinguished_name.push(DnType::CommonName, "node-1");
    node.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let node_cert = node
        .signed_by(&node_key, &ca_cert, &ca_key)
        .expect("sign node cert");

    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        node_cert: dir.join("node.pem"),
        node_key: dir.join("node.key"),
    };
    std::fs::write(&files.ca_cert, ca_cert.pem()).expect("write CA");
    std::fs::write(&files.node_cert, node_cert.pem()).expect("write cert");
    std::fs::write(&files.node_key, node_key.serialize_pem()).expect("write key");
    files
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = write_tls(dir.path());
        // The advertised address must be the bound one, so draw a free port
        // from the OS rather than fix one.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free UDP port")
            .port();
        let listen_raft = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let member = Member {
            raft_addr: listen_raft.to_string(),
            admin_url: "http://127.0.0.1:1".to_string(),
            proxy_url: "http://127.0.0.1:1".to_string(),
        };
        let options = NodeOptions {
            cluster_id: "admin-tests".to_string(),
            node_id: 1,
            data_dir: dir.path().join("node-1"),
            listen_raft,
            advertise: member.clone(),
            tls,
            bootstrap: Bootstrap::InitialMembers(BTreeMap::from([(1, member)])),
            timing: RaftTiming {
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 150,
                election_timeout_max_ms: 300,
                ..RaftTiming::default()
            },
        };
        let node = ClusterNode::start(options).await.expect("start node");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !node.readiness().ready {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ctx = AdminContext::new(
            node.clone(),
            vec![hash_secret(TOKEN)],
            DataKey::from_bytes([42; 32]),
        );
        Fixture {
            node,
            router: router(ctx),
            _dir: dir,
        }
    }

    /// Sends a request with the bootstrap token.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, json) = self
            .send(method, path, Some(TOKEN), body.map(|b| b.to_string()))
            .await;
        (status, json)
    }

    /// Sends `body` as raw bytes with the bootstrap token; answers the raw
    /// response body.
    async fn send_bytes(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(body))
            .expect("request");
        let (status, _, bytes) = self.respond(request).await;
        (status, bytes)
    }

    async fn respond(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, headers, bytes.to_vec())
    }

    /// Sends a request; the body as bytes.
    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body)),
            None => request.body(Body::empty()),
        }
        .expect("request");
        self.respond(request).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, bytes) = self.send_raw(method, path, token, body).await;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("non-JSON body ({e}): {bytes:?}"))
        };
        (status, headers, json)
    }

    async fn stop(self) {
        self.node.shutdown().await;
    }
}

pub(crate) fn assert_error(body: &Value, kind: &str, field: Option<&str>) {
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(field) => assert_eq!(body["error"]["field"], field, "{body}"),
        None => assert!(body["error"]["field"].is_null(), "{body}"),
    }
}

pub(crate) async fn create_provider(f: &Fixture, name: &str) {
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/providers",
            Some(json!({"name": name, "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-upstream-secret"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Route `name` on a new provider `provider` (model `m`).
pub(crate) async fn create_route(f: &Fixture, name: &str, provider: &str) {
    create_provider(f, provider).await;
    let (status, body) = f
        .call(
            Method::POST,
            "/admin/v1/routes",
            Some(
                json!({"name": name, "deployments": [{"provider": provider, "model": "m", "weight": 1}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
