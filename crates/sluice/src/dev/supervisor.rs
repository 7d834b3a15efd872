//! The `sluice serve` children of `sluice dev`: starting them, watching
//! them, bringing a dead one back, and stopping them all.
//!
//! Once the cluster is up, a node that dies (a crash, or `kill -9` to try a
//! failover) is reported and started again after [`RESTART_DELAY`]; the
//! others keep running and elect a new leader if it led. A node that dies
//! again within [`STABLE_AFTER`] of its start waits twice as long each time
//! (up to [`MAX_RESTART_DELAY`]), so a node that cannot start does not spin.
//! What a dead node loses is what it held only in memory: its usage
//! roll-ups not yet sent to the cluster. Everything committed is on disk
//! (its own, and the others').

use crate::config::Config;
use crate::init;
use anyhow::Context;
use futures::future::{select_all, FutureExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::Signal as SignalStream;
use tokio::time::Instant;

/// Each node's combined stdout and stderr, in its directory.
pub const NODE_LOG_FILE: &str = "sluice.log";
/// How long after a node's death it is started again.
pub const RESTART_DELAY: Duration = Duration::from_secs(2);
/// A node that ran this long before dying is restarted after
/// [`RESTART_DELAY`] again; one that died sooner waits longer each time.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 20;
const READY_POLL: Duration = Duration::from_millis(250);

/// One node of the dev cluster, running or waiting to be started again.
pub struct Node {
    pub id: u64,
    pub config: Config,
    pub log: PathBuf,
    /// `None` while the node is not running.
    child: Option<Child>,
    started: Instant,
    /// When it is due to start again (it died).
    restart_at: Option<Instant>,
    restart_delay: Duration,
    /// Whether the current process is a restart (not the first start).
    restarted: bool,
    /// Started again and not yet answering `/readyz` with 200.
    coming_back: bool,
}

impl Node {
    /// The running process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn admin_url(&self) -> &str {
        &self.config.advertise.admin_url
    }
}

/// The nodes of the dev cluster.
pub struct Nodes {
    exe: PathBuf,
    dir: PathBuf,
    pub nodes: Vec<Node>,
}

impl Nodes {
    pub fn new(exe: PathBuf, dir: PathBuf) -> Self {
        Nodes {
            exe,
            dir,
            nodes: Vec::new(),
        }
    }

    /// Starts a node for `config`.
    pub fn start(&mut self, config: Config) -> anyhow::Result<()> {
        let id = config.node_id;
        let log = init::node_dir(&self.dir, id).join(NODE_LOG_FILE);
        let child = spawn(&self.exe, &self.dir, id, &log)?;
        self.nodes.push(Node {
            id,
            config,
            log,
            child: Some(child),
            started: Instant::now(),
            restart_at: None,
            restart_delay: RESTART_DELAY,
            restarted: false,
            coming_back: false,
        });
        Ok(())
    }

    /// The index and status of the next running node to exit; never
    /// resolves while none runs.
    pub async fn next_exit(&mut self) -> (usize, std::io::Result<ExitStatus>) {
        wait_any(&mut self.nodes).await
    }

