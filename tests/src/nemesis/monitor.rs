//! Watches every node's own view of Raft (`GET /admin/v1/cluster`: term,
//! state, leader) every [`SAMPLE_EVERY`], for the check that no term ever
//! had two leaders: no two nodes may claim leadership of one term, and no
//! two nodes may name different leaders for one term.
//!
//! It samples: a leadership that lasts less than a sample is not seen. The
//! nodes log no leadership changes to read instead.

use super::Shared;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often every node is asked.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What the samples say about each term.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    /// Nodes that said they were the leader, by term.
    pub claimed: BTreeMap<u64, BTreeSet<u64>>,
    /// Leaders named by any node (its `leader_id`), by term.
    pub named: BTreeMap<u64, BTreeSet<u64>>,
    /// Samples taken (answers received).
    pub samples: u64,
}

impl Terms {
    /// Terms with more than one leader, claimed or named, and who.
    pub fn conflicts(&self) -> Vec<(u64, BTreeSet<u64>)> {
        let mut all: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for (term, ids) in self.claimed.iter().chain(&self.named) {
            all.entry(*term).or_default().extend(ids);
        }
        all.into_iter().filter(|(_, ids)| ids.len() > 1).collect()
    }

    fn note(&mut self, status: &Value) {
        let (Some(node), Some(term)) = (status["node_id"].as_u64(), status["term"].as_u64()) else {
            return;
        };
        self.samples += 1;
        if status["state"] == "leader" {
            self.claimed.entry(term).or_default().insert(node);
        }
        if let Some(leader) = status["leader_id"].as_u64() {
            self.named.entry(term).or_default().insert(leader);
        }
    }
}

/// The sampling thread; [`Monitor::stop`] ends it.
pub struct Monitor {
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    terms: Arc<Mutex<Terms>>,
}

impl Monitor {
    pub fn start(shared: Arc<Shared>) -> Monitor {
        let terms: Arc<Mutex<Terms>> = Arc::default();
        let thread = {
            let (shared, terms) = (shared.clone(), terms.clone());
            std::thread::Builder::new()
                .name("nemesis-monitor".into())
                .spawn(move || watch(&shared, &terms))
                .expect("spawning the monitor")
        };
        Monitor {
            thread: Some(thread),
            shared,
            terms,
        }
    }

    /// What was seen so far.
    pub fn terms(&self) -> Terms {
        self.terms.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stop(mut self) -> Terms {
        self.halt();
        self.terms()
    }

    fn halt(&mut self) {
        super::stop_and_join(&self.shared.stop_monitor, self.thread.take(), "monitor");
    }
}

impl Drop for Monitor {
    /// The sampling thread never outlives its monitor, even when a test fails.
    fn drop(&mut self) {
        self.halt();
    }
}

fn watch(shared: &Shared, terms: &Mutex<Terms>) {
    let http = shared
        .client()
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("building the HTTP client");
    while !shared.stop_monitor.load(Ordering::Relaxed) {
        for base in shared.admin_urls.values() {
            let answer = http
                .get(format!("{base}/admin/v1/cluster"))
                .bearer_auth(&shared.token)
                .send()
                .and_then(|r| r.json::<Value>());
            if let Ok(status) = answer {
                terms
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .note(&status);
            }
        }
        // Sampling pace, not synchronisation.
        std::thread::sleep(SAMPLE_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn two_leaders_in_one_term_are_a_conflict_and_successive_terms_are_not() {
        let mut terms = Terms::default();
        terms.note(&json!({"node_id": 1, "term": 3, "state": "leader", "leader_id": 1}));
        terms.note(&json!({"node_id": 2, "term": 3, "state": "follower", "leader_id": 1}));
        terms.note(&json!({"node_id": 2, "term": 4, "state": "leader", "leader_id": 2}));
        assert!(terms.conflicts().is_empty());
        terms.note(&json!({"node_id": 3, "term": 4, "state": "follower", "leader_id": 3}));
        assert_eq!(terms.conflicts(), vec![(4, BTreeSet::from([2, 3]))]);
    }
}
