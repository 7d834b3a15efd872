//! `sluice dev`: a local cluster of `sluice serve` child processes, for
//! development and demos.
//!
//! The first run lays out the directory with [`crate::init::generate`] on
//! free ports of 127.0.0.1; later runs reuse it (same cluster, same data, same
//! ports, which live in the node configs). It waits until every node answers
//! `GET /readyz`, prints how to reach the cluster, writes `dev.json` for tools
//! and tests, and stays in the foreground: Ctrl-C or SIGTERM stops every node
//! (SIGTERM, then SIGKILL after 10 s). A node that dies once the cluster is
//! up is reported and started again after 2 s while the others keep serving
//! (see `dev/supervisor.rs`), so a failover can be tried with `kill -9`. A node
//! that dies before the cluster is ready stops the rest and makes
//! `sluice dev` exit 1. Only one `sluice dev` runs in a directory at a time
//! (see `dev/lock.rs`).
//!
//! Children run in their own process group, so a terminal's Ctrl-C reaches
//! only `sluice dev`, which then stops them in order.

use crate::config::{self, Config};
use crate::init::{self, InitPlan};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use supervisor::{report_tail, Nodes};
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};

mod demo;
mod lock;
mod supervisor;

pub use lock::LOCK_FILE;
pub use supervisor::NODE_LOG_FILE;

/// The file `sluice dev` writes for tools and tests.
pub const DEV_STATE_FILE: &str = "dev.json";

const DEFAULT_NODES: u64 = 3;
const READY_DEADLINE: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(250);
const READY_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `sluice dev` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Number of nodes (default: the nodes already in the directory, else 3).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=99))]
    pub nodes: Option<u64>,
    /// Directory holding the cluster's configs, secrets, data and logs.
    #[arg(long, default_value = ".sluice-dev")]
    pub data_dir: PathBuf,
}

/// `dev.json`: how to reach the running dev cluster. Keys this version does
/// not know are kept when the file is rewritten.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevState {
    /// In node order.
    pub admin_urls: Vec<String>,
    /// In node order.
    pub proxy_urls: Vec<String>,
    pub admin_token: String,
    /// The demo virtual key (allowed on the `mock-gpt` route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Base URL of the mock model provider `sluice dev` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock_url: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl DevState {
    /// Reads `path`, or `None` if it does not exist.
    pub fn read(path: &Path) -> anyhow::Result<Option<DevState>> {
        match fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("parsing {}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces `path` atomically; the file is 0600 (it holds the admin token).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("serializing dev.json")?;
        let staging = path.with_extension("json.tmp");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        file.write_all(json.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", staging.display()))?;
        fs::rename(&staging, path)
            .with_context(|| format!("moving {} to {}", staging.display(), path.display()))
    }
}

/// What interrupted the start-up.
enum Event {
    Signal(&'static str),
    Exited(usize, std::io::Result<ExitStatus>),
}

/// Runs the dev cluster until Ctrl-C/SIGTERM (`Ok`), or fails to start it.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let dir = args.data_dir;
    // Before anything else: a second `sluice dev` here would take the first
    // one's nodes for its own.
    let _lock = lock::DevLock::acquire(&dir)?;
    let existing = init::existing_node_ids(&dir)?;
    let count = args.nodes.unwrap_or(if existing.is_empty() {
        DEFAULT_NODES
    } else {
        existing.len() as u64
    });
    let ids: Vec<u64> = (1..=count).collect();
    prepare(&dir, &ids, &existing)?;

    let token_path = dir.join(init::ADMIN_TOKEN_FILE);
    let admin_token = fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?
        .trim()
        .to_string();
    let configs = ids
        .iter()
        .map(|&id| config::load(&init::node_config(&dir, id)).map_err(anyhow::Error::new))
        .collect::<anyhow::Result<Vec<Config>>>()?;

    // Signals are hooked before any child starts, so none is missed.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

    let exe = std::env::current_exe().context("finding the sluice executable")?;
    let mut nodes = Nodes::new(exe, dir.clone());
    for config in configs {
        if let Err(err) = nodes.start(config) {
            nodes.stop_all().await;
            return Err(err);
        }
    }

    let admin_urls: Vec<String> = nodes
        .nodes
        .iter()
        .map(|n| n.config.advertise.admin_url.clone())
        .collect();
    // The nodes' admin APIs serve HTTPS with certificates of the cluster's
    // CA, which alone is trusted.
    let ca_path = dir.join(init::CA_CERT_FILE);
    let client = fs::read(&ca_path)
        .with_context(|| format!("reading {}", ca_path.display()))
        .and_then(|pem| {
            let ca = reqwest::Certificate::from_pem(&pem)?;
            Ok(reqwest::Client::builder()
                .timeout(READY_REQUEST_TIMEOUT)
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca)
                .build()?)
        });
    let client = match client {
        Ok(client) => client,
        Err(err) => {
            nodes.stop_all().await;
            return Err(err).context("building the admin API's HTTP client");
        }
    };
    let ready = tokio::select! {
        ready = wait_ready(&client, &admin_urls) => Ok(ready),
        event = startup_event(&mut nodes, &mut sigint, &mut sigterm) => Err(event),
    };
    match ready {
        Ok(Ok(())) => {}
        Ok(Err(not_ready)) => {
            for &i in &not_ready {
                report_tail(&nodes.nodes[i]);
            }
            nodes.stop_all().await;
            let ids: Vec<String> = not_ready
                .iter()
                .map(|&i| nodes.nodes[i].id.to_string())
                .collect();
            bail!(
                "node(s) {} not ready within {}s; see their logs above",
                ids.join(", "),
                READY_DEADLINE.as_secs()
            );
        }
        Err(event) => return finish_startup(event, &mut nodes).await,
    }

    let state_path = dir.join(DEV_STATE_FILE);
    let mut state = match DevState::read(&state_path) {
        Ok(state) => state.unwrap_or_default(),
        Err(err) => {
            eprintln!("warning: {err:#}; writing a new one");
            DevState::default()
        }
    };
    state.admin_urls = admin_urls;
    state.proxy_urls = nodes
        .nodes
        .iter()
        .map(|n| n.config.advertise.proxy_url.clone())
        .collect();
    state.admin_token = admin_token;
    let demo = match demo::start(&client, &state.admin_urls, &state.admin_token, &state).await {
        Ok(demo) => demo,
        Err(err) => {
            nodes.stop_all().await;
            return Err(err.context("setting up the demo provider, route and key"));
        }
    };
    state.api_key = Some(demo.api_key.clone());
    state.mock_url = Some(demo.mock.base_url());
    if let Err(err) = state.write(&state_path) {
        nodes.stop_all().await;
        return Err(err);
    }
    print_ready(&dir, &nodes, &state);

    let signal = nodes.supervise(&client, &mut sigint, &mut sigterm).await;
    eprintln!("{signal}: stopping {} node(s)", nodes.nodes.len());
    nodes.stop_all().await;
    if let Err(err) = demo.mock.shutdown().await {
        eprintln!("warning: stopping the mock provider: {err}");
    }
    Ok(())
}

