//! Admin writes per second through a 3-node cluster (shipped settings): one
//! client writing in sequence, then 32 clients at once. Every write is a
//! `POST /admin/v1/providers` acknowledged only once committed on a quorum
//! (flushed to disk there) and applied on the node that took it. Clients talk
//! to every node in turn, so followers' forwarding is part of the figure.

use sluice_benches::env_count;
use sluice_e2e::admin::provider_body;
use sluice_e2e::Cluster;
use std::time::{Duration, Instant};

fn run(cluster: &Cluster, clients: usize, writes_per_client: usize, tag: &str) -> f64 {
    let ids = cluster.running_ids();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..clients {
            let admin = cluster.admin(ids[c % ids.len()]);
            scope.spawn(move || {
                for w in 0..writes_per_client {
                    let (status, body) = admin.post(
                        "/admin/v1/providers",
                        &provider_body(&format!("{tag}-{c}-{w}")),
                    );
                    assert_eq!(status, 201, "write {tag}-{c}-{w} failed: {body}");
                }
            });
        }
    });
    (clients * writes_per_client) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let total = env_count("SLUICE_BENCH_WRITES", 640);
    let cluster = Cluster::builder()
        .nodes(3)
        .budget(Duration::from_secs(600))
        .start();
    cluster.leader();
    let one = run(&cluster, 1, total / 4, "seq");
    let many = run(&cluster, 32, total / 32, "par");
    println!(
        "admin writes through a 3-node cluster (POST /admin/v1/providers, committed and applied)"
    );
    println!("{:<34} {:>10.0} writes/s", "1 client, sequential", one);
    println!("{:<34} {:>10.0} writes/s", "32 concurrent clients", many);
    println!("{:<34} {:>10.2}", "ratio 32 clients / 1 client", many / one);
}
