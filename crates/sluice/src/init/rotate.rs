//! `sluice cluster rotate-ca`: replaces the cluster CA of a `sluice init`
//! directory in three stages, each followed by a rolling restart, so that
//! at every moment each node trusts the certificate of every other:
//!
//! 1. [`begin`]: a new CA (`ca-next.pem`, `ca-next-key.pem`); `ca.pem`
//!    becomes the old CA followed by the new one (the old alone is kept as
//!    `ca-old.pem`). Once installed everywhere, every node trusts both.
//! 2. [`reissue`]: every node's certificates (peer and admin) from the new
//!    CA, with the names they had. A node on a new certificate is trusted by
//!    the others (they trust both CAs), and one still on its old certificate
//!    too.
//! 3. [`finish`]: `ca.pem` and `ca-key.pem` are the new CA alone; the old
//!    one is kept as `retired-ca-<sha>.pem` and `retired-ca-<sha>-key.pem`.
//!    Once installed everywhere, a certificate of the old CA is refused.
//!
//! The stage is read from the files and nothing else: `ca-next.pem` exists
//! from `begin` to `finish`, and `reissue` is done when every node's
//! certificates verify under it. A stage run out of order is refused with
//! the one to run instead. `sluice init` keeps working in between (it signs
//! with `ca-key.pem`, the old CA, until `finish`; `reissue` moves a node
//! added meanwhile over too).

use super::{node_dir, write_new, write_replacing, Ca};
use super::{ADMIN_CERT_FILE, ADMIN_KEY_FILE, CA_CERT_FILE, CA_KEY_FILE, NODE_CERT_FILE};
use super::{CLUSTER_ID_FILE, NODE_KEY_FILE};
use anyhow::{bail, Context};
use std::fs;
use std::path::{Path, PathBuf};
use x509_parser::pem::Pem;

#[cfg(test)]
mod tests;

/// The new CA's certificate, from `begin` to `finish`.
pub const NEXT_CA_CERT_FILE: &str = "ca-next.pem";
/// The new CA's key (0600), from `begin` to `finish`.
pub const NEXT_CA_KEY_FILE: &str = "ca-next-key.pem";
/// The old CA's certificate alone, from `begin` to `finish`.
pub const OLD_CA_CERT_FILE: &str = "ca-old.pem";

/// The certificate files of a node directory, each with its key.
const NODE_PAIRS: [(&str, &str); 2] = [
    (NODE_CERT_FILE, NODE_KEY_FILE),
    (ADMIN_CERT_FILE, ADMIN_KEY_FILE),
];

/// Where a rotation stands, as the files of an init directory say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No rotation under way.
    Idle,
    /// `begin` ran; some node certificates are still from the old CA.
    Begun,
    /// `reissue` ran: every node certificate is from the new CA.
    Reissued,
}

impl Stage {
    /// The stage command that comes next.
    pub fn next(self) -> &'static str {
        match self {
            Stage::Idle => "begin",
            Stage::Begun => "reissue",
            Stage::Reissued => "finish",
        }
    }
}

/// What a stage did, and what the operator installs before the next.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageReport {
    /// `begin`, `reissue` or `finish`.
    pub stage: &'static str,
    /// Files written or replaced, in order.
    pub written: Vec<PathBuf>,
    /// Files moved aside: `(from, to)`.
    pub retired: Vec<(PathBuf, PathBuf)>,
    /// Node ids whose certificates were already from the new CA.
    pub kept_nodes: Vec<u64>,
    /// Files to copy to each node (of the init directory: `ca.pem`, or a
    /// node directory's certificates and keys), before restarting it.
    pub install: Vec<PathBuf>,
    /// The stage to run after the rolling restart, if any.
    pub next: Option<&'static str>,
}

/// The stage the rotation of `out` is at.
pub fn stage(out: &Path) -> anyhow::Result<Stage> {
    check_init_dir(out)?;
    if !out.join(NEXT_CA_CERT_FILE).exists() {
        return Ok(Stage::Idle);
    }
    let next = read_ca_cert(&out.join(NEXT_CA_CERT_FILE))?;
    if old_certificates(out, &next)?.is_empty() {
        Ok(Stage::Reissued)
    } else {
        Ok(Stage::Begun)
    }
}

