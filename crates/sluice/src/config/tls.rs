//! Checks of the `[tls]` PEM files, so `sluice serve --check` catches a wrong
//! or expired certificate before the QUIC transport refuses every peer.

use super::check::Problems;
use std::path::Path;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;

/// The three files as read from disk.
pub(super) struct TlsPems<'a> {
    pub ca_cert: (&'a Path, &'a [u8]),
    pub node_cert: (&'a Path, &'a [u8]),
    pub node_key: (&'a Path, &'a [u8]),
}

/// Records a problem (on the right `tls.*` field) unless: the CA file is a CA
/// certificate, the node certificate is signed by it, both are within their
/// validity period, and the node key is the node certificate's key.
pub(super) fn check(problems: &mut Problems, files: TlsPems<'_>) {
    let ca_pem = parse_pem(problems, "tls.ca_cert", files.ca_cert);
    let ca = ca_pem
        .as_ref()
        .and_then(|pem| parse_cert(problems, "tls.ca_cert", files.ca_cert.0, pem));
    if let Some(ca) = &ca {
        if !ca.is_ca() {
            problems.push(
                "tls.ca_cert",
                format!("{} is not a CA certificate", files.ca_cert.0.display()),
            );
        }
    }
    let node_pem = parse_pem(problems, "tls.node_cert", files.node_cert);
    let node = node_pem
        .as_ref()
        .and_then(|pem| parse_cert(problems, "tls.node_cert", files.node_cert.0, pem));
    if let (Some(ca), Some(node)) = (&ca, &node) {
        if node.verify_signature(Some(ca.public_key())).is_err() {
            problems.push(
                "tls.node_cert",
                format!(
                    "{} is not signed by the CA in {}",
                    files.node_cert.0.display(),
                    files.ca_cert.0.display()
                ),
            );
        }
    }

    let key_text = match std::str::from_utf8(files.node_key.1) {
        Ok(text) => text,
        Err(_) => {
            problems.push(
                "tls.node_key",
                format!("{} is not a PEM file", files.node_key.0.display()),
            );
            return;
        }
    };
    match rcgen::KeyPair::from_pem(key_text) {
        Ok(key) => {
            if let Some(node) = &node {
                if node.public_key().raw != key.public_key_der().as_slice() {
                    problems.push(
                        "tls.node_key",
                        format!(
                            "{} is not the key of the certificate in {}",
                            files.node_key.0.display(),
                            files.node_cert.0.display()
                        ),
                    );
                }
            }
        }
        Err(err) => problems.push(
            "tls.node_key",
            format!(
                "{} is not a PEM private key: {err}",
                files.node_key.0.display()
            ),
        ),
    }
}

fn parse_pem(problems: &mut Problems, field: &str, (path, bytes): (&Path, &[u8])) -> Option<Pem> {
    match x509_parser::pem::parse_x509_pem(bytes) {
        Ok((_, pem)) if pem.label == "CERTIFICATE" => Some(pem),
        Ok((_, pem)) => {
            problems.push(
                field,
                format!(
                    "{} holds a PEM `{}`, expected a CERTIFICATE",
                    path.display(),
                    pem.label
                ),
            );
            None
        }
        Err(err) => {
            problems.push(
                field,
                format!("{} is not a PEM certificate: {err}", path.display()),
            );
            None
        }
    }
}

fn parse_cert<'p>(
    problems: &mut Problems,
    field: &str,
    path: &Path,
    pem: &'p Pem,
) -> Option<X509Certificate<'p>> {
    match pem.parse_x509() {
        Ok(cert) => {
            if !cert.validity().is_valid() {
                let v = cert.validity();
                problems.push(
                    field,
                    format!(
                        "{} is not valid now (valid from {} to {})",
                        path.display(),
                        v.not_before,
                        v.not_after
                    ),
                );
            }
            Some(cert)
        }
        Err(err) => {
            problems.push(
                field,
                format!("{} is not an X.509 certificate: {err}", path.display()),
            );
            None
        }
    }
}

/// The node and CA certificates of `files` with their expiry, for
/// `/admin/v1/node` (and so `sluice cluster doctor`). A file that cannot be
/// read or parsed is left out: `serve` checked them all before it started.
pub fn certificate_expiries(
    files: &sluice_raft::tls::TlsFiles,
) -> Vec<sluice_admin::node::CertificateExpiry> {
    [("node", &files.node_cert), ("ca", &files.ca_cert)]
        .into_iter()
        .filter_map(|(role, path)| {
            let bytes = std::fs::read(path).ok()?;
            let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).ok()?;
            let cert = pem.parse_x509().ok()?;
            let not_after_ms = u64::try_from(cert.validity().not_after.timestamp())
                .ok()?
                .saturating_mul(1000);
            Some(sluice_admin::node::CertificateExpiry {
                role: role.to_string(),
                subject: cert.subject().to_string(),
                not_after_ms,
                sha256: hex::encode(sluice_core::secret::sha256(&pem.contents)),
            })
        })
        .collect()
}
