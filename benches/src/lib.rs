//! Shared pieces of Sluice's benchmarks: summary statistics, the way
//! results are printed, the load generator ([`load`]) and the clusters the
//! load bench measures ([`cluster`]). The benchmarks themselves are in
//! `benches/`:
//!
//! * `failover`: kill -9 the leader of a 3-node cluster with the election
//!   settings Sluice ships; time to a new leader and to the next committed
//!   write (median of several runs).
//! * `soak`: every node of a 3-node cluster under full proxy load (quota
//!   on) for ten minutes; the elections and leader changes that caused.
//! * `admin_writes`: admin writes per second through a 3-node cluster, one
//!   client and 32 concurrent clients.
//! * `load`: the proxy under load: the mock provider directly, nginx in
//!   front of it, a 1-node and a 3-node Sluice cluster in front of it, each
//!   cluster also with a quota on its key; fixed rates (latency percentiles)
//!   and maximum throughput, and the Raft entries the lease rounds cost. The
//!   generator is [`load`]; the clusters and what is read from them,
//!   [`cluster`].
//! * `quota_latency`: quota on against off on one running cluster, ABBA:
//!   latency percentiles at fixed rates, and of bursts after the key was
//!   idle for longer than a lease (with the requests that waited for a
//!   lease round).
//! * `scale_out`: horizontal scale-out: 1, 2, 3 and 5 nodes (learners
//!   beyond 3), each node's process capped at a fraction of a CPU with the
//!   cgroup cpu controller ([`cgroup`]), behind nginx round robin
//!   ([`nginx`]): throughput, p99 and efficiency; and the idle cluster's
//!   background cost per node (Raft entries, bytes between nodes, CPU) at
//!   3, 5 and 9 nodes with quotas on 1 000 keys.
//! * `core`: criterion micro-benchmarks of `State::apply` and the codec.
//! * `quota`: criterion micro-benchmarks of admission against lease pools
//!   and of the ledger's grant.
//!
//! Run with `cargo bench -p sluice-benches` (the real-process ones need
//! `target/release/sluice`: `cargo build --release -p sluice` first; set
//! `SLUICE_BIN` to use another build).

pub mod cgroup;
pub mod cluster;
pub mod host;
pub mod load;
pub mod mock;
pub mod nginx;

use std::path::PathBuf;
use std::time::Duration;

/// Summary of a sample of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub runs: usize,
    pub min: Duration,
    pub median: Duration,
    pub p90: Duration,
    pub max: Duration,
}

/// Summarises `samples` (which it sorts). `None` for an empty sample.
pub fn summarize(samples: &mut [Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Some(Summary {
        runs: samples.len(),
        min: samples[0],
        median: at(0.5),
        p90: at(0.9),
        max: samples[samples.len() - 1],
    })
}

/// One table row: a label and a summary in milliseconds.
pub fn print_row(label: &str, summary: &Summary) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<34} runs {:>2}  median {:>8.1} ms  min {:>8.1}  p90 {:>8.1}  max {:>8.1}",
        summary.runs,
        ms(summary.median),
        ms(summary.min),
        ms(summary.p90),
        ms(summary.max)
    );
}

/// Reads a positive integer from the environment, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Reads a comma-separated list of positive integers from the environment
/// (`1000,5000`), or `default` when it is unset or holds none.
pub fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|v| parse_list(&v))
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn parse_list(text: &str) -> Vec<u64> {
    text.split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect()
}

/// Writes a bench's results as pretty JSON to `SLUICE_BENCH_JSON`, else to
/// `<target dir>/<name>` (the cargo target directory the running bench was
/// built in), and says where (or why not).
pub fn write_results(name: &str, doc: &serde_json::Value) {
    let path = std::env::var_os("SLUICE_BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(name));
    match std::fs::write(&path, serde_json::to_string_pretty(doc).expect("JSON")) {
        Ok(()) => println!("results written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// `<target>` of `<target>/release/deps/<bench>-<hash>`, else `target`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_the_positive_numbers_in_order() {
        assert_eq!(parse_list("1000, 5000,x,0,7"), vec![1000, 5000, 7]);
        assert!(parse_list("").is_empty());
    }

    #[test]
    fn summary_of_a_sample() {
        let mut s: Vec<Duration> = [5, 1, 3, 2, 4]
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        let sum = summarize(&mut s).unwrap();
        assert_eq!(sum.median, Duration::from_millis(3));
        assert_eq!(sum.min, Duration::from_millis(1));
        assert_eq!(sum.max, Duration::from_millis(5));
        assert_eq!(sum.p90, Duration::from_millis(5));
        assert!(summarize(&mut []).is_none());
    }
}