/// Stage 1: makes the new CA and the bundle `ca.pem` of both.
pub fn begin(out: &Path) -> anyhow::Result<StageReport> {
    let current = stage(out)?;
    if current != Stage::Idle {
        bail!(
            "a CA rotation is already under way in {} ({NEXT_CA_CERT_FILE} exists); once the \
             nodes run with what the last stage wrote, run `sluice cluster rotate-ca {} --out {}`",
            out.display(),
            current.next(),
            out.display()
        );
    }
    for leftover in [NEXT_CA_KEY_FILE, OLD_CA_CERT_FILE] {
        let path = out.join(leftover);
        if path.exists() {
            bail!(
                "{} exists without {NEXT_CA_CERT_FILE}: an earlier `begin` was interrupted. \
                 If {CA_CERT_FILE} holds two certificates, copy {OLD_CA_CERT_FILE} over it; \
                 then delete {NEXT_CA_KEY_FILE} and {OLD_CA_CERT_FILE} and run `begin` again",
                path.display()
            );
        }
    }
    let old_pem = read_text(&out.join(CA_CERT_FILE))?;
    let old = certificates(&out.join(CA_CERT_FILE), old_pem.as_bytes())?;
    if old.len() != 1 {
        bail!(
            "{} holds {} certificates, expected the cluster CA alone",
            out.join(CA_CERT_FILE).display(),
            old.len()
        );
    }
    // The old CA must be whole: `finish` retires its key with it.
    Ca::load(&old_pem, &read_text(&out.join(CA_KEY_FILE))?)
        .with_context(|| format!("loading the CA of {}", out.display()))?;

    let cluster_id = read_text(&out.join(CLUSTER_ID_FILE))?;
    let (_, next) = Ca::generate_next(cluster_id.trim())?;
    let mut written = Vec::new();
    let steps: [(&str, &str, u32); 3] = [
        (OLD_CA_CERT_FILE, &old_pem, 0o644),
        (NEXT_CA_KEY_FILE, &next.key_pem, 0o600),
        (NEXT_CA_CERT_FILE, &next.cert_pem, 0o644),
    ];
    for (name, contents, mode) in steps {
        write_new(&out.join(name), contents.as_bytes(), mode)?;
        written.push(out.join(name));
    }
    // Last: until `ca.pem` is the bundle, nothing installed changed.
    let bundle = format!("{}\n{}", old_pem.trim_end(), next.cert_pem);
    write_replacing(&out.join(CA_CERT_FILE), bundle.as_bytes(), 0o644)?;
    written.push(out.join(CA_CERT_FILE));
    Ok(StageReport {
        stage: "begin",
        written,
        retired: Vec::new(),
        kept_nodes: Vec::new(),
        install: vec![out.join(CA_CERT_FILE)],
        next: Some("reissue"),
    })
}

/// Stage 2: every node directory's certificates and keys from the new CA,
/// for the names they had. A node whose certificates already are from it is
/// left as it is, so a rerun only finishes what an interrupted one left.
pub fn reissue(out: &Path) -> anyhow::Result<StageReport> {
    let (next, next_pem) = begun(out, "reissue")?;
    let next_cert = read_ca_cert(&next)?;
    let ca = Ca::load(&next_pem, &read_text(&out.join(NEXT_CA_KEY_FILE))?)
        .with_context(|| format!("loading the new CA from {}", next.display()))?;
    let mut report = StageReport {
        stage: "reissue",
        written: Vec::new(),
        retired: Vec::new(),
        kept_nodes: Vec::new(),
        install: Vec::new(),
        next: Some("finish"),
    };
    for id in super::existing_node_ids(out)? {
        let dir = node_dir(out, id);
        let mut reissued = false;
        for (cert_name, key_name) in NODE_PAIRS {
            let cert_path = dir.join(cert_name);
            if cert_name == ADMIN_CERT_FILE && !cert_path.exists() {
                continue;
            }
            let existing = read_text(&cert_path)?;
            if signed_by(&cert_path, existing.as_bytes(), &next_cert)? {
                continue;
            }
            let pems = ca
                .reissue(&existing)
                .with_context(|| format!("reissuing {}", cert_path.display()))?;
            // The key first: a run cut between the two leaves an old
            // certificate, which the next run reissues again.
            write_replacing(&dir.join(key_name), pems.key_pem.as_bytes(), 0o600)?;
            write_replacing(&cert_path, pems.cert_pem.as_bytes(), 0o644)?;
            report.written.extend([dir.join(key_name), cert_path]);
            reissued = true;
        }
        if reissued {
            let files = NODE_PAIRS
                .iter()
                .flat_map(|(c, k)| [dir.join(c), dir.join(k)]);
            report.install.extend(files.filter(|f| f.exists()));
        } else {
            report.kept_nodes.push(id);
        }
    }
    Ok(report)
}

