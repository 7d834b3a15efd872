//! `sluice dev`: a local cluster of `sluice serve` child processes, for
//! development and demos.
//!
//! The first run lays out the directory with [`crate::init::generate`] on
//! free ports of 127.0.0.1; later runs reuse it (same cluster, same data, same
//! ports, which live in the node configs). It waits until every node answers
//! `GET /readyz`, prints how to reach the cluster, writes `dev.json` for tools
//! and tests, and stays in the foreground: Ctrl-C or SIGTERM stops every node
//! (SIGTERM, then SIGKILL after 10 s). A node that dies on its own stops the
//! rest and makes `sluice dev` exit 1.
//!
//! Children run in their own process group, so a terminal's Ctrl-C reaches
//! only `sluice dev`, which then stops them in order.

use crate::config::{self, Config};
use crate::init::{self, InitPlan};
use anyhow::{bail, Context};
use futures::future::{select_all, FutureExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};

mod demo;

/// The file `sluice dev` writes for tools and tests.
pub const DEV_STATE_FILE: &str = "dev.json";
/// Each node's combined stdout and stderr, in its directory.
pub const NODE_LOG_FILE: &str = "sluice.log";

const DEFAULT_NODES: u64 = 3;
const READY_DEADLINE: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(250);
const READY_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 20;

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

/// One `sluice serve` child.
struct RunningNode {
    id: u64,
    config: Config,
    log: PathBuf,
    child: Child,
    /// Set once the child has been reaped.
    exit: Option<ExitStatus>,
}

/// What interrupted the wait.
enum Event {
    Signal(&'static str),
    Exited(usize, std::io::Result<ExitStatus>),
}

/// Runs the dev cluster until Ctrl-C/SIGTERM (`Ok`) or a node dies (`Err`).
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let dir = args.data_dir;
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
    let mut nodes = Vec::with_capacity(configs.len());
    for config in configs {
        match spawn(&exe, &dir, config) {
            Ok(node) => nodes.push(node),
            Err(err) => {
                stop_all(&mut nodes).await;
                return Err(err);
            }
        }
    }

    let admin_urls: Vec<String> = nodes
        .iter()
        .map(|n| n.config.advertise.admin_url.clone())
        .collect();
    let client = reqwest::Client::builder()
        .timeout(READY_REQUEST_TIMEOUT)
        .build();
    let client = match client {
        Ok(client) => client,
        Err(err) => {
            stop_all(&mut nodes).await;
            return Err(err).context("building the HTTP client");
        }
    };
    let ready = tokio::select! {
        ready = wait_ready(&client, &admin_urls) => Ok(ready),
        event = next_event(&mut nodes, &mut sigint, &mut sigterm) => Err(event),
    };
    match ready {
        Ok(Ok(())) => {}
        Ok(Err(not_ready)) => {
            for &i in &not_ready {
                report_tail(&nodes[i]);
            }
            stop_all(&mut nodes).await;
            let ids: Vec<String> = not_ready.iter().map(|&i| nodes[i].id.to_string()).collect();
            bail!(
                "node(s) {} not ready within {}s; see their logs above",
                ids.join(", "),
                READY_DEADLINE.as_secs()
            );
        }
        Err(event) => return finish(event, &mut nodes).await,
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
        .iter()
        .map(|n| n.config.advertise.proxy_url.clone())
        .collect();
    state.admin_token = admin_token;
    let demo = match demo::start(&client, &state.admin_urls[0], &state.admin_token, &state).await {
        Ok(demo) => demo,
        Err(err) => {
            stop_all(&mut nodes).await;
            return Err(err.context("setting up the demo provider, route and key"));
        }
    };
    state.api_key = Some(demo.api_key.clone());
    state.mock_url = Some(demo.mock.base_url());
    if let Err(err) = state.write(&state_path) {
        stop_all(&mut nodes).await;
        return Err(err);
    }
    print_ready(&dir, &nodes, &state);

    let event = next_event(&mut nodes, &mut sigint, &mut sigterm).await;
    let result = finish(event, &mut nodes).await;
    if let Err(err) = demo.mock.shutdown().await {
        eprintln!("warning: stopping the mock provider: {err}");
    }
    result
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
    };
    let output = init::generate(&plan).with_context(|| format!("preparing {}", dir.display()))?;
    for path in &output.created {
        eprintln!("created {}", path.display());
    }
    Ok(())
}

fn spawn(exe: &Path, dir: &Path, config: Config) -> anyhow::Result<RunningNode> {
    let id = config.node_id;
    let config_path = init::node_config(dir, id);
    let log = init::node_dir(dir, id).join(NODE_LOG_FILE);
    let mut stdout = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    writeln!(
        stdout,
        "=== sluice dev: starting node {id} at {} ===",
        time::OffsetDateTime::now_utc()
    )
    .with_context(|| format!("writing {}", log.display()))?;
    let stderr = stdout
        .try_clone()
        .with_context(|| format!("opening {}", log.display()))?;
    let child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting node {id} ({} serve --config {})",
                exe.display(),
                config_path.display()
            )
        })?;
    Ok(RunningNode {
        id,
        config,
        log,
        child,
        exit: None,
    })
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

