//! TLS for the QUIC transport: every connection is mutual TLS with
//! certificates from the cluster CA.
//!
//! A node's certificate carries the DNS names `node-<id>.sluice` (dialled when
//! a peer calls a known node, so the peer proves which node it is) and
//! `cluster.sluice` (dialled when joining through a seed whose id is not yet
//! known). A client certificate must chain to the cluster CA too, so a node
//! with a certificate from another CA cannot join the conversation at all.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol id of Sluice's peer protocol.
pub const ALPN: &[u8] = b"sluice-raft/1";
/// The name every node certificate carries, for dialling an unknown node.
pub const CLUSTER_SERVER_NAME: &str = "cluster.sluice";

/// The server name of node `id`'s certificate.
pub fn node_server_name(id: u64) -> String {
    format!("node-{id}.sluice")
}

/// PEM files of the node's identity and the cluster CA.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Loaded configurations for both directions of a QUIC connection, and the
/// endpoint's own.
pub struct TlsConfigs {
    pub server: quinn::ServerConfig,
    pub client: quinn::ClientConfig,
    /// Carries a stateless-reset key derived from the node's private key, so
    /// it is the same after a restart: a peer still holding a connection to
    /// this node's previous process gets a reset it recognises at its first
    /// packet, instead of waiting out the idle timeout.
    pub endpoint: quinn::EndpointConfig,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate found"));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads the PEM files and builds the QUIC server and client configs.
    pub fn load(&self) -> Result<TlsConfigs, TlsError> {
        let ca = load_certs(&self.ca_cert)?;
        let chain = load_certs(&self.node_cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.node_key)
            .map_err(|e| file_err(&self.node_key, e))?;
        let reset_secret = ring::digest::digest(
            &ring::digest::SHA256,
            &[
                b"sluice quic stateless reset v1\0".as_slice(),
                key.secret_der(),
            ]
            .concat(),
        );
        let mut endpoint = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            reset_secret.as_ref(),
        )));
        // Connection ids must validate after a restart too, or the new process
        // drops the old connection's packets without sending the reset.
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&reset_secret.as_ref()[..8]);
        let cid_key = u64::from_le_bytes(cid_key);
        endpoint.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });

        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(|e| {
                file_err(&self.ca_cert, format!("not a usable CA certificate: {e}"))
            })?;
        }
        let roots = Arc::new(roots);

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                file_err(
                    &self.node_key,
                    format!("does not match the node certificate: {e}"),
                )
            })?;
        server.alpn_protocols = vec![ALPN.to_vec()];

        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                file_err(
                    &self.node_key,
                    format!("does not match the node certificate: {e}"),
                )
            })?;
        client.alpn_protocols = vec![ALPN.to_vec()];

        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| TlsError::Config(format!("QUIC server config: {e}")))?;
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| TlsError::Config(format!("QUIC client config: {e}")))?;

        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(std::time::Duration::from_secs(1)))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(std::time::Duration::from_secs(5))
                    .expect("5 s is a valid idle timeout"),
            ));
        let transport = Arc::new(transport);

        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(transport);
        Ok(TlsConfigs {
            server,
            client,
            endpoint,
        })
    }
}