/// Stage 3: the new CA alone in `ca.pem` and `ca-key.pem`; the old one
/// retired beside them. Refused while a node certificate is from the old CA.
pub fn finish(out: &Path) -> anyhow::Result<StageReport> {
    let (next, next_pem) = begun(out, "finish")?;
    let next_cert = read_ca_cert(&next)?;
    if let Some(old) = old_certificates(out, &next_cert)?.first() {
        bail!(
            "{} is still from the old CA: run `sluice cluster rotate-ca reissue --out {}`, \
             install the node certificates and restart the nodes one at a time first",
            old.display(),
            out.display()
        );
    }
    let mut report = StageReport {
        stage: "finish",
        written: Vec::new(),
        retired: Vec::new(),
        kept_nodes: Vec::new(),
        install: vec![out.join(CA_CERT_FILE)],
        next: None,
    };
    // Each step is skipped when an interrupted earlier run did it, and
    // `ca.pem` holds the new CA throughout, so a rerun picks up where it
    // stopped.
    let old_path = out.join(OLD_CA_CERT_FILE);
    let next_key = out.join(NEXT_CA_KEY_FILE);
    if next_key.exists() {
        let retired_key = retired(out, &old_path, "-key")?;
        keep(&retired_key, &read_text(&out.join(CA_KEY_FILE))?, 0o600)?;
        fs::rename(&next_key, out.join(CA_KEY_FILE)).with_context(|| {
            format!(
                "moving {} to {}",
                next_key.display(),
                out.join(CA_KEY_FILE).display()
            )
        })?;
        report.retired.push((out.join(CA_KEY_FILE), retired_key));
        report.written.push(out.join(CA_KEY_FILE));
    }
    if old_path.exists() {
        let retired_cert = retired(out, &old_path, "")?;
        keep(&retired_cert, &read_text(&old_path)?, 0o644)?;
        fs::remove_file(&old_path).with_context(|| format!("removing {}", old_path.display()))?;
        report.retired.push((old_path, retired_cert));
    }
    write_replacing(&out.join(CA_CERT_FILE), next_pem.as_bytes(), 0o644)?;
    report.written.push(out.join(CA_CERT_FILE));
    // Last: until it is gone, the rotation is under way.
    fs::remove_file(&next).with_context(|| format!("removing {}", next.display()))?;
    Ok(report)
}

/// `retired-ca-<first 12 hex digits of the old CA's SHA-256><suffix>.pem`
/// under `out`: named for the CA, so a later rotation's never collides.
fn retired(out: &Path, old_cert: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let der = read_ca_cert(old_cert)?.contents;
    let sha = hex::encode(sluice_core::secret::sha256(&der));
    Ok(out.join(format!("retired-ca-{}{suffix}.pem", &sha[..12])))
}

