//! `sluice init`: everything a cluster needs before its first start: a CA,
//! one certificate per node, the data key, the bootstrap admin token, and one
//! configuration file per node.
//!
//! [`generate`] never overwrites. Run again on the same directory it reuses
//! the CA, data key, token and cluster id and only creates the node
//! directories that do not exist yet; that is how a node is added later (it
//! gets `cluster.join`). The e2e harness and `sluice dev` call [`generate`]
//! with ports from [`free_port_plan`].
//!
//! Layout written under `out`:
//! ```text
//! ca.pem  ca-key.pem (0600)  data.key (0600)  admin-token (0600)  cluster-id
//! node-<id>/node.pem  node-<id>/node-key.pem (0600)  node-<id>/sluice.toml
//! node-<id>/admin.pem  node-<id>/admin-key.pem (0600): the admin API's
//! HTTPS certificate, from the same CA, for the node's addresses
//! ```
//! Each node's `data_dir` is `node-<id>/data` (created by the node itself).
//!
//! [`rotate`] replaces the CA of such a directory in stages (`sluice
//! cluster rotate-ca`).

mod pki;
pub mod rotate;
#[cfg(test)]
mod tests;

pub use pki::{node_dns_name, CLUSTER_DNS_NAME};

use crate::config::{
    self, RawAdmin, RawAdvertise, RawCluster, RawConfig, RawLimits, RawListen, RawLog, RawMember,
    RawRaft, RawSecrets, RawTls, CONFIG_FILE_NAME,
};
use anyhow::{bail, Context};
use pki::Ca;
use rand::RngCore;
use sluice_core::admin_token::{format_token, TOKEN_PREFIX, TOKEN_RANDOM_LEN};
use sluice_core::secret::{hash_secret, DATA_KEY_LEN};
use sluice_core::DataKey;
use sluice_raft::{Member, RaftTiming};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const DATA_KEY_FILE: &str = "data.key";
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const CLUSTER_ID_FILE: &str = "cluster-id";
pub const NODE_CERT_FILE: &str = "node.pem";
pub const NODE_KEY_FILE: &str = "node-key.pem";
pub const ADMIN_CERT_FILE: &str = "admin.pem";
pub const ADMIN_KEY_FILE: &str = "admin-key.pem";

/// The addresses one node binds (and advertises: they must be dialable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePlan {
    pub id: u64,
    /// UDP (QUIC).
    pub raft: SocketAddr,
    /// TCP.
    pub admin: SocketAddr,
    /// TCP.
    pub proxy: SocketAddr,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct InitPlan {
    pub out: PathBuf,
    /// `None`: reuse the directory's cluster id, or make a new one.
    pub cluster_id: Option<String>,
    /// Nodes to create; ones whose directory exists are left untouched.
    pub nodes: Vec<NodePlan>,
    /// Ids that form the cluster with `cluster.initial_members`; every other
    /// node gets `cluster.join` with these members' raft addresses. Each must
    /// be in `nodes` or already exist under `out`.
    pub initial_members: Vec<u64>,
    /// `[raft]` values written to every new config; `None` writes no
    /// `[raft]` table (the defaults apply).
    pub raft: Option<RaftTiming>,
    /// DNS names of each node's admin API for its certificate, `{id}` and
    /// `{ordinal}` (id - 1) replaced (`sluice init --admin-name`).
    pub admin_names: Vec<String>,
}

impl InitPlan {
    /// A plan where every node is an initial member, with default timing.
    pub fn new(out: impl Into<PathBuf>, nodes: Vec<NodePlan>) -> Self {
        InitPlan {
            out: out.into(),
            cluster_id: None,
            initial_members: nodes.iter().map(|n| n.id).collect(),
            nodes,
            raft: None,
            admin_names: Vec::new(),
        }
    }
}

/// What [`generate`] produced.
#[derive(Debug, Clone)]
pub struct InitOutput {
    pub cluster_id: String,
    /// The clear bootstrap admin token (also in `out/admin-token`).
    pub admin_token: String,
    pub admin_token_file: PathBuf,
    /// Each planned node's `sluice.toml`, in `plan.nodes` order, whether
    /// created now or found.
    pub configs: Vec<PathBuf>,
    /// Files and node directories created by this run.
    pub created: Vec<PathBuf>,
    /// Node ids whose directory already existed and was left as it was.
    pub kept_nodes: Vec<u64>,
}

/// The directory of node `id` under `out`.
pub fn node_dir(out: &Path, id: u64) -> PathBuf {
    out.join(format!("node-{id}"))
}

