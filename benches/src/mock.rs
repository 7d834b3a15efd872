//! The mock model provider every real-process bench puts behind Sluice:
//! `sluice mock-llm` on a port picked at start, its log in the bench's
//! temporary directory.

use sluice_e2e::process::Process;
use sluice_e2e::{sluice_bin, Deadline};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Starts the mock with its log in `dir`; returns it and where it listens.
pub fn start_mock(dir: &Path) -> (Process, SocketAddr) {
    let log = dir.join("mock-llm.log");
    let mut command = Command::new(sluice_bin());
    command.args(["mock-llm", "--listen", "127.0.0.1:0"]);
    let mut mock = Process::spawn("mock-llm", command, &log);
    let addr = Deadline::after(Duration::from_secs(20)).wait_for("the mock to listen", || {
        assert!(mock.is_running(), "the mock exited\n{}", mock.log_tail(20));
        mock.log_text()
            .lines()
            .find_map(|line| line.strip_prefix("mock model provider on http://"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
    });
    (mock, addr)
}