    /// Runs until SIGINT or SIGTERM (answers its name): reports each node
    /// that dies, starts it again after a delay, and says when it is ready
    /// again.
    pub async fn supervise(
        &mut self,
        client: &reqwest::Client,
        sigint: &mut SignalStream,
        sigterm: &mut SignalStream,
    ) -> &'static str {
        loop {
            let restart_due = self.nodes.iter().filter_map(|n| n.restart_at).min();
            let coming_back: Vec<(usize, String)> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.coming_back && n.child.is_some())
                .map(|(i, n)| (i, format!("{}/readyz", n.admin_url())))
                .collect();
            tokio::select! {
                _ = sigint.recv() => return "SIGINT",
                _ = sigterm.recv() => return "SIGTERM",
                (i, status) = wait_any(&mut self.nodes) => self.died(i, status),
                () = sleep_until(restart_due) => self.restart_due(),
                ready = poll_ready(client, &coming_back) => {
                    for i in ready {
                        let node = &mut self.nodes[i];
                        node.coming_back = false;
                        println!("node {} is ready again", node.id);
                    }
                }
            }
        }
    }

    /// Reports node `i`'s death and schedules its restart.
    fn died(&mut self, i: usize, status: std::io::Result<ExitStatus>) {
        let node = &mut self.nodes[i];
        let how = match &status {
            Ok(status) => status.to_string(),
            Err(err) => format!("wait failed: {err}"),
        };
        node.restart_delay = if node.restarted && node.started.elapsed() < STABLE_AFTER {
            (node.restart_delay * 2).min(MAX_RESTART_DELAY)
        } else {
            RESTART_DELAY
        };
        node.coming_back = false;
        node.restart_at = Some(Instant::now() + node.restart_delay);
        println!(
            "node {} exited unexpectedly ({how}); the other nodes keep running. \
             Restarting it in {} s (it loses only the usage it had not yet sent to the cluster).",
            node.id,
            node.restart_delay.as_secs()
        );
        // A crash has something to say; a kill -9 has not.
        if matches!(status, Ok(s) if s.code().is_some()) {
            report_tail(node);
        }
    }

    /// Starts every node whose restart is due.
    fn restart_due(&mut self) {
        let now = Instant::now();
        for node in &mut self.nodes {
            if node.restart_at.is_none_or(|at| at > now) {
                continue;
            }
            node.restart_at = None;
            match spawn(&self.exe, &self.dir, node.id, &node.log) {
                Ok(child) => {
                    let pid = child.id().map_or("?".to_string(), |p| p.to_string());
                    node.child = Some(child);
                    node.started = Instant::now();
                    node.restarted = true;
                    node.coming_back = true;
                    println!("node {} started again (pid {pid})", node.id);
                }
                Err(err) => {
                    node.restart_delay = (node.restart_delay * 2).min(MAX_RESTART_DELAY);
                    node.restart_at = Some(now + node.restart_delay);
                    eprintln!(
                        "node {}: {err:#}; trying again in {} s",
                        node.id,
                        node.restart_delay.as_secs()
                    );
                }
            }
        }
    }

    /// SIGTERM to every running node, up to [`STOP_GRACE`] for them to
    /// exit, then SIGKILL for the rest. Nothing is restarted after this.
    pub async fn stop_all(&mut self) {
        for node in &mut self.nodes {
            node.restart_at = None;
            // `id()` is `None` once the child was reaped: no stale pid is signalled.
            if let Some(pid) = node.pid().and_then(|pid| i32::try_from(pid).ok()) {
                if let Err(err) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
                    eprintln!("node {}: SIGTERM failed: {err}", node.id);
                }
            }
        }
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        while self.nodes.iter().any(|n| n.child.is_some()) {
            tokio::select! {
                _ = &mut grace => break,
                (i, status) = wait_any(&mut self.nodes) => {
                    if let Err(err) = status {
                        eprintln!("node {}: waiting for it failed: {err}", self.nodes[i].id);
                    }
                }
            }
        }
        for node in &mut self.nodes {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            eprintln!(
                "node {} did not stop within {}s; killing it",
                node.id,
                STOP_GRACE.as_secs()
            );
            if let Err(err) = child.start_kill() {
                eprintln!("node {}: SIGKILL failed: {err}", node.id);
            }
            if let Err(err) = child.wait().await {
                eprintln!("node {}: waiting for it failed: {err}", node.id);
            }
            node.child = None;
        }
    }
}

fn spawn(exe: &Path, dir: &Path, id: u64, log: &Path) -> anyhow::Result<Child> {
    let config_path = init::node_config(dir, id);
    let mut stdout = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
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
    Command::new(exe)
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
        })
}

/// The index and status of the next running child to exit (it is then no
/// longer running); never resolves when none is running.
async fn wait_any(nodes: &mut [Node]) -> (usize, std::io::Result<ExitStatus>) {
    let waits: Vec<_> = nodes
        .iter_mut()
        .enumerate()
        .filter_map(|(i, node)| node.child.as_mut().map(|child| (i, child)))
        .map(|(i, child)| child.wait().map(move |status| (i, status)).boxed())
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    let ((i, status), _, _) = select_all(waits).await;
    nodes[i].child = None;
    (i, status)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// After [`READY_POLL`], which of `urls` answer 200; never resolves when
/// there are none to ask.
async fn poll_ready(client: &reqwest::Client, urls: &[(usize, String)]) -> Vec<usize> {
    if urls.is_empty() {
        return std::future::pending().await;
    }
    tokio::time::sleep(READY_POLL).await;
    let mut ready = Vec::new();
    for (i, url) in urls {
        let ok = client
            .get(url)
            .send()
            .await
            .is_ok_and(|response| response.status() == reqwest::StatusCode::OK);
        if ok {
            ready.push(*i);
        }
    }
    ready
}

pub fn report_tail(node: &Node) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