/// The configuration file of node `id` under `out`.
pub fn node_config(out: &Path, id: u64) -> PathBuf {
    node_dir(out, id).join(CONFIG_FILE_NAME)
}

/// Creates what `plan` asks for under `plan.out`, reusing everything that
/// already exists there and overwriting nothing.
pub fn generate(plan: &InitPlan) -> anyhow::Result<InitOutput> {
    check_plan(plan)?;
    let out = &plan.out;
    let mut created = Vec::new();
    if !out.exists() {
        fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        fs::set_permissions(out, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting permissions of {}", out.display()))?;
        created.push(out.clone());
    }

    let cluster_id = cluster_id(out, plan.cluster_id.as_deref(), &mut created)?;
    let ca = ca(out, &cluster_id, &mut created)?;
    ensure_data_key(out, &mut created)?;
    let admin_token = admin_token(out, &mut created)?;
    let token_hash = hex::encode(hash_secret(&admin_token));

    let members = initial_member_addresses(plan)?;
    let mut configs = Vec::with_capacity(plan.nodes.len());
    let mut kept_nodes = Vec::new();
    for node in &plan.nodes {
        let dir = node_dir(out, node.id);
        let config_path = dir.join(CONFIG_FILE_NAME);
        if dir.exists() {
            if !config_path.is_file() {
                bail!(
                    "{} exists but has no {CONFIG_FILE_NAME}; remove the directory to have it generated again",
                    dir.display()
                );
            }
            kept_nodes.push(node.id);
        } else {
            let raw = node_raw_config(plan, node, &cluster_id, &token_hash, &members);
            write_node_dir(out, node, &ca, &raw, &plan.admin_names)?;
            created.push(dir);
        }
        configs.push(config_path);
    }

    Ok(InitOutput {
        cluster_id,
        admin_token,
        admin_token_file: out.join(ADMIN_TOKEN_FILE),
        configs,
        created,
        kept_nodes,
    })
}

/// Picks free ports on `host` for each id: TCP for admin and proxy, UDP for
/// raft. Every socket is held until all are picked, so no port is handed out
/// twice. Ports come from below the kernel's ephemeral range when there is
/// room there: a port the kernel hands out itself (port 0) is free again the
/// moment it is released, and the next outgoing connection of any process on
/// the machine may take it before the node binds it (a node of one test
/// failing to start because another test's client took its port). Another
/// process may still bind one on purpose.
pub fn free_port_plan(
    ids: impl IntoIterator<Item = u64>,
    host: IpAddr,
) -> anyhow::Result<Vec<NodePlan>> {
    let range = quiet_ports();
    let mut held = Vec::new();
    let mut plans = Vec::new();
    for id in ids {
        let admin = bind_quiet(&range, |port| TcpListener::bind((host, port)))
            .with_context(|| format!("binding a free TCP port on {host}"))?;
        let proxy = bind_quiet(&range, |port| TcpListener::bind((host, port)))
            .with_context(|| format!("binding a free TCP port on {host}"))?;
        let raft = bind_quiet(&range, |port| UdpSocket::bind((host, port)))
            .with_context(|| format!("binding a free UDP port on {host}"))?;
        plans.push(NodePlan {
            id,
            raft: raft.local_addr().context("reading a bound UDP address")?,
            admin: admin.local_addr().context("reading a bound TCP address")?,
            proxy: proxy.local_addr().context("reading a bound TCP address")?,
        });
        held.push((admin, proxy, raft));
    }
    Ok(plans)
}

/// Ports below the kernel's ephemeral range (Linux:
/// `/proc/sys/net/ipv4/ip_local_port_range`), from 10000; empty when the
/// range starts lower.
fn quiet_ports() -> std::ops::Range<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    10_000..ephemeral_low.max(10_000)
}

/// A socket `bind` made on a random port of `range` (a few tries), or on
/// one the kernel picks when the range is empty or crowded.
fn bind_quiet<S>(
    range: &std::ops::Range<u16>,
    bind: impl Fn(u16) -> std::io::Result<S>,
) -> std::io::Result<S> {
    use rand::Rng;
    if !range.is_empty() {
        let mut rng = rand::thread_rng();
        for _ in 0..64 {
            if let Ok(socket) = bind(rng.gen_range(range.clone())) {
                return Ok(socket);
            }
        }
    }
    bind(0)
}

