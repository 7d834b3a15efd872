//! Horizontal scale-out: does adding nodes add capacity, and what does a
//! node cost the cluster when nothing happens?
//!
//! **Throughput.** For each node count `k` in `SLUICE_BENCH_NODES` (default
//! `1,2,3,5`): a fresh cluster of `min(k, 3)` voters and `k - 3` learners
//! beyond that (added as an operator would, each waiting until it serves),
//! a provider on the mock, route `mock-gpt` and a key; every node's process
//! capped at `SLUICE_BENCH_NODE_CPU` CPUs (default 0.2) with the cgroup cpu
//! controller ([`CpuCaps`]); nginx round robin in front of the `k` proxies.
//! Through nginx: the maximum throughput of `SLUICE_BENCH_CONCURRENCY`
//! (default 64) clients back to back (with its p50 and p99), then a fixed
//! rate of `k × rps(1) / 2` (half of what `k` nodes would take if each did
//! as much as one alone) for its latency percentiles. Efficiency is
//! `rps(k) / (k × rps(1))`. The mock, nginx and the generator are not
//! capped: the CPU each used is printed beside the figures, with how often
//! the nodes' caps held them back (a node that is never throttled is not
//! the bottleneck). `SLUICE_BENCH_QUOTA`: `off` (default, the key has no
//! quota), `on` (rpm and tpm of 10⁹: every request admitted against the
//! nodes' lease pools) or `both`.
//!
//! **Background cost.** One cluster of 3 voters, grown with learners to each
//! size in `SLUICE_BENCH_IDLE_NODES` (default `3,5,9`), with
//! `SLUICE_BENCH_KEYS` (default 1 000) keys that each have a quota (rpm and
//! tpm), and no traffic. After the cluster settles (its log has not grown
//! for 3 s, or 60 s have passed), for `SLUICE_BENCH_IDLE_SECS` (default
//! 10): Raft entries appended per second (the fastest-growing node's log),
//! the bytes the nodes sent each other (the UDP payloads of their QUIC
//! connections, counted by a relay every node talks to its peers through:
//! `sluice_e2e::Relay`), and each node's CPU from `/proc/<pid>/stat`
//! (uncapped). These nodes are not capped.
//!
//! Needs root and the cgroup cpu controller (v2, or v1's cpu hierarchy)
//! for the throughput part, and nginx (installed with apt-get when missing
//! and root); without them that part is skipped with the reason, and the
//! background cost is still measured. `SLUICE_BENCH_SECS` (default 10) is
//! each measured run, after a 2 s warm-up. Prints markdown tables and
//! writes JSON to `<target dir>/bench-scale-out.json`
//! (`SLUICE_BENCH_JSON` to choose).

use serde_json::{json, Value};
use sluice_benches::cgroup::{CpuCaps, Throttling, PERIOD_US};
use sluice_benches::cluster::{
    self, chat_workload, KeyQuota, Nodes, CHAT_BODY as BODY, CHAT_PATH as PATH,
};
use sluice_benches::host::{cpu_ticks, load_average, measure_cpu, percent_of_core};
use sluice_benches::load::{
    self, probe, run_closed_loop, run_fixed_rate, ClosedLoop, Endpoint, FixedRate, Report, Workload,
};
use sluice_benches::mock::start_mock;
use sluice_benches::nginx::Nginx;
use sluice_benches::{env_count, env_list, write_results};
use sluice_e2e::{Cluster, Deadline};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Threads of the generator's runtime: one per core of the bench machine.
const GENERATOR_THREADS: usize = 2;
/// nginx's `worker_processes`.
const NGINX_WORKERS: &str = "auto";
/// Voters of every cluster; nodes beyond are learners.
const VOTERS: u64 = 3;
/// The fixed-rate run's share of `k × rps(1)`.
const FIXED_SHARE: f64 = 0.5;
/// The idle cluster has settled when its log has not grown for this long.
const SETTLED_AFTER: Duration = Duration::from_secs(3);
const SETTLE_BUDGET: Duration = Duration::from_secs(60);

