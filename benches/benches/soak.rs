//! Leader stability under full load: a 3-node cluster with the shipped
//! election settings (or `SLUICE_SOAK_RAFT=heartbeat,min,max` in ms), every
//! node's proxy loaded with model traffic for
//! `SLUICE_SOAK_SECS` (default 600) by `SLUICE_SOAK_CONCURRENCY` (default
//! 64) clients sending back to back, round-robin over the three proxies, on
//! a key with a quota that never refuses at this load (so every request goes
//! through admission and the lease rounds commit all the while). The
//! generator, the mock provider and the three nodes share the machine, so
//! on 2 cores both are busy throughout.
//!
//! Beside the load a watcher reads every node's term and leader four times
//! a second. The figure is the number of elections (term changes) and of
//! leader changes over the run, with the election attempts the nodes' failure
//! detectors made (`sluice_raft_election_attempts_total`: how often a
//! follower's timer ran out, and how often a majority agreed the leader was
//! gone), how long the nodes were not scheduled at all
//! (`sluice_raft_stalled_seconds_total`), the requests answered and failed,
//! and how busy the CPUs were.

use bytes::Bytes;
use sluice_benches::cluster::{self, KeyQuota};
use sluice_benches::env_count;
use sluice_benches::load::{run_closed_loop, ClosedLoop, Workload};
use sluice_benches::mock::start_mock;
use sluice_e2e::dataplane::metric_value;
use sluice_e2e::{Cluster, ProxyClient};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BODY: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hello"}]}"#;
/// Threads of the generator's runtime: one per core of the bench machine.
const GENERATOR_THREADS: usize = 2;
/// How often the watcher reads every node's status.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// What the watcher saw over the run.
#[derive(Debug, Default)]
struct Watched {
    /// Per node: the first and the last term it reported.
    terms: BTreeMap<u64, (u64, u64)>,
    /// The leader as each read saw it (the most common answer), in order,
    /// with repeats folded.
    leaders: Vec<u64>,
    /// Status reads that got no answer.
    unanswered: u64,
    reads: u64,
}

impl Watched {
    fn elections(&self) -> u64 {
        self.terms
            .values()
            .map(|(first, last)| last.saturating_sub(*first))
            .max()
            .unwrap_or(0)
    }

    fn leader_changes(&self) -> usize {
        self.leaders.len().saturating_sub(1)
    }

    fn read(&mut self, cluster: &Cluster) {
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for id in cluster.ids() {
            self.reads += 1;
            let Some(status) = cluster.status(id) else {
                self.unanswered += 1;
                continue;
            };
            if let Some(term) = status["term"].as_u64() {
                let entry = self.terms.entry(id).or_insert((term, term));
                entry.1 = entry.1.max(term);
            }
            if let Some(leader) = status["leader_id"].as_u64() {
                *seen.entry(leader).or_default() += 1;
            }
        }
        if let Some((&leader, _)) = seen.iter().max_by_key(|(_, n)| **n) {
            if self.leaders.last() != Some(&leader) {
                self.leaders.push(leader);
            }
        }
    }
}

/// `sluice_raft_election_attempts_total` by outcome and
/// `sluice_raft_stalled_seconds_total` (as `stalled`), summed over the
/// nodes.
fn detector_counts(cluster: &Cluster) -> BTreeMap<&'static str, f64> {
    let mut sums = BTreeMap::new();
    for id in cluster.ids() {
        let text = ProxyClient::new(cluster.proxy_url(id), None)
            .get("/metrics")
            .text;
        for outcome in ["campaigned", "no_majority"] {
            let value = metric_value(
                &text,
                "sluice_raft_election_attempts_total",
                &[("outcome", outcome)],
            )
            .unwrap_or(0.0);
            *sums.entry(outcome).or_insert(0.0) += value;
        }
        let stalled = metric_value(&text, "sluice_raft_stalled_seconds_total", &[]).unwrap_or(0.0);
        *sums.entry("stalled").or_insert(0.0) += stalled;
    }
    sums
}

