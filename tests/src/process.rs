//! One child process whose stdout and stderr go to a log file, and which is
//! killed (SIGKILL) and reaped when dropped, whatever the test did.

use crate::deadline::Deadline;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Lines of a log shown when a test fails.
pub const LOG_TAIL_LINES: usize = 60;

/// A running (or exited, not yet forgotten) child.
#[derive(Debug)]
pub struct Process {
    name: String,
    log: PathBuf,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` with stdin closed and stdout + stderr appended to
    /// `log`, after a header line naming `name`.
    pub fn spawn(name: impl Into<String>, mut command: Command, log: &Path) -> Process {
        let name = name.into();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        writeln!(file, "===== {name}: {command:?}").expect("writing the log header");
        let stderr = file.try_clone().expect("cloning the log file handle");
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        Process {
            name,
            log: log.to_path_buf(),
            child,
            exited: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status, if the child has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Sends `signal` (no-op once the child has exited).
    pub fn signal(&mut self, signal: Signal) {
        if self.is_running() {
            let pid = Pid::from_raw(i32::try_from(self.pid()).expect("pid fits i32"));
            kill(pid, signal).unwrap_or_else(|e| panic!("sending {signal} to {}: {e}", self.name));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        // A stopped process dies of SIGKILL too; no SIGCONT needed.
        self.signal(Signal::SIGKILL);
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("reaping {}: {e}", self.name));
        self.exited = Some(status);
        status
    }

    /// Polls for the child's exit until `deadline`.
    pub fn wait_exit(&mut self, deadline: Deadline) -> Option<ExitStatus> {
        let _ = deadline.poll(format!("{} to exit", self.name), || {
            self.try_exit().is_some()
        });
        self.exited
    }

    /// SIGTERM (after SIGCONT, in case it is paused), then waits for the exit
    /// for at most `grace`; panics (after SIGKILL) if it did not exit.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        match self.wait_exit(Deadline::after(grace)) {
            Some(status) => status,
            None => {
                self.kill9();
                panic!(
                    "{} did not exit within {grace:?} of SIGTERM (killed it)\n{}",
                    self.name,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
        }
    }

    /// Everything the child wrote so far (all runs sharing the log file).
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// The last `lines` lines of the log, under a header naming the process.
    pub fn log_tail(&self, lines: usize) -> String {
        format_tail(&self.name, &self.log, lines)
    }
}

impl Drop for Process {
    /// SIGKILLs the child and, first, every live descendant it has (a
    /// `sluice dev` puts its nodes in their own process group: killing it
    /// alone would orphan them).
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            for pid in descendants_of(self.pid()) {
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a command that was run to completion produced.
#[derive(Debug)]
pub struct Completed {
    /// `None`: it was still running at the deadline (then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Completed {
    /// The exit code; panics (showing the output) if it was killed or timed out.
    pub fn code(&self) -> i32 {
        match self.status.and_then(|s| s.code()) {
            Some(code) => code,
            None => panic!("no exit code: {self}"),
        }
    }
}

impl std::fmt::Display for Completed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `command` (stdin closed) until it exits or `deadline` passes (then
/// it is killed), capturing stdout and stderr.
pub fn run_to_completion(mut command: Command, deadline: Deadline) -> Completed {
    let stdout = tempfile::tempfile().expect("a temporary file for stdout");
    let stderr = tempfile::tempfile().expect("a temporary file for stderr");
    command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("cloning a file handle"))
        .stderr(stderr.try_clone().expect("cloning a file handle"));
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let mut status = None;
    let _ = deadline.poll("", || {
        status = child.try_wait().expect("waiting for the child");
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Completed {
        status,
        stdout: read_all(stdout),
        stderr: read_all(stderr),
    }
}

fn read_all(mut file: std::fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .expect("rewinding a capture file");
    file.read_to_end(&mut bytes)
        .expect("reading a capture file");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A log file's text; empty when it does not exist yet.
pub fn read_log(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The last `lines` lines of the log at `path`, under a header.
pub fn format_tail(name: &str, path: &Path, lines: usize) -> String {
    let text = read_log(path);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!(
        "----- {name}: last {} of {} lines of {} -----\n{}\n",
        all.len() - from,
        all.len(),
        path.display(),
        all[from..].join("\n")
    )
}

/// Every pid listed in `/proc` (none if it cannot be read).
fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
        })
}

/// Pids of the live children of `parent`, read from `/proc`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for pid in all_pids() {
        if parent_of(pid) == Some(parent) {
            children.push(pid);
        }
    }
    children.sort_unstable();
    children
}

/// Every live descendant of `root` (children first, then theirs).
pub fn descendants_of(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(pid) = frontier.pop() {
        for child in children_of(pid) {
            if !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// The command line of `pid` (arguments joined by spaces), if it is alive.
pub fn cmdline_of(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Live processes whose command line contains `needle` (e.g. a test's
/// temporary directory), other than this one.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for pid in all_pids() {
        if pid == me || !is_alive(pid) {
            continue;
        }
        if let Some(cmdline) = cmdline_of(pid).filter(|c| c.contains(needle)) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The parent pid of `pid` from `/proc/<pid>/stat`, if it is alive (zombies
/// count as gone).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Whether `pid` is a live process (not a zombie).
pub fn is_alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}
