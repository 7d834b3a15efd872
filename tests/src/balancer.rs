//! A client-side round-robin load balancer over a pool of proxies that
//! changes while traffic runs: what a test puts in front of a cluster to
//! add a node to the rotation, take it out, and know when it has drained.
//!
//! [`Balancer::start`] runs client threads, each sending one request after
//! another to the next proxy of the current pool (a `RwLock<Vec<…>>`);
//! plain requests must answer 200 with a JSON body, streams must end with
//! `data: [DONE]`, and anything else (another status, a transport error, a
//! cut stream) is a failure with the node and the reason. A request counts
//! as in flight on its node from the moment it is picked, under the pool's
//! read lock, so once [`Balancer::remove`] returns no new request can reach
//! the node and [`Balancer::in_flight`] only falls.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Per-request timeout of the balancer's clients.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One kind of client thread: a route, and whether it streams.
#[derive(Debug, Clone)]
pub struct Client {
    pub route: String,
    pub stream: bool,
}

/// A pool of proxies with traffic running through it (see the module doc).
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// `(node id, proxy base URL)` in rotation.
    pool: RwLock<Vec<(u64, String)>>,
    key: String,
    next: Mutex<usize>,
    in_flight: Mutex<BTreeMap<u64, u64>>,
    answered: Mutex<BTreeMap<u64, u64>>,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Balancer {
    /// Starts one thread per entry of `clients`, sending with `key` through
    /// `pool` (`(node id, proxy base URL)`).
    pub fn start(pool: Vec<(u64, String)>, key: &str, clients: &[Client]) -> Balancer {
        let shared = Arc::new(Shared {
            pool: RwLock::new(pool),
            key: key.to_string(),
            next: Mutex::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
            answered: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let threads = clients
            .iter()
            .cloned()
            .map(|client| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || shared.send_until_stopped(&client))
            })
            .collect();
        Balancer { shared, threads }
    }

    /// Puts node `id`'s proxy at `url` into the rotation.
    pub fn add(&self, id: u64, url: String) {
        self.shared.pool.write().expect("pool lock").push((id, url));
    }

    /// Takes node `id` out of the rotation: once this returns, no new
    /// request goes to it; those in flight go on.
    pub fn remove(&self, id: u64) {
        self.shared
            .pool
            .write()
            .expect("pool lock")
            .retain(|(member, _)| *member != id);
    }

    /// The node ids in rotation.
    pub fn pool(&self) -> Vec<u64> {
        let pool = self.shared.pool.read().expect("pool lock");
        pool.iter().map(|(id, _)| *id).collect()
    }

    /// Requests on node `id` not yet answered in full.
    pub fn in_flight(&self, id: u64) -> u64 {
        count(&self.shared.in_flight, id)
    }

    /// Requests node `id` answered in full (successes only).
    pub fn answered(&self, id: u64) -> u64 {
        count(&self.shared.answered, id)
    }

    /// Successes over every node.
    pub fn answered_total(&self) -> u64 {
        let answered = self.shared.answered.lock().expect("tally lock");
        answered.values().sum()
    }

    /// Failures so far, each with its node and reason.
    pub fn failures(&self) -> Vec<String> {
        self.shared.failures.lock().expect("tally lock").clone()
    }

    /// Stops the clients after their current request, joins them and
    /// returns every failure.
    pub fn stop(mut self) -> Vec<String> {
        self.halt();
        self.failures()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                eprintln!("a balancer client thread panicked");
            }
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn count(map: &Mutex<BTreeMap<u64, u64>>, id: u64) -> u64 {
    map.lock()
        .expect("tally lock")
        .get(&id)
        .copied()
        .unwrap_or(0)
}

impl Shared {
    /// The next node in rotation, already counted in flight.
    fn pick(&self) -> Option<(u64, String)> {
        let pool = self.pool.read().expect("pool lock");
        if pool.is_empty() {
            return None;
        }
        let mut next = self.next.lock().expect("rotation lock");
        let (id, url) = pool[*next % pool.len()].clone();
        *next = next.wrapping_add(1);
        *self
            .in_flight
            .lock()
            .expect("tally lock")
            .entry(id)
            .or_default() += 1;
        Some((id, url))
    }

    fn send_until_stopped(&self, client: &Client) {
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("building the HTTP client");
        let words = if client.stream { 20 } else { 3 };
        let body = json!({
            "model": client.route,
            "stream": client.stream,
            "messages": [{"role": "user", "content": vec!["word"; words].join(" ")}],
        });
        while !self.stop.load(Ordering::Relaxed) {
            let Some((id, url)) = self.pick() else {
                // An empty pool: nothing to send to until a node is added.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let outcome = send(&http, &url, &self.key, &body, client.stream);
            *self
                .in_flight
                .lock()
                .expect("tally lock")
                .entry(id)
                .or_default() -= 1;
            match outcome {
                Ok(()) => {
                    *self
                        .answered
                        .lock()
                        .expect("tally lock")
                        .entry(id)
                        .or_default() += 1
                }
                Err(why) => self
                    .failures
                    .lock()
                    .expect("tally lock")
                    .push(format!("node {id}: {why}")),
            }
        }
    }
}

/// One request, read to its end; `Err` says what was wrong with it.
fn send(
    http: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    body: &Value,
    stream: bool,
) -> Result<(), String> {
    let response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let text = response
        .text()
        .map_err(|e| format!("{status}, body cut: {e:?}"))?;
    let whole = if stream {
        text.contains("data: [DONE]")
    } else {
        serde_json::from_str::<Value>(&text).is_ok_and(|v| v["choices"].is_array())
    };
    if status == 200 && whole {
        Ok(())
    } else {
        Err(format!("{status}: {text}"))
    }
}