struct Settings {
    load_average: String,
    nodes: Vec<u64>,
    node_cpu: f64,
    quotas: Vec<KeyQuota>,
    secs: u64,
    warmup: Duration,
    concurrency: usize,
    idle_nodes: Vec<u64>,
    keys: usize,
    idle_secs: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let list = |name: &str, default: &[u64]| -> Vec<u64> {
            let mut list = env_list(name, default);
            list.sort_unstable();
            list.dedup();
            list
        };
        let quotas = match std::env::var("SLUICE_BENCH_QUOTA").as_deref() {
            Ok("on") => vec![KeyQuota::NeverRefusing],
            Ok("both") => vec![KeyQuota::None, KeyQuota::NeverRefusing],
            _ => vec![KeyQuota::None],
        };
        Settings {
            load_average: load_average(),
            nodes: list("SLUICE_BENCH_NODES", &[1, 2, 3, 5]),
            node_cpu: std::env::var("SLUICE_BENCH_NODE_CPU")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|c| *c > 0.0)
                .unwrap_or(0.2),
            quotas,
            secs: env_count("SLUICE_BENCH_SECS", 10) as u64,
            warmup: Duration::from_secs(2),
            concurrency: env_count("SLUICE_BENCH_CONCURRENCY", 64),
            idle_nodes: list("SLUICE_BENCH_IDLE_NODES", &[3, 5, 9]),
            keys: env_count("SLUICE_BENCH_KEYS", 1000),
            idle_secs: env_count("SLUICE_BENCH_IDLE_SECS", 10) as u64,
        }
    }
}

/// Percent of one core over a run (200% is the whole 2-core machine).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    nodes: f64,
    nginx: f64,
    mock: f64,
    generator: f64,
    /// The machine's busy time minus the four above.
    other: f64,
}

/// One run through nginx, with what the processes used meanwhile.
struct Run {
    report: Report,
    cpu: Cpu,
    /// Summed over the nodes.
    throttling: Throttling,
}

/// One node count, measured.
struct Scaled {
    nodes: u64,
    quota: KeyQuota,
    max: Run,
    /// The fixed rate and its run.
    fixed: Option<(u64, Run)>,
}

/// The idle cluster at one size.
struct Idle {
    nodes: u64,
    settled: bool,
    entries_per_s: Option<f64>,
    bytes_per_s: f64,
    /// Each node's CPU in percent of one core, by id; the leader's id.
    cpu: Vec<(u64, f64)>,
    leader: u64,
}

fn main() {
    let settings = Settings::from_env();
    let runtime = load::runtime(GENERATOR_THREADS);
    // The mock's log; the clusters and nginx have directories of their own.
    let logs = tempfile::tempdir().expect("creating a temporary directory");
    let (mut mock, mock_addr) = start_mock(logs.path());

    let mut scaled = Vec::new();
    let skipped = match CpuCaps::create() {
        Err(why) => Some(format!("CPU caps unavailable: {why}")),
        Ok(mut caps) => {
            eprintln!(
                "cpu caps: cgroup {:?} under {}, {} CPU per node",
                caps.version(),
                caps.path().display(),
                settings.node_cpu
            );
            let mut skipped = None;
            'quota: for &quota in &settings.quotas {
                for &k in &settings.nodes {
                    eprintln!("== {k} node(s), key quota {quota:?}");
                    let one = scaled
                        .iter()
                        .find(|s: &&Scaled| s.nodes == 1 && s.quota == quota)
                        .map(|s| s.max.report.rate);
                    let bench = Bench {
                        runtime: &runtime,
                        settings: &settings,
                        mock: mock_addr,
                        mock_pid: mock.pid(),
                    };
                    match bench.scale_run(&mut caps, k, quota, one) {
                        Ok(result) => scaled.push(result),
                        Err(why) => {
                            eprintln!("skipped: {why}");
                            skipped = Some(why);
                            break 'quota;
                        }
                    }
                }
            }
            skipped
        }
    };
    if let Some(why) = &skipped {
        eprintln!("scale-out throughput skipped: {why}");
    }

    eprintln!(
        "== background cost, idle, {} keys with a quota",
        settings.keys
    );
    let idle = idle_cost(&settings, mock_addr);
    mock.terminate(Duration::from_secs(10));

    print_tables(&settings, &scaled, skipped.as_deref(), &idle);
    write_json(&settings, &scaled, skipped.as_deref(), &idle);
}

/// What every throughput run shares.
struct Bench<'a> {
    runtime: &'a tokio::runtime::Runtime,
    settings: &'a Settings,
    mock: SocketAddr,
    mock_pid: u32,
}