/// Waits for a stop signal or for any running child to exit.
async fn next_event(
    nodes: &mut [RunningNode],
    sigint: &mut SignalStream,
    sigterm: &mut SignalStream,
) -> Event {
    tokio::select! {
        _ = sigint.recv() => Event::Signal("SIGINT"),
        _ = sigterm.recv() => Event::Signal("SIGTERM"),
        (i, status) = wait_any(nodes) => Event::Exited(i, status),
    }
}

/// The index and status of the next running child to exit; never resolves
/// when none is running.
async fn wait_any(nodes: &mut [RunningNode]) -> (usize, std::io::Result<ExitStatus>) {
    let waits: Vec<_> = nodes
        .iter_mut()
        .enumerate()
        .filter(|(_, node)| node.exit.is_none())
        .map(|(i, node)| node.child.wait().map(move |status| (i, status)).boxed())
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    let ((i, status), _, _) = select_all(waits).await;
    if let Ok(status) = &status {
        nodes[i].exit = Some(*status);
    }
    (i, status)
}

/// Stops the cluster after `event`: `Ok` for a signal, `Err` for a node that
/// exited on its own.
async fn finish(event: Event, nodes: &mut [RunningNode]) -> anyhow::Result<()> {
    match event {
        Event::Signal(name) => {
            eprintln!("{name}: stopping {} node(s)", nodes.len());
            stop_all(nodes).await;
            Ok(())
        }
        Event::Exited(i, status) => {
            let id = nodes[i].id;
            let how = match status {
                Ok(status) => status.to_string(),
                Err(err) => format!("wait failed: {err}"),
            };
            eprintln!("node {id} exited unexpectedly ({how})");
            report_tail(&nodes[i]);
            stop_all(nodes).await;
            bail!("node {id} exited unexpectedly ({how}); the other nodes were stopped")
        }
    }
}

/// SIGTERM to every running child, up to [`STOP_GRACE`] for them to exit,
/// then SIGKILL for the rest.
async fn stop_all(nodes: &mut [RunningNode]) {
    for node in nodes.iter_mut().filter(|n| n.exit.is_none()) {
        // `id()` is `None` once the child was reaped: no stale pid is signalled.
        if let Some(pid) = node.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            if let Err(err) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
                eprintln!("node {}: SIGTERM failed: {err}", node.id);
            }
        }
    }
    let grace = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(grace);
    while nodes.iter().any(|n| n.exit.is_none()) {
        tokio::select! {
            _ = &mut grace => break,
            (i, status) = wait_any(nodes) => {
                if let Err(err) = status {
                    eprintln!("node {}: waiting for it failed: {err}", nodes[i].id);
                    nodes[i].exit = Some(ExitStatus::default());
                }
            }
        }
    }
    for node in nodes.iter_mut().filter(|n| n.exit.is_none()) {
        eprintln!(
            "node {} did not stop within {}s; killing it",
            node.id,
            STOP_GRACE.as_secs()
        );
        if let Err(err) = node.child.start_kill() {
            eprintln!("node {}: SIGKILL failed: {err}", node.id);
        }
        match node.child.wait().await {
            Ok(status) => node.exit = Some(status),
            Err(err) => eprintln!("node {}: waiting for it failed: {err}", node.id),
        }
    }
}

fn report_tail(node: &RunningNode) {
    match log_tail(&node.log, LOG_TAIL_LINES) {
        Ok(tail) => eprintln!(
            "--- last lines of {} ---\n{tail}\n--- end of {} ---",
            node.log.display(),
            node.log.display()
        ),
        Err(err) => eprintln!("(cannot show {}: {err:#})", node.log.display()),
    }
}

/// The last `lines` lines of the file at `path` (reading at most its last 64 KiB).
fn log_tail(path: &Path, lines: usize) -> anyhow::Result<String> {
    const MAX: u64 = 64 * 1024;
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    file.seek(SeekFrom::Start(len.saturating_sub(MAX)))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

fn print_ready(dir: &Path, nodes: &[RunningNode], state: &DevState) {
    let cluster_id = nodes.first().map_or("", |n| n.config.cluster_id.as_str());
    println!(
        "Sluice dev cluster {cluster_id} is ready: {} node(s), files in {}",
        nodes.len(),
        dir.display()
    );
    for node in nodes {
        println!(
            "  node {}  admin {}  proxy {}  log {}",
            node.id,
            node.config.advertise.admin_url,
            node.config.advertise.proxy_url,
            node.log.display()
        );
    }
    println!("Admin token: {}", state.admin_token);
    if let (Some(mock), Some(key)) = (&state.mock_url, &state.api_key) {
        println!(
            "Demo: route `{}` on the mock provider at {mock}, demo key {key}",
            demo::ROUTE
        );
    }
    if let Some(admin) = state.admin_urls.first() {
        println!(
            "export SLUICE_ADMIN_URL={admin} SLUICE_ADMIN_TOKEN={}",
            state.admin_token
        );
    }
    if let (Some(proxy), Some(key)) = (state.proxy_urls.first(), &state.api_key) {
        // Any node's proxy answers; point an OpenAI SDK at it the same way.
        println!("export OPENAI_BASE_URL={proxy}/v1 OPENAI_API_KEY={key}");
        println!("Try it:");
        println!(
            "  curl -s {proxy}/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
            demo::ROUTE
        );
    }
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

    #[test]
    fn log_tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, text).expect("write");
        let tail = log_tail(&path, 3).expect("tail");
        assert_eq!(tail, "line 48\nline 49\nline 50");
    }
}
