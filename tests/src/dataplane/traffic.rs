//! Client traffic that counts every answer: one thread per (node, kind of
//! call) sending model requests to that node's proxy back to back until
//! stopped, each answer read to its end and checked. Tests start it on the
//! nodes whose clients must see nothing, do something to the cluster, and
//! wait on the counts (never on the clock): "node 2 answered 50 more" is a
//! condition a proxy that waits on a dead leader never meets.
//!
//! ```no_run
//! # use sluice_e2e::dataplane::{Call, DataPlane, Traffic};
//! # use sluice_e2e::Cluster;
//! # let mut plane = DataPlane::start(Cluster::builder());
//! let traffic = Traffic::start(&plane.cluster, &plane.key, &[2, 3], &[Call::Chat, Call::ChatStream]);
//! traffic.wait_answered(&plane.cluster, 2, 10);
//! plane.cluster.kill9(1);
//! let report = traffic.stop();
//! assert!(report.failures.is_empty(), "{report:?}");
//! ```

use super::proxy::ProxyClient;
use super::GPT;
use crate::cluster::Cluster;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long [`Traffic::wait_answered`] waits for the counts to grow.
const ANSWER_BUDGET: Duration = Duration::from_secs(30);

/// A kind of request the traffic sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `POST /v1/chat/completions` on [`GPT`], whole answer: a 200 with a
    /// message.
    Chat,
    /// The same streamed: a 200 whose events end with `[DONE]`, no error
    /// event, no broken connection.
    ChatStream,
}

impl Call {
    fn body(self) -> Value {
        json!({
            "model": GPT,
            "stream": self == Call::ChatStream,
            "messages": [{"role": "user", "content": "one two three four five"}],
        })
    }

    /// Sends one request and checks the whole answer.
    fn once(self, proxy: &ProxyClient) -> Result<(), String> {
        let path = "/v1/chat/completions";
        match self {
            Call::Chat => {
                let reply = proxy.post(path, &self.body());
                let has_message = reply.body["choices"][0]["message"]["content"].is_string();
                if reply.status == 200 && has_message {
                    Ok(())
                } else {
                    Err(format!("{}: {}", reply.status, reply.text))
                }
            }
            Call::ChatStream => {
                let stream = proxy.try_stream(path, &self.body())?;
                let status = stream.status;
                let transcript = stream.read_to_end();
                let whole = transcript.read_error.is_none()
                    && transcript.ends_with_done()
                    && !transcript.events.iter().any(|e| e.is_error());
                if status == 200 && whole {
                    Ok(())
                } else {
                    Err(format!("{status}: {}", transcript.dump()))
                }
            }
        }
    }
}

/// What the traffic saw.
#[derive(Debug, Default, Clone)]
pub struct TrafficReport {
    /// Answers that passed their check, per node.
    pub answered: BTreeMap<u64, u64>,
    /// Every answer that did not: node, kind of call, why.
    pub failures: Vec<String>,
}

impl TrafficReport {
    pub fn total(&self) -> u64 {
        self.answered.values().sum()
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    report: Mutex<TrafficReport>,
}

impl Shared {
    fn report(&self) -> std::sync::MutexGuard<'_, TrafficReport> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Running traffic; stopped (and its threads joined) by [`Traffic::stop`]
/// or on drop.
pub struct Traffic {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// One thread per node of `nodes` and kind of `calls`, each sending to
    /// that node's proxy with `key`.
    pub fn start(cluster: &Cluster, key: &str, nodes: &[u64], calls: &[Call]) -> Traffic {
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for &node in nodes {
            shared.report().answered.insert(node, 0);
            for &call in calls {
                let proxy = ProxyClient::new(cluster.proxy_url(node), Some(key));
                let shared = Arc::clone(&shared);
                threads.push(std::thread::spawn(move || {
                    while !shared.stop.load(Ordering::Acquire) {
                        let outcome = call.once(&proxy);
                        let mut report = shared.report();
                        match outcome {
                            Ok(()) => *report.answered.entry(node).or_default() += 1,
                            Err(why) => report
                                .failures
                                .push(format!("node {node}, {call:?}: {why}")),
                        }
                    }
                }));
            }
        }
        Traffic { shared, threads }
    }

    /// Answers node `node` gave that passed their check, so far.
    pub fn answered(&self, node: u64) -> u64 {
        self.shared
            .report()
            .answered
            .get(&node)
            .copied()
            .unwrap_or(0)
    }

    /// What the traffic saw so far.
    pub fn report(&self) -> TrafficReport {
        self.shared.report().clone()
    }

    /// Waits (at most 30 s, within the cluster's budget) until node `node`
    /// has answered at least `at_least` requests in all; fails the test
    /// (with what was seen) if it does not.
    pub fn wait_answered(&self, cluster: &Cluster, node: u64, at_least: u64) {
        let waited = cluster
            .deadline()
            .within(ANSWER_BUDGET)
            .poll("", || self.answered(node) >= at_least);
        if waited.is_err() {
            cluster.fail(format!(
                "node {node} answered {} requests, not {at_least}, within {ANSWER_BUDGET:?}; traffic so far: {:?}",
                self.answered(node),
                self.report()
            ));
        }
    }

    /// Stops sending, waits for the requests in flight, and reports.
    pub fn stop(mut self) -> TrafficReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}