impl Bench<'_> {
    /// Starts `k` nodes capped, nginx in front, and measures through it.
    /// `one`: rps(1) in this quota mode, if measured. Err: why it could not run.
    fn scale_run(
        &self,
        caps: &mut CpuCaps,
        k: u64,
        quota: KeyQuota,
        one: Option<f64>,
    ) -> Result<Scaled, String> {
        let (runtime, settings, mock, mock_pid) =
            (self.runtime, self.settings, self.mock, self.mock_pid);
        let voters = k.min(VOTERS);
        let mut started = cluster::start_with(cluster::builder(k, voters), mock, quota);
        for id in voters + 1..=k {
            started.add_learner(id);
        }
        let pids: Vec<(u64, u32)> = started
            .cluster
            .running_ids()
            .into_iter()
            .filter_map(|id| Some((id, started.cluster.pid(id)?)))
            .collect();
        let group = |id: u64| format!("{quota:?}-{k}-node-{id}").to_lowercase();
        for &(id, pid) in &pids {
            caps.cap(&group(id), pid, settings.node_cpu)?;
        }
        let upstreams: Vec<_> = started.endpoints.iter().map(|e| e.addr).collect();
        // A directory of its own, right under the system's temporary directory:
        // nginx's workers (`nobody` when started as root) must reach it.
        let nginx_dir = tempfile::Builder::new()
            .prefix("sluice-bench-nginx-")
            .tempdir()
            .map_err(|e| format!("creating nginx's directory: {e}"))?;
        let mut nginx = Nginx::start(nginx_dir.path(), &upstreams, NGINX_WORKERS)?;
        // Every node serves the key and route it was just given, then nginx
        // in front of them does.
        let direct = chat_workload(started.endpoints.clone());
        wait_serving(runtime, &direct, "the nodes")?;
        let load = chat_workload(vec![Endpoint {
            addr: nginx.addr,
            authorization: started.endpoints[0].authorization.clone(),
        }]);
        wait_serving(runtime, &load, &format!("nginx in front of {k} node(s)"))?;

        let watched = Watched {
            nodes: pids.iter().map(|(_, pid)| *pid).collect(),
            nginx: nginx.process.pid(),
            mock: mock_pid,
        };
        let throttling = || -> Throttling {
            pids.iter()
                .filter_map(|(id, _)| caps.throttling(&group(*id)))
                .fold(Throttling::default(), |sum, t| Throttling {
                    periods: sum.periods + t.periods,
                    throttled: sum.throttled + t.throttled,
                    throttled_us: sum.throttled_us + t.throttled_us,
                })
        };
        let duration = Duration::from_secs(settings.secs);
        let measured = |run: &dyn Fn() -> Report| -> Run {
            let before = throttling();
            let (report, cpu) = with_cpu(&watched, run);
            Run {
                report,
                cpu,
                throttling: throttling().since(&before),
            }
        };
        let plan = ClosedLoop {
            concurrency: settings.concurrency,
            warmup: settings.warmup,
            duration,
        };
        let max = measured(&|| runtime.block_on(run_closed_loop(&load, plan)).report());
        eprintln!(
            "  max, {} clients: {}",
            settings.concurrency,
            one_line(&max)
        );
        let per_node = one.unwrap_or(max.report.rate);
        let rate = (k as f64 * per_node * FIXED_SHARE).round() as u64;
        let fixed = (rate > 0).then(|| {
            let plan = FixedRate {
                rate,
                warmup: settings.warmup,
                duration,
                drain: Duration::from_secs(5),
                workers: settings.concurrency,
            };
            let run = measured(&|| runtime.block_on(run_fixed_rate(&load, plan)).report());
            eprintln!("  {rate} req/s: {}", one_line(&run));
            (rate, run)
        });
        nginx.process.terminate(Duration::from_secs(10));
        drop(started);
        Ok(Scaled {
            nodes: k,
            quota,
            max,
            fixed,
        })
    }
}