/// The new CA's certificate file and PEM, checked to belong with the rest
/// of a begun rotation; refused before `begin`.
fn begun(out: &Path, stage_name: &str) -> anyhow::Result<(PathBuf, String)> {
    check_init_dir(out)?;
    let next = out.join(NEXT_CA_CERT_FILE);
    if !next.exists() {
        bail!(
            "no CA rotation is under way in {} (no {NEXT_CA_CERT_FILE}): run `sluice cluster \
             rotate-ca begin --out {}` first, not `{stage_name}`",
            out.display(),
            out.display()
        );
    }
    let next_pem = read_text(&next)?;
    let old_path = out.join(OLD_CA_CERT_FILE);
    let bundle_path = out.join(CA_CERT_FILE);
    let bundle = read_text(&bundle_path)?;
    let in_bundle: Vec<Vec<u8>> = certificates(&bundle_path, bundle.as_bytes())?
        .into_iter()
        .map(|pem| pem.contents)
        .collect();
    let next_der = read_ca_cert(&next)?.contents;
    if !in_bundle.contains(&next_der) {
        bail!(
            "{} does not hold the new CA of {}: was it replaced after `begin`? It must hold \
             the old CA ({OLD_CA_CERT_FILE}) and the new one ({NEXT_CA_CERT_FILE})",
            bundle_path.display(),
            next.display()
        );
    }
    if old_path.exists() {
        let old_der = read_ca_cert(&old_path)?.contents;
        if !in_bundle.contains(&old_der) {
            bail!(
                "{} does not hold the old CA of {}: it must hold both CAs until `finish`",
                bundle_path.display(),
                old_path.display()
            );
        }
    }
    Ok((next, next_pem))
}

/// Whether `out` is a `sluice init` directory with its CA.
fn check_init_dir(out: &Path) -> anyhow::Result<()> {
    for name in [CA_CERT_FILE, CA_KEY_FILE] {
        if !out.join(name).is_file() {
            bail!(
                "{} has no {name}: pass the directory `sluice init --out` wrote, the one \
                 holding the cluster's CA key",
                out.display()
            );
        }
    }
    Ok(())
}

/// The node certificate files under `out` not signed by `next`.
fn old_certificates(out: &Path, next: &Pem) -> anyhow::Result<Vec<PathBuf>> {
    let mut old = Vec::new();
    for id in super::existing_node_ids(out)? {
        for (cert_name, _) in NODE_PAIRS {
            let path = node_dir(out, id).join(cert_name);
            if cert_name == ADMIN_CERT_FILE && !path.exists() {
                continue;
            }
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if !signed_by(&path, &bytes, next)? {
                old.push(path);
            }
        }
    }
    Ok(old)
}

/// Whether the certificate in `bytes` (read from `path`) was signed by the
/// key of `ca`.
fn signed_by(path: &Path, bytes: &[u8], ca: &Pem) -> anyhow::Result<bool> {
    let pem = certificates(path, bytes)?
        .into_iter()
        .next()
        .with_context(|| format!("{} holds no certificate", path.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|err| anyhow::anyhow!("{}: not an X.509 certificate: {err}", path.display()))?;
    let ca = ca
        .parse_x509()
        .map_err(|err| anyhow::anyhow!("the new CA certificate does not parse: {err}"))?;
    Ok(cert.verify_signature(Some(ca.public_key())).is_ok())
}

/// Every PEM certificate in `bytes` (read from `path`), in order.
pub(crate) fn certificates(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<Pem>> {
    let mut certs = Vec::new();
    for pem in Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|err| anyhow::anyhow!("{}: not PEM: {err}", path.display()))?;
        if pem.label == "CERTIFICATE" {
            certs.push(pem);
        }
    }
    Ok(certs)
}

/// The one CA certificate of the file `path`.
fn read_ca_cert(path: &Path) -> anyhow::Result<Pem> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match certificates(path, &bytes)?.into_iter().next() {
        Some(pem) => Ok(pem),
        None => bail!("{} holds no certificate", path.display()),
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Creates `path` with `contents`, or leaves it if it holds them already (a
/// rerun); anything else there is refused, never overwritten.
fn keep(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    match fs::read_to_string(path) {
        Ok(existing) if existing == contents => Ok(()),
        Ok(_) => bail!(
            "{} exists with other contents; move it away and run `finish` again",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            write_new(path, contents.as_bytes(), mode)
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}
