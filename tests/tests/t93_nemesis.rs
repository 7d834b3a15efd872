//! The nemesis suite: a real 3-node and a real 5-node cluster under a
//! workload of concurrent admin writes through every node and proxied
//! traffic on quota'd keys, while nemeses run in turn and together; after
//! healing, the checker (see `sluice_e2e::nemesis::checker`) demands that
//! no acknowledged write is lost, every node holds the same state, no
//! term had two leaders and no quota'd key was admitted past its bound.
//! Each run prints its table (`NEMESIS TABLE`), the one in
//! docs/reliability.md.
//!
//! The short run (CI) holds each fault 4 s. A long run:
//! `SLUICE_NEMESIS_SOAK_MINUTES=30 cargo test -p sluice-e2e --test
//! t93_nemesis -- --ignored --exact soak` repeats every phase, shuffled,
//! for that long. `SLUICE_NEMESIS_SEED` fixes the writers' and the
//! shuffle's seed. Two more ignored tests reproduce the bugs the suite
//! found (docs/reliability.md).

use sluice_e2e::nemesis::checker::check;
use sluice_e2e::nemesis::clock::FakedClock;
use sluice_e2e::nemesis::report::table;
use sluice_e2e::nemesis::{Nemesis, Plan, Role, Run};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One cluster at a time: each drives up to 5 nodes and the load on a
/// 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const HOLD: Duration = Duration::from_secs(4);
const CALM: Duration = Duration::from_secs(2);

fn seed() -> u64 {
    std::env::var("SLUICE_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}

/// Every node runs under libfaketime when it is installed. Under CI (`CI`
/// set) it must be: `.ci/run` installs it. Elsewhere its absence skips the
/// clock nemesis, saying so.
fn faked_clocks() -> bool {
    if FakedClock::library().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "libfaketime is missing (apt-get install faketime): CI must run the clock nemesis"
    );
    eprintln!("SKIPPED the clock nemesis: libfaketime is not installed (apt-get install faketime)");
    false
}

fn impair() -> Nemesis {
    Nemesis::Impair {
        delay: Duration::from_millis(30),
        jitter: Duration::from_millis(20),
        loss: 0.05,
    }
}

fn three_node_phases() -> Vec<Vec<Nemesis>> {
    vec![
        vec![Nemesis::KillLeader],
        vec![Nemesis::KillFollower],
        vec![Nemesis::PauseLeader],
        vec![Nemesis::IsolateFollower],
        vec![Nemesis::IsolateLeader],
        vec![impair()],
        vec![Nemesis::ClockJump {
            offset_s: -90,
            role: Role::Follower,
        }],
        vec![Nemesis::ClockJump {
            offset_s: 90,
            role: Role::Leader,
        }],
        vec![Nemesis::CrashAll],
        vec![Nemesis::KillFollower, impair()],
        vec![Nemesis::PauseLeader, impair()],
        vec![Nemesis::Churn],
    ]
}

/// More clock jumps that reach a leader, for the soak (the CI schedule has
/// one, a +90 s jump of the leader's clock): a jump back, and a follower
/// 90 s behind that takes over from a frozen leader and is set right.
fn leader_clock_jumps() -> Vec<Vec<Nemesis>> {
    vec![
        vec![Nemesis::ClockJump {
            offset_s: 90,
            role: Role::Leader,
        }],
        vec![Nemesis::ClockJump {
            offset_s: -90,
            role: Role::Leader,
        }],
        // A follower 90 s behind, then the leader frozen: the follower
        // may take over and stamp commands with its late clock.
        vec![
            Nemesis::ClockJump {
                offset_s: -90,
                role: Role::Follower,
            },
            Nemesis::PauseLeader,
        ],
    ]
}

fn five_node_phases() -> Vec<Vec<Nemesis>> {
    vec![
        vec![Nemesis::Bridge],
        vec![Nemesis::IsolateLeader],
        vec![Nemesis::KillLeader, Nemesis::KillFollower],
        vec![Nemesis::Bridge, impair()],
        vec![Nemesis::PauseFollower, Nemesis::IsolateLeader],
    ]
}

/// Runs `plan`, checks, prints the table, and fails on any finding.
fn run_and_check(title: &str, plan: Plan) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    eprintln!("NEMESIS {title}: seed {}", plan.seed);
    let mut run = Run::start(plan);
    run.run_phases();
    let verdict = check(&mut run);
    println!(
        "NEMESIS TABLE {title} ({:.0} s)\n{}",
        started.elapsed().as_secs_f64(),
        table(&run.phases, &verdict)
    );
    for line in verdict.lost.iter().chain(&verdict.anomalies) {
        println!("  {line}");
    }
    verdict.assert_clean();
}