/// Polls (at most 20 s) until a request to each of `load`'s endpoints
/// (`what`) answers 200.
fn wait_serving(
    runtime: &tokio::runtime::Runtime,
    load: &Workload,
    what: &str,
) -> Result<(), String> {
    let mut last = String::new();
    let ok = Deadline::after(Duration::from_secs(20)).poll("", || {
        let answers = runtime.block_on(probe(load));
        last = format!("{answers:?}");
        answers
            .iter()
            .all(|a| matches!(a, Ok(status) if status.as_u16() == 200))
    });
    ok.map(|_| ())
        .map_err(|_| format!("{what}: no 200 within 20 s: {last}"))
}

/// The processes a run's CPU is read from.
struct Watched {
    nodes: Vec<u32>,
    nginx: u32,
    mock: u32,
}

fn with_cpu(watched: &Watched, run: impl FnOnce() -> Report) -> (Report, Cpu) {
    let groups = [
        watched.nodes.clone(),
        vec![watched.nginx],
        vec![watched.mock],
    ];
    let (report, cpu) = measure_cpu(&groups, run);
    let cpu = Cpu {
        nodes: cpu.groups[0],
        nginx: cpu.groups[1],
        mock: cpu.groups[2],
        generator: cpu.own,
        other: cpu.other,
    };
    (report, cpu)
}

// ----- background cost ------------------------------------------------------

