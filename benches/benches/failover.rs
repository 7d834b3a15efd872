//! Time from kill -9 of the leader to a new leader, and to the next committed
//! write, on a 3-node cluster with the election settings Sluice ships
//! (`RaftTiming::default()`). Runs `SLUICE_BENCH_RUNS` times (default 7)
//! against one cluster: each run waits for a steady state (every node has
//! applied the leader's whole log), kills the leader, measures, then restarts
//! the killed node.

use sluice_benches::{env_count, print_row, summarize};
use sluice_e2e::admin::provider_body;
use sluice_e2e::{Cluster, Value};
use std::time::{Duration, Instant};

fn leader_seen_by(cluster: &Cluster, id: u64) -> Option<u64> {
    let status: Value = cluster.status(id)?;
    let leader = status["leader_id"].as_u64()?;
    (status["state"].as_str() == Some("leader") && leader == id).then_some(leader)
}

/// Waits until every running node has applied the leader's last log entry:
/// a kill then finds every survivor equally qualified to take over, as in a
/// cluster that has been running for a while.
fn wait_steady(cluster: &Cluster, leader: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = cluster
            .status(leader)
            .and_then(|s| s["last_log_index"].as_u64());
        let caught_up = last.is_some()
            && cluster.running_ids().iter().all(|id| {
                cluster
                    .status(*id)
                    .and_then(|s| s["applied_index"].as_u64())
                    == last
            });
        if caught_up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not settle within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() {
    let runs = env_count("SLUICE_BENCH_RUNS", 7);
    let mut cluster = Cluster::builder()
        .nodes(3)
        .budget(Duration::from_secs(60 + 30 * runs as u64))
        .start();
    let mut to_leader = Vec::new();
    let mut to_write = Vec::new();
    for run in 0..runs {
        let old = cluster.leader();
        wait_steady(&cluster, old);
        let survivors: Vec<u64> = cluster
            .running_ids()
            .into_iter()
            .filter(|id| *id != old)
            .collect();
        let killed_at = Instant::now();
        cluster.kill9(old);
        let deadline = killed_at + Duration::from_secs(30);
        let new_leader = loop {
            if let Some(id) = survivors
                .iter()
                .find_map(|id| leader_seen_by(&cluster, *id))
            {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: no new leader within 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        to_leader.push(killed_at.elapsed());
        // The next committed write, through a survivor that is not the leader
        // when there is one (the path a client on a follower takes).
        let via = survivors
            .iter()
            .copied()
            .find(|id| *id != new_leader)
            .unwrap_or(new_leader);
        let admin = cluster.admin(via);
        let body = provider_body(&format!("failover-{run}"));
        loop {
            let (status, _) = admin.post("/admin/v1/providers", &body);
            if status == 201 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: no committed write within 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        to_write.push(killed_at.elapsed());
        eprintln!(
            "run {run}: killed node {old}; node {new_leader} leads after {:?}; write via node {via} committed after {:?}",
            to_leader[run], to_write[run]
        );
        cluster.restart(old);
    }
    println!("failover, 3 nodes, shipped election settings (RaftTiming::default())");
    print_row(
        "kill -9 leader -> new leader",
        &summarize(&mut to_leader).expect("runs > 0"),
    );
    print_row(
        "kill -9 leader -> next committed write",
        &summarize(&mut to_write).expect("runs > 0"),
    );
}