#[test]
fn three_nodes_lose_no_acknowledged_write_under_every_nemesis() {
    run_and_check(
        "3 nodes",
        Plan {
            voters: 3,
            spares: 1,
            phases: three_node_phases(),
            hold: HOLD,
            calm: CALM,
            writers: 6,
            seed: seed(),
            faked_clocks: faked_clocks(),
            budget: Duration::from_secs(480),
            repeat_for: None,
        },
    );
}

#[test]
fn five_nodes_lose_no_acknowledged_write_under_bridges_and_partitions() {
    run_and_check(
        "5 nodes",
        Plan {
            voters: 5,
            spares: 0,
            phases: five_node_phases(),
            hold: HOLD,
            calm: CALM,
            writers: 5,
            seed: seed(),
            faked_clocks: false,
            budget: Duration::from_secs(300),
            repeat_for: None,
        },
    );
}

/// The long run: every 3-node phase but churn, and more leader clock
/// jumps, shuffled once, then
/// run in that order again and again for `SLUICE_NEMESIS_SOAK_MINUTES`
/// (default 30), faults held 10 s.
#[test]
#[ignore = "a soak: run it on purpose (see the module doc)"]
fn soak() {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let minutes: u64 = std::env::var("SLUICE_NEMESIS_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Churn is left out: it uses up spares.
    let mut phases: Vec<Vec<Nemesis>> = three_node_phases()
        .into_iter()
        .chain(leader_clock_jumps())
        .filter(|p| !p.contains(&Nemesis::Churn))
        .collect();
    phases.shuffle(&mut rng);
    run_and_check(
        &format!("soak {minutes} min"),
        Plan {
            voters: 3,
            spares: 0,
            phases,
            hold: Duration::from_secs(10),
            calm: Duration::from_secs(3),
            writers: 6,
            seed,
            faked_clocks: faked_clocks(),
            budget: Duration::from_secs(minutes * 60 + 600),
            repeat_for: Some(Duration::from_secs(minutes * 60)),
        },
    );
}

/// Found by the clock nemesis (fixed): the ledger refills a bucket by the
/// time the leader stamps on each command, and the leader stamped its wall
/// clock as it read it, so a forward jump of it refilled every bucket at
/// once (up to its capacity). A 3-node cluster whose leader runs under
/// libfaketime, a key of 10 requests refilled 1 per second, spent; the
/// leader's clock jumps +10 min: the key must stay within capacity +
/// refill × T of real time (before the fix: 20 admitted against 11).
#[test]
fn a_forward_jump_of_the_leaders_clock_does_not_refill_quota() {
    use sluice_e2e::dataplane::{DataPlane, ProxyClient, GPT};
    use sluice_e2e::{json, Cluster};
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let library = FakedClock::library().expect("libfaketime (apt-get install faketime)");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = FakedClock::new(library, &dir.path().join("offset"));
    let mut builder = Cluster::builder()
        .nodes(3)
        .fast_elections()
        .config_extra("[quotas]\ntick_ms = 100\nlease_ttl_ms = 1000\n");
    for (key, value) in clock.env() {
        builder = builder.node_env(1, key, value);
    }
    let plane = DataPlane::start(builder);
    let leader = plane.cluster.leader();
    if leader != 1 {
        let (status, body) = plane
            .cluster
            .admin(leader)
            .post("/admin/v1/cluster/leader", &json!({"to": 1}));
        assert_eq!(status, 200, "{body}");
        plane
            .cluster
            .wait_until(Duration::from_secs(10), "node 1 to lead", || {
                plane.cluster.leader() == 1
            });
    }
    let created = Instant::now();
    let made = plane.write(
        "/admin/v1/keys",
        &json!({"name": "clock", "limits": [{"unit": "requests", "capacity": 10,
            "refill_amount": 1, "refill_every_ms": 1000}]}),
    );
    let secret = made["key"].as_str().expect("secret").to_string();
    plane.wait_served(&secret, &[GPT]);
    let proxy = ProxyClient::new(plane.cluster.proxy_url(2), Some(&secret));
    let body = json!({"model": GPT, "max_tokens": 4,
        "messages": [{"role": "user", "content": "tick"}]});
    let send = |n: usize| -> u64 {
        (0..n)
            .map(|_| proxy.post("/v1/chat/completions", &body).status)
            .filter(|&s| s == 200)
            .count() as u64
    };
    let before = send(15);
    let real_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    clock.set_offset_s(600);
    let node1 = plane.cluster.admin(1);
    plane
        .cluster
        .wait_until(Duration::from_secs(10), "node 1's clock to jump", || {
            node1.get("/admin/v1/node").1["clock_ms"].as_u64() > Some(real_ms() + 500_000)
        });
    let admitted = before + send(15);
    let bound = 10 + created.elapsed().as_secs_f64().ceil() as u64;
    println!("CLOCK admitted {before} before the jump, {admitted} in all; bound {bound}");
    assert!(
        admitted <= bound,
        "admitted {admitted} > capacity + refill × T = {bound}: the leader's clock jump refilled the bucket"
    );
}

/// Found by the delay nemesis: Raft's AppendEntries calls and heartbeats
/// used to time out after the heartbeat interval (100 ms), and a timed-out
/// call dropped the QUIC connection and redialled within the same budget,
/// so between peers whose round trip exceeded it nothing ever replicated:
/// with 60 ms of added delay each way between every two nodes (each node's
/// link delays 30 ms), not one write committed in 15 s. Now a timeout keeps
/// the connection and the AppendEntries timeout is nine tenths of the
/// leader lease (225 ms at the default timing).
#[test]
fn writes_commit_between_peers_120_ms_apart() {
    writes_commit_between_peers(Duration::from_millis(30));
}

/// Beyond the old limit: a 180 ms round trip. Fails with an AppendEntries
/// timeout of half the lease (125 ms).
#[test]
fn writes_commit_between_peers_180_ms_apart() {
    writes_commit_between_peers(Duration::from_millis(45));
}

/// Three nodes at the default timing, `link_delay` added to every node's
/// link (a datagram between two nodes crosses two links, so the round trip
/// grows by four times it): a write through node 1 commits within 15 s.
fn writes_commit_between_peers(link_delay: Duration) {
    use sluice_e2e::admin::provider_body;
    use sluice_e2e::relay::Impairment;
    use sluice_e2e::Cluster;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::builder().nodes(3).with_relay().start();
    cluster.create_provider(1, "before-the-delay");
    for id in cluster.ids() {
        cluster.relay().impair(
            id,
            Impairment {
                delay: link_delay,
                ..Impairment::default()
            },
        );
    }
    let admin = cluster.admin(1);
    let mut answers = Vec::new();
    let committed = cluster
        .deadline()
        .within(Duration::from_secs(15))
        .poll("", || {
            let answer = admin.post(
                "/admin/v1/providers",
                &provider_body(&format!("delayed-{}", answers.len())),
            );
            answers.push(answer.0);
            answer.0 == 201
        });
    assert!(
        committed.is_ok(),
        "no write committed in 15 s with {:?} of delay on every link ({:?} round trip between peers); answers {answers:?}",
        link_delay,
        link_delay * 4
    );
}
