//! In-process cluster harness: real nodes (sled, QUIC, mutual TLS) in one
//! process, on loopback ports picked at run time.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use sluice_core::{Applied, ApplyError, Command, Provider, ProviderKind, Timeouts};
use sluice_raft::tls::TlsFiles;
use sluice_raft::{Bootstrap, ClusterError, ClusterNode, Member, NodeOptions, RaftTiming};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem_path: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_path, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            pem_path,
        }
    }

    /// A node certificate as `sluice init` makes them.
    pub fn issue(&self, dir: &Path, id: u64) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![
            format!("node-{id}.sluice"),
            "cluster.sluice".to_string(),
        ])
        .unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let node_cert = dir.join(format!("node-{id}.pem"));
        let node_key = dir.join(format!("node-{id}-key.pem"));
        std::fs::write(&node_cert, cert.pem()).unwrap();
        std::fs::write(&node_key, key.serialize_pem()).unwrap();
        TlsFiles {
            ca_cert: self.pem_path.clone(),
            node_cert,
            node_key,
        }
    }
}

pub fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn fast_timing() -> RaftTiming {
    RaftTiming {
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 400,
        election_timeout_max_ms: 800,
        rpc_timeout_ms: 1000,
        snapshot_every_logs: 20,
        logs_to_keep: 0,
    }
}

pub fn member(addr: SocketAddr) -> Member {
    Member {
        raft_addr: addr.to_string(),
        admin_url: format!("http://admin.invalid/{}", addr.port()),
        proxy_url: format!("http://proxy.invalid/{}", addr.port()),
    }
}

pub struct Plan {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub addrs: BTreeMap<u64, SocketAddr>,
}

impl Plan {
    pub fn new(ids: &[u64]) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "ca");
        let addrs = ids.iter().map(|id| (*id, free_udp())).collect();
        Plan { dir, ca, addrs }
    }

    pub fn initial(&self) -> BTreeMap<u64, Member> {
        self.addrs.iter().map(|(id, a)| (*id, member(*a))).collect()
    }

    pub fn options(&self, id: u64, bootstrap: Bootstrap) -> NodeOptions {
        let addr = self.addrs[&id];
        NodeOptions {
            cluster_id: "test-cluster".into(),
            node_id: id,
            data_dir: self.dir.path().join(format!("node-{id}")),
            listen_raft: addr,
            advertise: member(addr),
            tls: self.ca.issue(self.dir.path(), id),
            bootstrap,
            timing: fast_timing(),
        }
    }

    /// Starts node `id` (again, after a shutdown: a stopped node's QUIC port
    /// is released only once its connections have drained).
    pub async fn start(&self, id: u64) -> Arc<ClusterNode> {
        let addr = self.addrs[&id];
        eventually(
            Duration::from_secs(10),
            "the node's port to be free",
            || async move { UdpSocket::bind(addr).is_ok() },
        )
        .await;
        ClusterNode::start(self.options(id, Bootstrap::InitialMembers(self.initial())))
            .await
            .unwrap()
    }

    /// Starts every planned node; returns them (in id order) and the id of
    /// the leader they agree on.
    pub async fn start_all(&self) -> (Vec<Arc<ClusterNode>>, u64) {
        let mut nodes = Vec::new();
        for &id in self.addrs.keys() {
            nodes.push(self.start(id).await);
        }
        let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
        (nodes, leader)
    }
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn leader_of(nodes: &[&Arc<ClusterNode>]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for n in nodes {
            let s = n.status().await;
            if s.leader_id == Some(s.node_id) {
                return s.node_id;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for a leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `command` (a `CreateProvider`) through `node` for a test that is
/// not about ambiguous writes: a freshly formed cluster may still change
/// leaders under a loaded machine, and a write caught by that answers
/// "may or may not have been applied". Retries within 15 s; a retry that
/// finds the provider already there means the earlier attempt applied.
pub async fn write_settled(node: &ClusterNode, command: Command) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match node.write(command.clone()).await {
            Ok(Applied::Provider(_)) => return,
            Err(ClusterError::Rejected(ApplyError::Conflict { .. })) => return,
            Err(e @ (ClusterError::Timeout(_) | ClusterError::Unavailable(_))) => {
                assert!(Instant::now() < deadline, "write never settled: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected answer to a provider write: {other:?}"),
        }
    }
}

/// A command creating an (unreachable) OpenAI provider named `name`.
pub fn provider(name: &str) -> Command {
    Command::CreateProvider(Provider {
        name: name.into(),
        kind: ProviderKind::OpenAi,
        base_url: "http://127.0.0.1:1/v1".into(),
        api_key: None,
        headers: Default::default(),
        secret_headers: Default::default(),
        timeouts: Timeouts::default(),
        azure: None,
        bedrock: None,
        created_at_ms: 0,
        updated_at_ms: 0,
    })
}
