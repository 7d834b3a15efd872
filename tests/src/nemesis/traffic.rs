//! Proxied traffic on quota'd keys: one client per node sends chat
//! completions at a fixed pace with the current phase's key, and counts
//! what each phase's key was admitted.
//!
//! Each phase gets a fresh key with the same request limit, created while
//! the network is whole, so its bucket starts full at creation and the
//! ledger's promise for it is: admitted ≤ capacity + refill × T, T from the
//! key's creation to the last answer with it (DESIGN §5), across leader
//! changes, partitions and crashes. A request with no answer may have been
//! admitted: the count of what clients saw admitted is a lower bound of
//! what was, so a count above the bound is a definite violation.

use super::Shared;
use reqwest::blocking::Client;
use serde_json::json;
use sluice_raft::clock::{MAX_CREDIT_MS, SLEW_PER_MILLE};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The request limit of every phase's key: a bucket of `CAPACITY`,
/// refilled by `REFILL_PER_S` every second.
pub const CAPACITY: u64 = 20;
pub const REFILL_PER_S: u64 = 5;
/// Requests per second each node's client offers (several times the refill).
const RATE_PER_NODE: f64 = 8.0;
/// A proxied request with no answer by then is counted as unanswered.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One phase's key as the clients use it.
#[derive(Debug, Clone)]
pub struct PhaseKey {
    pub phase: usize,
    pub secret: String,
    /// When its creation was requested: its bucket was full then.
    pub created: Instant,
}

/// What one phase's key got.
#[derive(Debug, Clone, Default)]
pub struct QuotaTally {
    pub admitted: u64,
    /// 429: refused by the quota.
    pub limited: u64,
    /// 503: the quota could not be decided (no quorum, `deny`).
    pub undecided: u64,
    /// No answer, or another status.
    pub other: u64,
    /// When the key was created, and when its last answer came.
    pub created: Option<Instant>,
    pub last_answer: Option<Instant>,
}

impl QuotaTally {
    /// The ledger's bound for this key: capacity + refill × T, T in the
    /// ledger's time. That is the leader's stamps, which may run ahead of
    /// real time by the stamp clock's slew and credit while they catch up
    /// with a wall clock ahead of them (a clock jump of an earlier phase):
    /// so T is the test's real time with that slack added.
    pub fn bound(&self) -> u64 {
        match (self.created, self.last_answer) {
            (Some(from), Some(to)) => {
                let t = to.saturating_duration_since(from).as_secs_f64();
                let t = t * (1.0 + SLEW_PER_MILLE as f64 / 1000.0) + MAX_CREDIT_MS as f64 / 1000.0;
                CAPACITY + (REFILL_PER_S as f64 * t).floor() as u64
            }
            _ => CAPACITY,
        }
    }
}

/// The running clients; [`Traffic::stop`] ends them.
pub struct Traffic {
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The key in use (`None`: no traffic yet).
    current: Arc<Mutex<Option<PhaseKey>>>,
    tallies: Arc<Mutex<BTreeMap<usize, QuotaTally>>>,
}

impl Traffic {
    /// One client per planned node, sending to its proxy while the node
    /// is a member target, until [`Traffic::stop`].
    pub fn start(shared: Arc<Shared>) -> Traffic {
        let current: Arc<Mutex<Option<PhaseKey>>> = Arc::default();
        let tallies: Arc<Mutex<BTreeMap<usize, QuotaTally>>> = Arc::default();
        let threads = shared
            .proxy_urls
            .keys()
            .map(|&node| {
                let (shared, current, tallies) = (shared.clone(), current.clone(), tallies.clone());
                std::thread::Builder::new()
                    .name(format!("nemesis-traffic-{node}"))
                    .spawn(move || client(node, &shared, &current, &tallies))
                    .expect("spawning a traffic client")
            })
            .collect();
        Traffic {
            threads,
            shared,
            current,
            tallies,
        }
    }

    /// From now on the clients use `key`.
    pub fn use_key(&self, key: PhaseKey) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        tallies.entry(key.phase).or_default().created = Some(key.created);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// Stops the clients and returns each phase's tally.
    pub fn stop(mut self) -> BTreeMap<usize, QuotaTally> {
        self.halt();
        let tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        tallies.clone()
    }

    fn halt(&mut self) {
        super::stop_and_join(&self.shared.stop_traffic, self.threads.drain(..), "traffic");
    }
}

impl Drop for Traffic {
    /// The clients never outlive their traffic, even when a test fails.
    fn drop(&mut self) {
        self.halt();
    }
}

fn client(
    node: u64,
    shared: &Shared,
    current: &Mutex<Option<PhaseKey>>,
    tallies: &Mutex<BTreeMap<usize, QuotaTally>>,
) {
    let http = Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("building the HTTP client");
    let url = format!("{}/v1/chat/completions", shared.proxy_urls[&node]);
    let body = json!({"model": "gpt", "max_tokens": 4,
        "messages": [{"role": "user", "content": "nemesis"}]});
    let every = Duration::from_secs_f64(1.0 / RATE_PER_NODE);
    let mut next = Instant::now();
    while !shared.stop_traffic.load(Ordering::Relaxed) {
        // Load shaping, not synchronisation: an open-loop pace.
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else {
            next = Instant::now();
        }
        let key = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(key) = key else { continue };
        if !shared.is_target(node) {
            continue;
        }
        let status = match http.post(&url).bearer_auth(&key.secret).json(&body).send() {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        };
        let mut tallies = tallies.lock().unwrap_or_else(|e| e.into_inner());
        let tally = tallies.entry(key.phase).or_default();
        match status {
            200 => tally.admitted += 1,
            429 => tally.limited += 1,
            503 => tally.undecided += 1,
            _ => tally.other += 1,
        }
        tally.last_answer = Some(Instant::now());
    }
}
