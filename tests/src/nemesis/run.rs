//! The runner: starts the cluster, the mock upstream and the load, runs
//! each phase (its nemeses injected together, held, healed, then a write
//! must commit again), and hands the whole run to the [`checker`].
//!
//! [`checker`]: super::checker

use super::clock::FakedClock;
use super::fault::{Nemesis, Undo};
use super::history::History;
use super::monitor::Monitor;
use super::traffic::{PhaseKey, Traffic, CAPACITY, REFILL_PER_S};
use super::workload::{Workload, PROVIDER};
use super::Shared;
use crate::cluster::Cluster;
use crate::dataplane::MockLlm;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quota ticks and lease lives short enough that a cut-off or killed
/// node's leases run out within a phase (as in t95).
const QUOTA_CONFIG: &str = r#"
[quotas]
tick_ms = 100
lease_ttl_ms = 1000
"#;

/// How long a write may take to commit again after a phase is healed
/// before the run fails (a liveness failure).
pub const RECOVERY_BUDGET: Duration = Duration::from_secs(45);

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Voters the cluster starts with (ids `1..=voters`).
    pub voters: u64,
    /// Nodes planned beyond them, started only by [`Nemesis::Churn`].
    pub spares: u64,
    /// Each phase's nemeses, injected together.
    pub phases: Vec<Vec<Nemesis>>,
    /// How long each phase's faults last.
    pub hold: Duration,
    /// Healthy load before each phase's faults.
    pub calm: Duration,
    /// Admin writer threads.
    pub writers: usize,
    /// Seeds the writers' choices.
    pub seed: u64,
    /// Every node runs under a faked wall clock (libfaketime must be
    /// there), so that [`Nemesis::ClockJump`] can move any node's.
    pub faked_clocks: bool,
    /// Budget of the whole run.
    pub budget: Duration,
    /// Run the phases again and again, in order, until this much time has
    /// passed (a soak); `None`: once.
    pub repeat_for: Option<Duration>,
}

/// One phase as it ran.
#[derive(Debug, Clone)]
pub struct PhaseRecord {
    pub name: String,
    pub started: Instant,
    /// Faults in place.
    pub injected: Instant,
    /// Faults undone.
    pub healed: Instant,
    /// From healing to the first committed write.
    pub recovery: Duration,
}

/// A running suite (see the module doc).
pub struct Run {
    // Stopped before the cluster: the load threads, then the mock.
    workload: Option<Workload>,
    traffic: Option<Traffic>,
    monitor: Option<Monitor>,
    mock: MockLlm,
    pub cluster: Cluster,
    pub shared: Arc<Shared>,
    pub history: Arc<History>,
    /// The members now (voters and learners), running or not.
    pub members: Vec<u64>,
    /// Planned nodes not started yet.
    pub spares: Vec<u64>,
    /// Each node's faked clock (none without [`Plan::faked_clocks`]).
    pub clocks: std::collections::BTreeMap<u64, FakedClock>,
    pub phases: Vec<PhaseRecord>,
    http: Client,
    plan: Plan,
    /// Holds the faked clocks' offset files.
    _clock_dir: tempfile::TempDir,
}

