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

/// Records a problem (on the right `tls.*` field) unless: the CA file holds
/// one or more CA certificates (several during a CA rotation: all are
/// trusted), the node certificate is signed by one of them, all are within
/// their validity period, and the node key is the node certificate's key.
pub(super) fn check(problems: &mut Problems, files: TlsPems<'_>) {
    let ca_pems = parse_ca_pems(problems, files.ca_cert);
    let cas: Vec<X509Certificate<'_>> = ca_pems
        .iter()
        .filter_map(|pem| parse_cert(problems, "tls.ca_cert", files.ca_cert.0, pem))
        .collect();
    for ca in &cas {
        if !ca.is_ca() {
            let which = if ca_pems.len() > 1 {
                format!(" ({})", ca.subject())
            } else {
                String::new()
            };
            problems.push(
                "tls.ca_cert",
                format!(
                    "{}{which} is not a CA certificate",
                    files.ca_cert.0.display()
                ),
            );
        }
    }
    let node_pem = parse_pem(problems, "tls.node_cert", files.node_cert);
    let node = node_pem
        .as_ref()
        .and_then(|pem| parse_cert(problems, "tls.node_cert", files.node_cert.0, pem));
    if let Some(node) = &node {
        let signed = cas
            .iter()
            .any(|ca| node.verify_signature(Some(ca.public_key())).is_ok());
        if !cas.is_empty() && !signed {
            let which = if cas.len() > 1 { "any CA" } else { "the CA" };
            problems.push(
                "tls.node_cert",
                format!(
                    "{} is not signed by {which} in {}",
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

/// Every certificate of the CA file, at least one.
fn parse_ca_pems(problems: &mut Problems, (path, bytes): (&Path, &[u8])) -> Vec<Pem> {
    let field = "tls.ca_cert";
    let mut pems = Vec::new();
    for pem in Pem::iter_from_buffer(bytes) {
        match pem {
            Ok(pem) if pem.label == "CERTIFICATE" => pems.push(pem),
            Ok(pem) => problems.push(
                field,
                format!(
                    "{} holds a PEM `{}`, expected only CERTIFICATEs",
                    path.display(),
                    pem.label
                ),
            ),
            Err(err) => {
                problems.push(
                    field,
                    format!("{} is not a PEM certificate: {err}", path.display()),
                );
                return Vec::new();
            }
        }
    }
    if pems.is_empty() {
        problems.push(
            field,
            format!("{} holds no PEM certificate", path.display()),
        );
    }
    pems
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

/// The node certificate and every CA certificate of `files` with their
/// expiry, for `/admin/v1/node` (and so `sluice cluster doctor`). A file
/// that cannot be read or parsed is left out: `serve` checked them all
/// before it started.
pub fn certificate_expiries(
    files: &sluice_raft::tls::TlsFiles,
) -> Vec<sluice_admin::node::CertificateExpiry> {
    let read = |path: &Path| std::fs::read(path).unwrap_or_default();
    let (node, ca) = (read(&files.node_cert), read(&files.ca_cert));
    let node_pems = Pem::iter_from_buffer(&node).take(1);
    let ca_pems = Pem::iter_from_buffer(&ca);
    node_pems
        .map(|pem| ("node", pem))
        .chain(ca_pems.map(|pem| ("ca", pem)))
        .filter_map(|(role, pem)| {
            let pem = pem.ok()?;
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