/// Busy and total CPU ticks of the whole machine, from `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait.
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The election settings the nodes run with: the shipped ones, or
/// `SLUICE_SOAK_RAFT=heartbeat,min,max` (milliseconds), e.g. `100,400,800`
/// to measure a build whose defaults were those.
struct Timing {
    toml: String,
    label: String,
}

fn raft_timing() -> Timing {
    let given = std::env::var("SLUICE_SOAK_RAFT").unwrap_or_default();
    let ms: Vec<u64> = given
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    match ms.as_slice() {
        [heartbeat, min, max] => Timing {
            toml: format!(
                "[raft]\nheartbeat_interval_ms = {heartbeat}\nelection_timeout_min_ms = {min}\nelection_timeout_max_ms = {max}\n"
            ),
            label: format!("heartbeat {heartbeat} ms, election timeout {min}-{max} ms"),
        },
        _ => Timing {
            toml: String::new(),
            label: "shipped election settings (RaftTiming::default())".to_string(),
        },
    }
}

fn main() {
    let secs = env_count("SLUICE_SOAK_SECS", 600) as u64;
    let concurrency = env_count("SLUICE_SOAK_CONCURRENCY", 64);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mock, mock_addr) = start_mock(dir.path());
    let timing = raft_timing();
    let started = cluster::start_for(
        3,
        mock_addr,
        KeyQuota::NeverRefusing,
        Duration::from_secs(secs + 300),
        &timing.toml,
    );
    let cluster = &started.cluster;
    let leader_before = cluster.leader();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(GENERATOR_THREADS)
        .enable_all()
        .build()
        .expect("the generator's runtime");
    let workload = Workload {
        endpoints: started.endpoints.clone(),
        path: "/v1/chat/completions".to_string(),
        body: Bytes::from_static(BODY.as_bytes()),
        request_timeout: Duration::from_secs(30),
    };
    let plan = ClosedLoop {
        concurrency,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(secs),
    };
    let load_at_start = load_average();
    let counts_before = detector_counts(cluster);
    let cpu_before = cpu_ticks();
    let began = Instant::now();
    eprintln!(
        "soak: {secs} s, {concurrency} clients over 3 nodes (leader {leader_before}), load average {load_at_start}"
    );
    let done = AtomicBool::new(false);
    let (outcome, watched) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut watched = Watched::default();
            while !done.load(Ordering::Acquire) {
                let next = Instant::now() + WATCH_EVERY;
                watched.read(cluster);
                // A sampling period, not a synchronisation.
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            watched.read(cluster);
            watched
        });
        let outcome = runtime.block_on(run_closed_loop(&workload, plan));
        done.store(true, Ordering::Release);
        (outcome, watcher.join().expect("the watcher panicked"))
    });
    let elapsed = began.elapsed();
    let cpu = match (cpu_before, cpu_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            format!("{:.0}%", 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64)
        }
        _ => "unknown".to_string(),
    };
    let counts_after = detector_counts(cluster);
    let grew = |outcome: &str| {
        counts_after.get(outcome).copied().unwrap_or(0.0)
            - counts_before.get(outcome).copied().unwrap_or(0.0)
    };
    let report = outcome.report();
    println!(
        "soak, 3 nodes, {}, {concurrency} clients, quota on",
        timing.label
    );
    println!(
        "duration {:.0} s (measured {:.0} s); machine CPU busy {cpu} (all cores); load average at start {load_at_start}, at end {}",
        elapsed.as_secs_f64(),
        secs,
        load_average()
    );
    println!(
        "requests: {} answered, {} failed, {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
        report.answered,
        report.errors,
        report.rate,
        report.p50_us as f64 / 1000.0,
        report.p99_us as f64 / 1000.0
    );
    println!(
        "elections (term changes): {}; leader changes: {} (leaders seen in order: {:?})",
        watched.elections(),
        watched.leader_changes(),
        watched.leaders
    );
    println!(
        "election timers run out: {} (campaigned {}, stopped by the pre-vote {}); nodes stalled {:.1} s in all; status reads {} ({} unanswered)",
        grew("campaigned") + grew("no_majority"),
        grew("campaigned"),
        grew("no_majority"),
        grew("stalled"),
        watched.reads,
        watched.unanswered
    );
    drop(mock);
}