impl Run {
    /// Starts the cluster (through a relay), the mock upstream, the
    /// standard provider and route, and the load.
    pub fn start(plan: Plan) -> Run {
        let clock_dir = tempfile::Builder::new()
            .prefix("sluice-nemesis-clock-")
            .tempdir()
            .expect("a temporary directory");
        let planned = plan.voters + plan.spares;
        let mut builder = Cluster::builder()
            .nodes(planned)
            .initial(plan.voters)
            .fast_elections()
            .with_relay()
            .config_extra(QUOTA_CONFIG)
            .budget(plan.budget);
        let library = FakedClock::library().filter(|_| plan.faked_clocks);
        let clocks: std::collections::BTreeMap<u64, FakedClock> = library
            .map(|library| {
                (1..=planned)
                    .map(|id| {
                        let file = clock_dir.path().join(format!("offset-{id}"));
                        (id, FakedClock::new(library.clone(), &file))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (id, clock) in &clocks {
            for (key, value) in clock.env() {
                builder = builder.node_env(*id, key, value);
            }
        }
        let cluster = builder.start();
        let mock = MockLlm::start(&cluster.root().join("mock-llm.log"), cluster.deadline());
        let members: Vec<u64> = (1..=plan.voters).collect();
        let shared = Arc::new(Shared::new(
            cluster.token().to_string(),
            cluster
                .ids()
                .into_iter()
                .map(|id| (id, cluster.admin_url(id)))
                .collect(),
            cluster
                .ids()
                .into_iter()
                .map(|id| (id, cluster.proxy_url(id)))
                .collect(),
            cluster.ca_cert(),
            members.clone(),
        ));
        let run_ca = shared.ca.clone();
        let mut run = Run {
            workload: None,
            traffic: None,
            monitor: None,
            mock,
            cluster,
            shared,
            history: Arc::default(),
            members,
            spares: (plan.voters + 1..=planned).collect(),
            clocks,
            phases: Vec::new(),
            http: crate::admin::trusting(Client::builder(), &run_ca)
                .timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(1))
                .build()
                .expect("building the HTTP client"),
            plan,
            _clock_dir: clock_dir,
        };
        let provider = json!({"name": PROVIDER, "kind": "openai", "base_url": run.mock.v1()});
        run.write("/admin/v1/providers", &provider, Duration::from_secs(30));
        let route = json!({"name": "gpt",
            "deployments": [{"provider": PROVIDER, "model": "mock-gpt", "weight": 1}]});
        run.write("/admin/v1/routes", &route, Duration::from_secs(30));
        run.monitor = Some(Monitor::start(run.shared.clone()));
        run.workload = Some(Workload::start(
            run.shared.clone(),
            run.history.clone(),
            run.plan.writers,
            run.plan.seed,
        ));
        run.traffic = Some(Traffic::start(run.shared.clone()));
        run
    }

    /// Runs every phase of the plan in order (again and again, for
    /// [`Plan::repeat_for`]).
    pub fn run_phases(&mut self) {
        let started = Instant::now();
        let over = |repeat_for: Option<Duration>| repeat_for.is_none_or(|d| started.elapsed() >= d);
        loop {
            for nemeses in self.plan.phases.clone() {
                if self.plan.repeat_for.is_some() && over(self.plan.repeat_for) {
                    return;
                }
                self.phase(&nemeses);
            }
            if over(self.plan.repeat_for) {
                return;
            }
        }
    }

    /// One phase: a fresh quota'd key, calm load, the faults, healing,
    /// and a committed write.
    pub fn phase(&mut self, nemeses: &[Nemesis]) {
        let index = self.phases.len();
        let started = Instant::now();
        self.shared.phase.store(index, Ordering::Relaxed);
        let created = Instant::now();
        let key = json!({"name": format!("nm-quota-{index}"),
            "limits": [{"unit": "requests", "capacity": CAPACITY,
                "refill_amount": REFILL_PER_S, "refill_every_ms": 1000}]});
        let made = self.write("/admin/v1/keys", &key, Duration::from_secs(30));
        let secret = made["key"].as_str().expect("a created key has its secret");
        self.traffic().use_key(PhaseKey {
            phase: index,
            secret: secret.to_string(),
            created,
        });
        // Load shaping: the phase starts from a cluster under steady load.
        std::thread::sleep(self.plan.calm);
        let mut names = Vec::new();
        let mut undos = Vec::new();
        for nemesis in nemeses {
            let (name, undo) = self.inject(nemesis);
            eprintln!("NEMESIS phase {index}: {name}");
            names.push(name);
            undos.push(undo);
        }
        let injected = Instant::now();
        // The faults last this long while the load runs: not a wait for
        // anything, the length of the experiment.
        std::thread::sleep(self.plan.hold);
        // Network, clocks and pauses first: restarted nodes must find
        // their peers.
        undos.sort_by_key(Undo::order);
        for undo in undos {
            self.heal(undo);
        }
        let healed = Instant::now();
        self.write(
            "/admin/v1/providers",
            &json!({"name": format!("nm-probe-{index}"), "kind": "openai",
                "base_url": "http://127.0.0.1:9/v1"}),
            RECOVERY_BUDGET,
        );
        let recovery = healed.elapsed();
        eprintln!(
            "NEMESIS phase {index}: healed; a write committed {:.1} s later",
            recovery.as_secs_f64()
        );
        self.phases.push(PhaseRecord {
            name: names.join(" + "),
            started,
            injected,
            healed,
            recovery,
        });
    }

    /// Stops the load (writers, traffic, monitor), in that order, and
    /// returns each phase's quota tally and the monitor's terms.
    pub fn stop_load(
        &mut self,
    ) -> (
        std::collections::BTreeMap<usize, super::traffic::QuotaTally>,
        super::monitor::Terms,
    ) {
        self.shared
            .phase
            .store(self.phases.len(), Ordering::Relaxed);
        if let Some(workload) = self.workload.take() {
            workload.stop();
        }
        let tallies = self.traffic.take().map(Traffic::stop).unwrap_or_default();
        let terms = self.monitor.take().map(Monitor::stop).unwrap_or_default();
        (tallies, terms)
    }

    fn traffic(&self) -> &Traffic {
        self.traffic.as_ref().expect("the traffic runs")
    }

    /// POSTs `body` to `path` through the members in turn until one
    /// acknowledges it (2xx, or 409 once an earlier attempt may have
    /// committed), within `budget`; fails the run otherwise. Returns the body.
    pub fn write(&self, path: &str, body: &Value, budget: Duration) -> Value {
        let mut attempts = 0usize;
        let mut last = String::new();
        let mut answer = Value::Null;
        let done = self.cluster.deadline().within(budget).poll("", || {
            let node = self.members[attempts % self.members.len()];
            attempts += 1;
            let url = format!("{}{path}", self.cluster.admin_url(node));
            match self
                .http
                .post(&url)
                .bearer_auth(self.cluster.token())
                .json(body)
                .send()
            {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().unwrap_or_default();
                    last = format!("node {node}: {status} {text}");
                    if status.is_success() {
                        answer = serde_json::from_str(&text).unwrap_or(Value::Null);
                        return true;
                    }
                    if status.as_u16() == 409 && attempts > 1 {
                        return true;
                    }
                    assert!(
                        status.is_server_error(),
                        "POST {path} {body}: unexpected answer {last}"
                    );
                    false
                }
                Err(e) => {
                    last = format!("node {node}: {e}");
                    false
                }
            }
        });
        if done.is_err() {
            self.cluster.fail(format!(
                "POST {path}: not acknowledged within {budget:?} after {attempts} attempts; last answer {last}"
            ));
        }
        answer
    }

    /// The members that run and are not paused.
    pub fn running_members(&self) -> Vec<u64> {
        let running = self.cluster.running_ids();
        self.members
            .iter()
            .copied()
            .filter(|id| running.contains(id))
            .collect()
    }

    /// The leader: a running member that says it leads and that a majority
    /// of the members name. Waits up to 20 s for one.
    pub fn leader(&self) -> u64 {
        let members = self.members.clone();
        let running = self.running_members();
        self.cluster.wait_for(
            Duration::from_secs(20),
            format!("a leader among members {members:?}"),
            || {
                let statuses: Vec<(u64, Value)> = running
                    .iter()
                    .filter_map(|&id| Some((id, self.cluster.status(id)?)))
                    .collect();
                statuses.iter().find_map(|(id, status)| {
                    let leads =
                        status["state"] == "leader" && status["leader_id"].as_u64() == Some(*id);
                    let naming = statuses
                        .iter()
                        .filter(|(_, s)| s["leader_id"].as_u64() == Some(*id))
                        .count();
                    (leads && naming * 2 > members.len()).then_some(*id)
                })
            },
        )
    }

    /// A running member other than the leader (and other than `not`).
    pub fn follower(&self, not: &[u64]) -> u64 {
        let leader = self.leader();
        self.running_members()
            .into_iter()
            .find(|id| *id != leader && !not.contains(id))
            .unwrap_or_else(|| self.cluster.fail("no running follower"))
    }

    /// The HTTP client the runner and checker share.
    pub fn http(&self) -> &Client {
        &self.http
    }
}
