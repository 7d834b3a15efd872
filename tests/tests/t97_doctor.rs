//! `sluice cluster doctor` against real nodes: a healthy cluster passes
//! every check; with a voter killed the doctor exits 1, still finds a
//! quorum, and names the node that does not answer; with two killed it
//! reports the quorum lost.

use sluice_e2e::{Cluster, Value};

fn checks<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == check)
        .collect()
}

fn doctor(cluster: &Cluster, via: u64) -> (i32, Value) {
    let done = cluster.cli(via, &["cluster", "doctor", "--json"]);
    let report = serde_json::from_str(&done.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {done}"));
    (done.code(), report)
}

#[test]
fn doctor_passes_a_healthy_cluster_and_names_what_is_wrong() {
    let mut cluster = Cluster::builder().fast_elections().start();
    let (code, report) = doctor(&cluster, 1);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["verdict"], "ok");
    assert_eq!(checks(&report, "reachable").len(), 3);
    assert_eq!(checks(&report, "lag").len(), 2, "{report:#}");
    assert_eq!(checks(&report, "clock_skew").len(), 1);
    // Node and CA certificate of each node, valid for years.
    assert_eq!(checks(&report, "certificate").len(), 6, "{report:#}");

    let leader = cluster.leader();
    let victim = cluster.follower();
    cluster.kill9(victim);
    let (code, report) = doctor(&cluster, leader);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(checks(&report, "quorum")[0]["verdict"], "ok", "{report:#}");
    let down: Vec<&Value> = checks(&report, "reachable")
        .into_iter()
        .filter(|c| c["verdict"] == "warn")
        .collect();
    assert_eq!(down.len(), 1, "{report:#}");
    assert_eq!(down[0]["node"], victim);

    let other = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader && id != victim)
        .expect("a third node");
    cluster.kill9(other);
    let (code, report) = doctor(&cluster, leader);
    assert_eq!(code, 1);
    assert_eq!(
        checks(&report, "quorum")[0]["verdict"],
        "fail",
        "{report:#}"
    );
}