/// The idle cluster at each size of `settings.idle_nodes` (see the module doc).
fn idle_cost(settings: &Settings, mock: SocketAddr) -> Vec<Idle> {
    let largest = settings.idle_nodes.iter().copied().max().unwrap_or(VOTERS);
    let voters = largest.min(VOTERS);
    let builder = cluster::builder(largest, voters).with_relay();
    let mut started = cluster::start_with(builder, mock, KeyQuota::None);
    create_quota_keys(&started.cluster, settings.keys);
    let mut results = Vec::new();
    for &size in &settings.idle_nodes {
        let running = started.cluster.running_ids().len() as u64;
        for id in running + 1..=size {
            started.add_learner(id);
        }
        let settled = settle(&started.cluster);
        let result = idle_window(
            &started.cluster,
            Duration::from_secs(settings.idle_secs),
            settled,
        );
        eprintln!(
            "  {size} nodes{}: raft {} entries/s, {:.0} B/s between nodes, cpu per node {}",
            if settled { "" } else { " (not settled)" },
            result
                .entries_per_s
                .map_or("–".into(), |e| format!("{e:.2}")),
            result.bytes_per_s,
            result
                .cpu
                .iter()
                .map(|(id, c)| format!("{id}: {c:.1}%"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.push(result);
    }
    results
}

/// `count` keys, each with an rpm and tpm quota, written by a few threads
/// through the leader.
fn create_quota_keys(cluster: &Cluster, count: usize) {
    const WRITERS: usize = 8;
    let leader = cluster.leader();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            scope.spawn(move || {
                let admin = cluster.admin(leader);
                for i in (writer..count).step_by(WRITERS) {
                    let body = json!({
                        "name": format!("idle-{i}"),
                        "allowed_routes": ["mock-gpt"],
                        "rpm": 600,
                        "tpm": 100_000,
                    });
                    cluster.wait_until(Duration::from_secs(30), format!("key idle-{i}"), || {
                        match admin.post("/admin/v1/keys", &body) {
                            // 409 after a retry: the earlier attempt committed.
                            (201 | 409, _) => true,
                            (0 | 500..=599, _) => false,
                            other => cluster.fail(format!("POST /admin/v1/keys: {other:?}")),
                        }
                    });
                }
            });
        }
    });
    eprintln!(
        "  {count} keys with a quota written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Waits until the leader's log has not grown for [`SETTLED_AFTER`]
/// (standing reserves are filled a few hundred keys a round after keys are
/// written or a node joins); false if it still grew after
/// [`SETTLE_BUDGET`].
fn settle(cluster: &Cluster) -> bool {
    let leader = cluster.leader();
    let index = || {
        cluster
            .status(leader)
            .and_then(|s| s["last_log_index"].as_u64())
    };
    let mut last = (index(), Instant::now());
    Deadline::after(SETTLE_BUDGET)
        .poll("the idle cluster's log to stop growing", || {
            let now = index();
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() >= SETTLED_AFTER
        })
        .is_ok()
}

/// Measures the idle cluster for `window`.
fn idle_window(cluster: &Cluster, window: Duration, settled: bool) -> Idle {
    let pids: Vec<(u64, u32)> = cluster
        .running_ids()
        .into_iter()
        .filter_map(|id| Some((id, cluster.pid(id)?)))
        .collect();
    let ticks = || -> Vec<u64> {
        pids.iter()
            .map(|(_, pid)| cpu_ticks(&pid.to_string()))
            .collect()
    };
    let nodes = Nodes::of(cluster);
    let bytes_before = cluster.relay().forwarded_bytes();
    let cpu_before = ticks();
    let started = Instant::now();
    // A fixed measurement window over an idle cluster: nothing to wait for.
    let ((), observed) = nodes.around(Duration::ZERO, window, || std::thread::sleep(window));
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = ticks();
    let bytes = cluster.relay().forwarded_bytes() - bytes_before;
    Idle {
        nodes: pids.len() as u64,
        settled,
        entries_per_s: observed.log.per_second(),
        bytes_per_s: bytes as f64 / wall,
        cpu: pids
            .iter()
            .zip(cpu_before.iter().zip(&cpu_after))
            .map(|((id, _), (b, a))| (*id, percent_of_core(a.saturating_sub(*b), wall)))
            .collect(),
        leader: cluster.leader(),
    }
}

// ----- results ----------------------------------------------------------------

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn one_line(run: &Run) -> String {
    let r = &run.report;
    format!(
        "{:.0} req/s, p50 {} p99 {}, {} errors; cpu nodes {:.0}% nginx {:.0}% mock {:.0}% generator {:.0}% other {:.0}%; throttled {} of {} periods",
        r.rate,
        ms(r.p50_us),
        ms(r.p99_us),
        r.errors,
        run.cpu.nodes,
        run.cpu.nginx,
        run.cpu.mock,
        run.cpu.generator,
        run.cpu.other,
        run.throttling.throttled,
        run.throttling.periods
    )
}

fn quota_name(quota: KeyQuota) -> &'static str {
    match quota {
        KeyQuota::None => "off",
        KeyQuota::NeverRefusing => "on",
    }
}

/// rps(k) / (k · rps(1)), when rps(1) was measured in the same mode.
fn efficiency(scaled: &[Scaled], s: &Scaled) -> Option<f64> {
    let one = scaled
        .iter()
        .find(|o| o.nodes == 1 && o.quota == s.quota)?
        .max
        .report
        .rate;
    (one > 0.0).then(|| s.max.report.rate / (s.nodes as f64 * one))
}

fn print_tables(settings: &Settings, scaled: &[Scaled], skipped: Option<&str>, idle: &[Idle]) {
    println!();
    println!(
        "scale-out: POST {PATH} ({} B body) through nginx round robin ({NGINX_WORKERS} workers) \
         over k proxies; each node capped at {} CPU (period {} ms); voters up to {VOTERS}, \
         learners beyond; {} s measured after {} s warm-up; max throughput with {} clients, \
         then a fixed rate of k x rps(1) x {FIXED_SHARE}",
        BODY.len(),
        settings.node_cpu,
        PERIOD_US / 1000,
        settings.secs,
        settings.warmup.as_secs(),
        settings.concurrency
    );
    println!(
        "machine: nproc {}, load average {} before the run; the mock, nginx and the generator \
         are not capped and share the machine with the nodes",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        settings.load_average
    );
    println!();
    println!(
        "| nodes | key quota | max req/s | efficiency | p50 | p99 | errors | fixed rate | p50 | p99 | errors | throttled periods | cpu nodes / nginx / mock / gen / other |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if let Some(why) = skipped {
        println!("| – | – | skipped: {why} | | | | | | | | | | |");
    }
    for s in scaled {
        let m = &s.max;
        let (rate, fixed_p50, fixed_p99, fixed_errors) = match &s.fixed {
            Some((rate, run)) => (
                rate.to_string(),
                ms(run.report.p50_us),
                ms(run.report.p99_us),
                run.report.errors.to_string(),
            ),
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        let throttled = if m.throttling.periods > 0 {
            format!(
                "{:.0}%",
                m.throttling.throttled as f64 / m.throttling.periods as f64 * 100.0
            )
        } else {
            "–".into()
        };
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {rate} | {fixed_p50} | {fixed_p99} | {fixed_errors} | {throttled} | {:.0}% / {:.0}% / {:.0}% / {:.0}% / {:.0}% |",
            s.nodes,
            quota_name(s.quota),
            m.report.rate,
            efficiency(scaled, s).map_or("–".into(), |e| format!("{e:.2}")),
            ms(m.report.p50_us),
            ms(m.report.p99_us),
            m.report.errors,
            m.cpu.nodes,
            m.cpu.nginx,
            m.cpu.mock,
            m.cpu.generator,
            m.cpu.other
        );
    }
    println!();
    println!(
        "background cost: idle cluster ({VOTERS} voters, learners beyond), {} keys with rpm and \
         tpm quotas, no traffic, {} s window after the log stopped growing for {} s; bytes: UDP \
         payloads between the nodes (QUIC), counted by the relay they talk through",
        settings.keys,
        settings.idle_secs,
        SETTLED_AFTER.as_secs()
    );
    println!(
        "| nodes | raft entries/s | bytes/s between nodes | bytes/s per node | cpu per node, mean | cpu, leader | cpu, busiest follower or learner | settled |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    for i in idle {
        let mean = i.cpu.iter().map(|(_, c)| c).sum::<f64>() / i.cpu.len().max(1) as f64;
        let leader = i
            .cpu
            .iter()
            .find(|(id, _)| *id == i.leader)
            .map(|(_, c)| *c);
        let other = i
            .cpu
            .iter()
            .filter(|(id, _)| *id != i.leader)
            .map(|(_, c)| *c)
            .max_by(f64::total_cmp);
        let pct = |c: Option<f64>| c.map_or("–".into(), |c| format!("{c:.2}%"));
        println!(
            "| {} | {} | {:.0} | {:.0} | {mean:.2}% | {} | {} | {} |",
            i.nodes,
            i.entries_per_s.map_or("–".into(), |e| format!("{e:.2}")),
            i.bytes_per_s,
            i.bytes_per_s / i.nodes.max(1) as f64,
            pct(leader),
            pct(other),
            if i.settled {
                "yes"
            } else {
                "no (still growing after 60 s)"
            }
        );
    }
}

fn run_json(run: &Run) -> Value {
    let mut v = run.report.json();
    v["cpu_pct"] = json!({
        "nodes": run.cpu.nodes,
        "nginx": run.cpu.nginx,
        "mock": run.cpu.mock,
        "generator": run.cpu.generator,
        "other": run.cpu.other,
    });
    v["throttling"] = json!({
        "periods": run.throttling.periods,
        "throttled": run.throttling.throttled,
        "throttled_us": run.throttling.throttled_us,
    });
    v
}

fn write_json(settings: &Settings, scaled: &[Scaled], skipped: Option<&str>, idle: &[Idle]) {
    let doc = json!({
        "workload": {"method": "POST", "path": PATH, "body": BODY},
        "settings": {
            "node_cpu": settings.node_cpu,
            "cpu_period_us": PERIOD_US,
            "nodes": settings.nodes,
            "voters": VOTERS,
            "measured_secs": settings.secs,
            "warmup_secs": settings.warmup.as_secs(),
            "concurrency": settings.concurrency,
            "fixed_share": FIXED_SHARE,
            "idle_nodes": settings.idle_nodes,
            "keys": settings.keys,
            "idle_secs": settings.idle_secs,
        },
        "machine": {
            "load_average_before": settings.load_average,
            "generator_threads": GENERATOR_THREADS,
            "nginx_worker_processes": NGINX_WORKERS,
        },
        "scale_out_skipped": skipped,
        "scale_out": scaled.iter().map(|s| json!({
            "nodes": s.nodes,
            "key_quota": quota_name(s.quota),
            "max_throughput": run_json(&s.max),
            "efficiency": efficiency(scaled, s),
            "fixed_rate": s.fixed.as_ref().map(|(rate, run)| {
                let mut v = run_json(run);
                v["rate"] = json!(rate);
                v
            }),
        })).collect::<Vec<_>>(),
        "background": idle.iter().map(|i| json!({
            "nodes": i.nodes,
            "settled": i.settled,
            "raft_entries_per_s": i.entries_per_s,
            "bytes_per_s": i.bytes_per_s,
            "leader": i.leader,
            "cpu_pct_by_node": i.cpu.iter().map(|(id, c)| json!({"id": id, "cpu_pct": c})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    write_results("bench-scale-out.json", &doc);
}