/// Ports for `sluice init --base-port`: node `id` gets `base + 10*(id-1)` for
/// raft (UDP), `+1` for admin and `+2` for proxy.
pub fn fixed_port_plan(
    ids: impl IntoIterator<Item = u64>,
    host: IpAddr,
    base_port: u16,
) -> anyhow::Result<Vec<NodePlan>> {
    ids.into_iter()
        .map(|id| {
            let port = |offset: u64| -> anyhow::Result<SocketAddr> {
                let port = id
                    .checked_sub(1)
                    .and_then(|i| i.checked_mul(10))
                    .and_then(|p| p.checked_add(u64::from(base_port) + offset))
                    .and_then(|p| u16::try_from(p).ok())
                    .with_context(|| {
                        format!("node {id}: base port {base_port} leaves no room for its ports")
                    })?;
                Ok(SocketAddr::new(host, port))
            };
            Ok(NodePlan {
                id,
                raft: port(0)?,
                admin: port(1)?,
                proxy: port(2)?,
            })
        })
        .collect()
}

/// The `initial_members` ids recorded in the existing node configs under
/// `out`, if any: a rerun keeps forming the cluster the way it first did.
pub fn existing_initial_members(out: &Path) -> anyhow::Result<Option<Vec<u64>>> {
    for id in existing_node_ids(out)? {
        let path = node_config(out, id);
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let raw =
            config::parse(&text).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        if let Some(members) = raw.cluster.initial_members {
            return Ok(Some(members.iter().map(|m| m.id).collect()));
        }
    }
    Ok(None)
}