/// Generates whatever node directories are missing (all of them on a first
/// run), on free ports of 127.0.0.1.
fn prepare(dir: &Path, ids: &[u64], existing: &[u64]) -> anyhow::Result<()> {
    let missing: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !existing.contains(id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let nodes = init::free_port_plan(missing, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let initial_members = init::existing_initial_members(dir)?.unwrap_or_else(|| ids.to_vec());
    let plan = InitPlan {
        out: dir.to_path_buf(),
        cluster_id: None,
        nodes,
        initial_members,
        raft: None,
        admin_names: Vec::new(),
    };
    let output = init::generate(&plan).with_context(|| format!("preparing {}", dir.display()))?;
    for path in &output.created {
        eprintln!("created {}", path.display());
    }
    Ok(())
}

/// Polls every admin URL's `/readyz` until all answer 200, or returns the
/// indexes of the nodes still not ready at the deadline.
async fn wait_ready(client: &reqwest::Client, admin_urls: &[String]) -> Result<(), Vec<usize>> {
    let deadline = tokio::time::Instant::now() + READY_DEADLINE;
    let mut pending: Vec<usize> = (0..admin_urls.len()).collect();
    loop {
        let mut still = Vec::new();
        for &i in &pending {
            let url = format!("{}/readyz", admin_urls[i]);
            let ok = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|response| response.status() == reqwest::StatusCode::OK);
            if !ok {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(pending);
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Waits, during start-up, for a stop signal or for any node to exit.
async fn startup_event(
    nodes: &mut Nodes,
    sigint: &mut SignalStream,
    sigterm: &mut SignalStream,
) -> Event {
    tokio::select! {
        _ = sigint.recv() => Event::Signal("SIGINT"),
        _ = sigterm.recv() => Event::Signal("SIGTERM"),
        (i, status) = nodes.next_exit() => Event::Exited(i, status),
    }
}

/// Stops the cluster after `event` during start-up: `Ok` for a signal,
/// `Err` for a node that exited before the cluster was ready.
async fn finish_startup(event: Event, nodes: &mut Nodes) -> anyhow::Result<()> {
    match event {
        Event::Signal(name) => {
            eprintln!("{name}: stopping {} node(s)", nodes.nodes.len());
            nodes.stop_all().await;
            Ok(())
        }
        Event::Exited(i, status) => {
            let id = nodes.nodes[i].id;
            let how = match status {
                Ok(status) => status.to_string(),
                Err(err) => format!("wait failed: {err}"),
            };
            eprintln!("node {id} exited before the cluster was ready ({how})");
            report_tail(&nodes.nodes[i]);
            nodes.stop_all().await;
            bail!("node {id} exited before the cluster was ready ({how}); the other nodes were stopped")
        }
    }
}

fn print_ready(dir: &Path, nodes: &Nodes, state: &DevState) {
    let nodes = &nodes.nodes;
    let cluster_id = nodes.first().map_or("", |n| n.config.cluster_id.as_str());
    println!(
        "Sluice dev cluster {cluster_id} is ready: {} node(s), files in {}",
        nodes.len(),
        dir.display()
    );
    for node in nodes {
        println!(
            "  node {}  pid {}  admin {}  proxy {}  log {}",
            node.id,
            node.pid().map_or("?".to_string(), |p| p.to_string()),
            node.config.advertise.admin_url,
            node.config.advertise.proxy_url,
            node.log.display()
        );
    }
    println!(
        "Admin token: {} (for the CLI and the dashboard; also in {})",
        state.admin_token,
        dir.join(init::ADMIN_TOKEN_FILE).display()
    );
    if let (Some(mock), Some(key)) = (&state.mock_url, &state.api_key) {
        println!(
            "Demo: route `{}` on the mock provider at {mock}, demo key {key} (a Sluice virtual \
             key for applications, not an OpenAI or Anthropic key)",
            demo::ROUTE
        );
    }
    if !state.admin_urls.is_empty() {
        // Every node: the CLI fails over to the next when one is down.
        println!("For the sluice CLI (every node's admin API):");
        let ca = dir.join(init::CA_CERT_FILE);
        let ca = fs::canonicalize(&ca).unwrap_or(ca);
        println!(
            "  export SLUICE_ADMIN_URL={} SLUICE_ADMIN_TOKEN={} SLUICE_CACERT={}",
            state.admin_urls.join(","),
            state.admin_token,
            ca.display()
        );
    }
    if let (Some(proxy), Some(key)) = (state.proxy_urls.first(), &state.api_key) {
        // Any node's proxy answers. The OpenAI SDKs want the `/v1` in the
        // base URL; the Anthropic SDKs add it themselves.
        println!("For OpenAI SDKs:");
        println!("  export OPENAI_BASE_URL={proxy}/v1 OPENAI_API_KEY={key}");
        println!("For Anthropic SDKs (base URL without /v1):");
        println!("  export ANTHROPIC_BASE_URL={proxy} ANTHROPIC_API_KEY={key}");
        println!("Try it:");
        println!(
            "  curl -s {proxy}/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
            demo::ROUTE
        );
    }
    println!(
        "Dashboard: {}/dashboard (log in with the admin token; the certificate is the \
         cluster CA's in {}: trust it in your browser, or accept its warning)",
        state.admin_urls.first().map_or("", String::as_str),
        dir.join(init::CA_CERT_FILE).display()
    );
    println!(
        "A node that dies is started again after {} s; try a failover with `kill -9` on the \
         leader's pid (`sluice cluster status` names the leader).",
        supervisor::RESTART_DELAY.as_secs()
    );
    println!("Press Ctrl-C to stop.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_state_keeps_keys_it_does_not_know() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DEV_STATE_FILE);
        fs::write(
            &path,
            r#"{"admin_urls":["http://a"],"proxy_urls":["http://p"],"admin_token":"t","api_key":"sk-1","mock_url":"http://m"}"#,
        )
        .expect("write");
        let mut state = DevState::read(&path).expect("read").expect("present");
        assert_eq!(state.api_key.as_deref(), Some("sk-1"));
        state.admin_urls = vec!["http://b".into()];
        state.write(&path).expect("write");
        let text = fs::read_to_string(&path).expect("read");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["mock_url"], "http://m");
        assert_eq!(value["api_key"], "sk-1");
        assert_eq!(value["admin_urls"][0], "http://b");
    }
}
