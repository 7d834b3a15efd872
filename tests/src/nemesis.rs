//! The nemesis suite's harness, in the style of Jepsen and etcd's
//! robustness tests: a real cluster under a workload of concurrent admin
//! writes through every node and proxied traffic on quota'd keys, while
//! nemeses (kill -9, whole-cluster crash, SIGSTOP, partitions, delay and
//! loss, clock jumps, membership churn) run in turn and together; after
//! healing, a checker compares what every node holds with what clients
//! were told.
//!
//! ```text
//!  writers ──admin writes──▶ every node ◀──proxied requests── traffic (quota'd key per phase)
//!  monitor ──GET /admin/v1/cluster every 100 ms──▶ every node  (terms and leaders)
//!  runner: phase 1 … phase n (inject, hold, heal, wait for a write to commit) → checker → table
//! ```
//!
//! # Layout
//! * [`history`]: every attempted write and how it ended.
//! * [`workload`]: the admin writers.
//! * [`traffic`]: proxied traffic and each phase's quota tally.
//! * [`monitor`]: samples of every node's term, state and leader.
//! * [`clock`]: a node's wall clock faked with libfaketime.
//! * [`fault`]: the nemeses: what each breaks and how it is healed.
//! * [`run`]: the runner: setup, phases, final healing.
//! * [`checker`]: the checks after healing.
//! * [`report`]: the table per nemesis.

pub mod checker;
pub mod clock;
pub mod fault;
pub mod history;
pub mod monitor;
pub mod report;
pub mod run;
pub mod traffic;
pub mod workload;

pub use fault::{Nemesis, Role};
pub use run::{Plan, Run};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// What the runner shares with the writer, traffic and monitor threads.
#[derive(Debug)]
pub struct Shared {
    pub token: String,
    /// Every planned node's admin base URL.
    pub admin_urls: BTreeMap<u64, String>,
    /// Every planned node's proxy base URL.
    pub proxy_urls: BTreeMap<u64, String>,
    /// The cluster's CA certificate, trusted for the admin API's HTTPS.
    pub ca: std::path::PathBuf,
    /// The nodes writes and traffic go to: the members (running or not).
    targets: Mutex<Vec<u64>>,
    /// Index of the phase running now.
    pub phase: AtomicUsize,
    pub stop_writers: AtomicBool,
    pub stop_traffic: AtomicBool,
    pub stop_monitor: AtomicBool,
}

impl Shared {
    pub fn new(
        token: String,
        admin_urls: BTreeMap<u64, String>,
        proxy_urls: BTreeMap<u64, String>,
        ca: std::path::PathBuf,
        targets: Vec<u64>,
    ) -> Shared {
        Shared {
            token,
            admin_urls,
            proxy_urls,
            ca,
            targets: Mutex::new(targets),
            phase: AtomicUsize::new(0),
            stop_writers: AtomicBool::new(false),
            stop_traffic: AtomicBool::new(false),
            stop_monitor: AtomicBool::new(false),
        }
    }

    /// The `i`-th target (wrapping around).
    pub fn target(&self, i: usize) -> u64 {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets[i % targets.len()]
    }

    pub fn is_target(&self, id: u64) -> bool {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.contains(&id)
    }

    pub fn set_targets(&self, ids: Vec<u64>) {
        assert!(!ids.is_empty(), "no target left");
        *self.targets.lock().unwrap_or_else(|e| e.into_inner()) = ids;
    }

    pub fn admin_url(&self, id: u64) -> &str {
        &self.admin_urls[&id]
    }

    /// A blocking client builder trusting the cluster's CA.
    pub fn client(&self) -> reqwest::blocking::ClientBuilder {
        crate::admin::trusting(reqwest::blocking::Client::builder(), &self.ca)
    }
}

/// Raises `stop` and joins `threads` (the load's threads, stopped by
/// their owner, on drop too). A thread that panicked fails the test,
/// unless the test is already failing.
fn stop_and_join(stop: &AtomicBool, threads: impl IntoIterator<Item = JoinHandle<()>>, what: &str) {
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        if thread.join().is_err() && !std::thread::panicking() {
            panic!("a {what} thread panicked");
        }
    }
}
