//! Concurrent admin writers: creates, updates and deletes of routes and
//! keys, each object uniquely named, each attempt recorded in the
//! [`History`]. Writer `i` writes through the `i`-th member (wrapping
//! around), so writes go through every node, and a node that hangs (paused,
//! cut off) stalls only its own writers: a gap in acknowledgements
//! cluster-wide is the cluster's unavailability, not the clients'.
//!
//! A writer keeps a few live objects. It creates one, updates one (a
//! route's weight, a key's enabled flag) or deletes one, one request at a
//! time; after an ambiguous outcome it gives the object up (never writes
//! it again), so what may be in the final state is known exactly.

use super::history::{History, Kind, Op, Outcome, Record};
use super::Shared;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A write with no answer by then is ambiguous. Longer than a forwarded
/// write's own time-out, so most writes get the node's verdict.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two writes of one writer: load shaping, not waiting.
const PACE: Duration = Duration::from_millis(30);
/// Live objects a writer keeps at most.
const LIVE_MAX: usize = 3;

/// The provider every workload route deploys on.
pub const PROVIDER: &str = "mock-openai";

/// Running writer threads; [`Workload::stop`] ends them.
pub struct Workload {
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// An object a writer still writes.
struct Live {
    name: String,
    kind: Kind,
    /// A key's id (known once its creation was acknowledged).
    id: Option<String>,
}

struct Writer {
    index: usize,
    shared: Arc<Shared>,
    history: Arc<History>,
    http: Client,
    rng: StdRng,
    live: Vec<Live>,
    made: u64,
}

impl Workload {
    /// Starts `writers` threads writing until [`Workload::stop`].
    pub fn start(
        shared: Arc<Shared>,
        history: Arc<History>,
        writers: usize,
        seed: u64,
    ) -> Workload {
        let threads = (0..writers)
            .map(|index| {
                let mut writer = Writer {
                    index,
                    shared: shared.clone(),
                    history: history.clone(),
                    http: shared
                        .client()
                        .timeout(WRITE_TIMEOUT)
                        .connect_timeout(Duration::from_secs(1))
                        .build()
                        .expect("building the HTTP client"),
                    rng: StdRng::seed_from_u64(seed.wrapping_add(index as u64)),
                    live: Vec::new(),
                    made: 0,
                };
                std::thread::Builder::new()
                    .name(format!("nemesis-writer-{index}"))
                    .spawn(move || writer.run())
                    .expect("spawning a writer")
            })
            .collect();
        Workload { threads, shared }
    }

    /// Stops every writer after its current write and joins them.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        super::stop_and_join(&self.shared.stop_writers, self.threads.drain(..), "writer");
    }
}

impl Drop for Workload {
    /// The writers never outlive their workload, even when a test fails.
    fn drop(&mut self) {
        self.halt();
    }
}

impl Writer {
    fn run(&mut self) {
        while !self.shared.stop_writers.load(Ordering::Relaxed) {
            self.step();
            std::thread::sleep(PACE);
        }
    }

    fn step(&mut self) {
        let create = self.live.len() < 2 || (self.live.len() < LIVE_MAX && self.rng.gen_bool(0.3));
        if create {
            self.made += 1;
            let kind = if self.rng.gen_bool(0.5) {
                Kind::Route
            } else {
                Kind::Key
            };
            let prefix = match kind {
                Kind::Route => "nm-route",
                Kind::Key => "nm-key",
            };
            let name = format!("{prefix}-{}-{}", self.index, self.made);
            let value = match kind {
                Kind::Route => self.rng.gen_range(1..=10_000),
                Kind::Key => 1,
            };
            let (outcome, body) = self.send(kind, &name, None, Op::Create { value });
            match outcome {
                Outcome::Acked => {
                    let id = body["id"].as_str().map(str::to_string);
                    self.live.push(Live { name, kind, id });
                }
                Outcome::Failed(_) | Outcome::Ambiguous(_) => {}
            }
            return;
        }
        let at = self.rng.gen_range(0..self.live.len());
        let op = if self.rng.gen_bool(0.25) {
            Op::Delete
        } else {
            let value = match self.live[at].kind {
                Kind::Route => self.rng.gen_range(1..=10_000),
                Kind::Key => u32::from(self.rng.gen_bool(0.5)),
            };
            Op::Update { value }
        };
        let (name, kind, id) = {
            let live = &self.live[at];
            (live.name.clone(), live.kind, live.id.clone())
        };
        let (outcome, _) = self.send(kind, &name, id.as_deref(), op);
        let keep = matches!(outcome, Outcome::Acked | Outcome::Failed(_)) && op != Op::Delete;
        if !keep {
            self.live.swap_remove(at);
        }
    }

    /// Sends one write through this writer's node and records it.
    fn send(&mut self, kind: Kind, name: &str, id: Option<&str>, op: Op) -> (Outcome, Value) {
        let node = self.shared.target(self.index);
        let base = self.shared.admin_url(node);
        let phase = self.shared.phase.load(Ordering::Relaxed);
        let request = self.request(base, kind, name, id, op);
        let invoked = Instant::now();
        let (outcome, body) = classify(request.bearer_auth(&self.shared.token).send());
        self.history.push(Record {
            object: name.to_string(),
            kind,
            op,
            node,
            phase,
            invoked,
            completed: Instant::now(),
            outcome: outcome.clone(),
        });
        (outcome, body)
    }

    fn request(
        &self,
        base: &str,
        kind: Kind,
        name: &str,
        id: Option<&str>,
        op: Op,
    ) -> RequestBuilder {
        let deployments =
            |weight: u32| json!([{"provider": PROVIDER, "model": "mock-gpt", "weight": weight}]);
        match (kind, op) {
            (Kind::Route, Op::Create { value }) => self
                .http
                .post(format!("{base}/admin/v1/routes"))
                .json(&json!({"name": name, "deployments": deployments(value)})),
            (Kind::Route, Op::Update { value }) => self
                .http
                .put(format!("{base}/admin/v1/routes/{name}"))
                .json(&json!({"deployments": deployments(value)})),
            (Kind::Route, Op::Delete) => self.http.delete(format!("{base}/admin/v1/routes/{name}")),
            (Kind::Key, Op::Create { .. }) => self
                .http
                .post(format!("{base}/admin/v1/keys"))
                .json(&json!({"name": name})),
            (Kind::Key, Op::Update { value }) => {
                let id = id.expect("an acknowledged key has an id");
                let verb = if value == 1 { "enable" } else { "disable" };
                self.http.post(format!("{base}/admin/v1/keys/{id}/{verb}"))
            }
            (Kind::Key, Op::Delete) => {
                let id = id.expect("an acknowledged key has an id");
                self.http.delete(format!("{base}/admin/v1/keys/{id}"))
            }
        }
    }
}

/// A client's verdict on a write from its answer (see [`Outcome`]).
fn classify(result: reqwest::Result<reqwest::blocking::Response>) -> (Outcome, Value) {
    match result {
        Ok(response) => {
            let status = response.status();
            let text = response.text().unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let outcome = if status.is_success() {
                Outcome::Acked
            } else if status.is_client_error() {
                Outcome::Failed(format!("{status} {text}"))
            } else {
                Outcome::Ambiguous(format!("{status} {text}"))
            };
            (outcome, body)
        }
        // Refused before anything was sent: definitely not applied.
        Err(e) if e.is_connect() => (Outcome::Failed(format!("not sent: {e}")), Value::Null),
        Err(e) => (Outcome::Ambiguous(format!("no answer: {e}")), Value::Null),
    }
}