/// Ids of the `node-<id>` directories under `out`, ascending.
pub fn existing_node_ids(out: &Path) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    let entries = match fs::read_dir(out) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(err) => return Err(err).with_context(|| format!("listing {}", out.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", out.display()))?;
        let name = entry.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_prefix("node-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            if entry.path().is_dir() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Puts the data key held in `from` into `out` (before [`generate`], which
/// then keeps it), so the new cluster opens credentials sealed by the
/// cluster `from` belongs to. An `out` that already has a data key must have
/// this one: a key is never replaced.
pub fn adopt_data_key(out: &Path, from: &Path) -> anyhow::Result<()> {
    // Messages never include a key file's content: it is a secret.
    let read = |path: &Path| -> anyhow::Result<DataKey> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        DataKey::from_hex(&text).map_err(|_| {
            anyhow::anyhow!(
                "{} does not hold a data key (64 hex digits)",
                path.display()
            )
        })
    };
    let key = read(from)?;
    let target = out.join(DATA_KEY_FILE);
    if target.exists() {
        if read(&target)?.id() != key.id() {
            bail!(
                "{} already holds another data key; refusing to replace it",
                target.display()
            );
        }
        return Ok(());
    }
    if !out.exists() {
        fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        fs::set_permissions(out, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting permissions of {}", out.display()))?;
    }
    write_new(&target, format!("{}\n", key.to_hex()).as_bytes(), 0o600)
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> anyhow::Result<()> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .context("reading the operating system's random number generator")
}

fn check_plan(plan: &InitPlan) -> anyhow::Result<()> {
    if plan.nodes.is_empty() {
        bail!("no nodes to generate");
    }
    let mut ids = BTreeSet::new();
    for node in &plan.nodes {
        if node.id == 0 {
            bail!("node ids start at 1");
        }
        if !ids.insert(node.id) {
            bail!("node {} is planned twice", node.id);
        }
        for addr in [node.raft, node.admin, node.proxy] {
            if addr.ip().is_unspecified() || addr.port() == 0 {
                bail!(
                    "node {}: {addr} is not an address peers can dial; use a concrete IP and port",
                    node.id
                );
            }
        }
        if node.admin == node.proxy {
            bail!("node {}: admin and proxy both use {}", node.id, node.admin);
        }
    }
    if plan.initial_members.is_empty() {
        bail!("at least one node must be an initial member");
    }
    Ok(())
}

fn cluster_id(
    out: &Path,
    wanted: Option<&str>,
    created: &mut Vec<PathBuf>,
) -> anyhow::Result<String> {
    let file = out.join(CLUSTER_ID_FILE);
    let existing = match fs::read_to_string(&file) {
        Ok(text) => Some(text.trim().to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            cluster_id_from_node_configs(out)?
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
    };
    let id = match (existing, wanted) {
        (Some(existing), Some(wanted)) if existing != wanted => bail!(
            "{} belongs to cluster `{existing}`, not `{wanted}`; use another directory",
            out.display()
        ),
        (Some(existing), _) => existing,
        (None, Some(wanted)) => wanted.to_string(),
        (None, None) => {
            let mut bytes = [0u8; 6];
            fill_random(&mut bytes)?;
            format!("c-{}", hex::encode(bytes))
        }
    };
    if !(1..=64).contains(&id.len())
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("cluster id `{id}` must be 1-64 characters of a-z, 0-9 and -");
    }
    if !file.exists() {
        write_new(&file, format!("{id}\n").as_bytes(), 0o644)?;
        created.push(file);
    }
    Ok(id)
}

fn cluster_id_from_node_configs(out: &Path) -> anyhow::Result<Option<String>> {
    for id in existing_node_ids(out)? {
        let path = node_config(out, id);
        if let Ok(text) = fs::read_to_string(&path) {
            let raw =
                config::parse(&text).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
            return Ok(Some(raw.cluster_id));
        }
    }
    Ok(None)
}

fn ca(out: &Path, cluster_id: &str, created: &mut Vec<PathBuf>) -> anyhow::Result<Ca> {
    let cert_path = out.join(CA_CERT_FILE);
    let key_path = out.join(CA_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let cert = fs::read_to_string(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
            let key = fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
            Ca::load(&cert, &key).with_context(|| format!("loading the CA from {}", out.display()))
        }
        (false, false) => {
            let (ca, pems) = Ca::generate(cluster_id)?;
            write_new(&key_path, pems.key_pem.as_bytes(), 0o600)?;
            write_new(&cert_path, pems.cert_pem.as_bytes(), 0o644)?;
            created.push(cert_path);
            created.push(key_path);
            Ok(ca)
        }
        (true, false) => bail!(
            "{} exists without {}; restore the CA key or remove both to start a new cluster",
            cert_path.display(),
            key_path.display()
        ),
        (false, true) => bail!(
            "{} exists without {}; restore the CA certificate or remove both to start a new cluster",
            key_path.display(),
            cert_path.display()
        ),
    }
}

fn ensure_data_key(out: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let path = out.join(DATA_KEY_FILE);
    if path.exists() {
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        DataKey::from_hex(&text).map_err(|err| {
            anyhow::anyhow!(
                "{} exists but is not a data key ({err}); refusing to replace it",
                path.display()
            )
        })?;
        return Ok(());
    }
    let mut key = [0u8; DATA_KEY_LEN];
    fill_random(&mut key)?;
    let hex_key = format!("{}\n", DataKey::from_bytes(key).to_hex());
    write_new(&path, hex_key.as_bytes(), 0o600)?;
    created.push(path);
    Ok(())
}

fn admin_token(out: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<String> {
    let path = out.join(ADMIN_TOKEN_FILE);
    if path.exists() {
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let token = text.trim().to_string();
        if !token.starts_with(TOKEN_PREFIX) {
            bail!(
                "{} exists but does not hold an admin token (expected `{TOKEN_PREFIX}...`); refusing to replace it",
                path.display()
            );
        }
        return Ok(token);
    }
    let mut random = [0u8; TOKEN_RANDOM_LEN];
    fill_random(&mut random)?;
    let token = format_token(&random);
    write_new(&path, format!("{token}\n").as_bytes(), 0o600)?;
    created.push(path);
    Ok(token)
}

/// Addresses of every initial member: from its config when its directory
/// exists (the truth, whatever this plan says), else from the plan.
fn initial_member_addresses(plan: &InitPlan) -> anyhow::Result<BTreeMap<u64, Member>> {
    let mut members = BTreeMap::new();
    for &id in &plan.initial_members {
        let path = node_config(&plan.out, id);
        let member = if path.is_file() {
            config::load(&path)
                .map_err(anyhow::Error::new)
                .with_context(|| format!("reading initial member {id}'s addresses"))?
                .advertise
        } else if let Some(node) = plan.nodes.iter().find(|n| n.id == id) {
            Member {
                raft_addr: node.raft.to_string(),
                admin_url: format!("https://{}", node.admin),
                proxy_url: format!("http://{}", node.proxy),
            }
        } else {
            bail!(
                "initial member {id} is neither planned nor present in {}",
                plan.out.display()
            );
        };
        members.insert(id, member);
    }
    Ok(members)
}

fn node_raw_config(
    plan: &InitPlan,
    node: &NodePlan,
    cluster_id: &str,
    token_hash: &str,
    members: &BTreeMap<u64, Member>,
) -> RawConfig {
    let cluster = if members.contains_key(&node.id) {
        RawCluster {
            initial_members: Some(
                members
                    .iter()
                    .map(|(&id, m)| RawMember {
                        id,
                        raft: m.raft_addr.clone(),
                        admin_url: m.admin_url.clone(),
                        proxy_url: m.proxy_url.clone(),
                    })
                    .collect(),
            ),
            join: None,
        }
    } else {
        RawCluster {
            initial_members: None,
            join: Some(members.values().map(|m| m.raft_addr.clone()).collect()),
        }
    };
    RawConfig {
        cluster_id: cluster_id.to_string(),
        node_id: node.id,
        data_dir: PathBuf::from("data"),
        listen: RawListen {
            proxy: node.proxy.to_string(),
            admin: node.admin.to_string(),
            raft: node.raft.to_string(),
        },
        advertise: RawAdvertise::default(),
        tls: RawTls {
            ca_cert: Path::new("..").join(CA_CERT_FILE),
            node_cert: PathBuf::from(NODE_CERT_FILE),
            node_key: PathBuf::from(NODE_KEY_FILE),
        },
        secrets: RawSecrets {
            data_key_file: Path::new("..").join(DATA_KEY_FILE),
        },
        admin: RawAdmin {
            token_sha256: vec![token_hash.to_string()],
            tls_cert: Some(PathBuf::from(ADMIN_CERT_FILE)),
            tls_key: Some(PathBuf::from(ADMIN_KEY_FILE)),
            ..RawAdmin::default()
        },
        cluster,
        raft: plan
            .raft
            .as_ref()
            .map(RawRaft::from_timing)
            .unwrap_or_default(),
        log: RawLog::default(),
        limits: RawLimits::default(),
        proxy: Default::default(),
        quotas: Default::default(),
        usage: Default::default(),
        tracing: Default::default(),
    }
}

/// Writes the node's directory under a temporary name, checks its config
/// loads, then renames it into place, so a failed run leaves no half node.
fn write_node_dir(
    out: &Path,
    node: &NodePlan,
    ca: &Ca,
    raw: &RawConfig,
    admin_names: &[String],
) -> anyhow::Result<()> {
    let dir = node_dir(out, node.id);
    let staging = out.join(format!(".node-{}.partial", node.id));
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing the leftover {}", staging.display()))?;
    }
    fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;

    let pems = ca.issue_node(node.id, node.raft.ip())?;
    write_new(&staging.join(NODE_KEY_FILE), pems.key_pem.as_bytes(), 0o600)?;
    write_new(
        &staging.join(NODE_CERT_FILE),
        pems.cert_pem.as_bytes(),
        0o644,
    )?;
    // Clients reach the admin API at its own address, or at the node's
    // (the raft address's host) when it listens on all of them.
    let names: Vec<String> = admin_names
        .iter()
        .map(|n| {
            n.replace("{id}", &node.id.to_string())
                .replace("{ordinal}", &(node.id - 1).to_string())
        })
        .collect();
    let admin = ca.issue_admin(node.id, &names, &[node.admin.ip(), node.raft.ip()])?;
    write_new(
        &staging.join(ADMIN_KEY_FILE),
        admin.key_pem.as_bytes(),
        0o600,
    )?;
    write_new(
        &staging.join(ADMIN_CERT_FILE),
        admin.cert_pem.as_bytes(),
        0o644,
    )?;
    let toml = toml::to_string(raw)
        .with_context(|| format!("serializing node {}'s configuration", node.id))?;
    let text = format!(
        "# Sluice node {} of cluster {}, written by `sluice init`.\n\
         # Every field is described in docs/configuration.md.\n\n{toml}",
        node.id, raw.cluster_id
    );
    let staged_config = staging.join(CONFIG_FILE_NAME);
    write_new(&staged_config, text.as_bytes(), 0o644)?;
    config::load(&staged_config)
        .map_err(anyhow::Error::new)
        .with_context(|| format!("checking the generated configuration of node {}", node.id))?;

    fs::rename(&staging, &dir)
        .with_context(|| format!("moving {} to {}", staging.display(), dir.display()))?;
    Ok(())
}

/// Creates `path` with `mode`, failing if it exists.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces `path` with `contents` (mode `mode`) so that a reader sees the
/// old file or the new one, never a part: a temporary file beside it,
/// flushed, then renamed over it.
fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temp = path.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    if temp.exists() {
        fs::remove_file(&temp)
            .with_context(|| format!("removing the leftover {}", temp.display()))?;
    }
    write_new(&temp, contents, mode)?;
    fs::rename(&temp, path)
        .with_context(|| format!("moving {} to {}", temp.display(), path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}
