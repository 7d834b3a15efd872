use super::*;
use sluice_admin::cluster::{MemberAddresses, MemberView};

const NOW: u64 = 1_800_000_000_000;

/// A 3-voter cluster whose leader is node 1, every member answering with
/// `offsets[i]` clock offset and a 2 ms round trip, the leader's matched
/// indexes `matched`, and certificates valid for a year.
fn cluster(offsets: [i64; 3], matched: [Option<u64>; 3]) -> Vec<Observation> {
    let members: Vec<MemberView> = (1..=3u64)
        .map(|id| MemberView {
            id,
            role: MemberRoleView::Voter,
            addresses: MemberAddresses {
                raft_addr: format!("10.0.0.{id}:7000"),
                admin_url: format!("http://10.0.0.{id}:7001"),
                proxy_url: format!("http://10.0.0.{id}:7002"),
            },
            matched_index: matched[id as usize - 1],
        })
        .collect();
    (1..=3u64)
        .map(|id| Observation {
            id,
            voter: true,
            admin_url: format!("http://10.0.0.{id}:7001"),
            error: None,
            status: Some(ClusterStatusView {
                cluster_id: "c-1".into(),
                node_id: id,
                leader_id: Some(1),
                term: 3,
                state: if id == 1 { "leader" } else { "follower" }.into(),
                last_log_index: Some(500),
                applied_index: Some(500),
                snapshot_index: None,
                members: members.clone(),
            }),
            report: Some(NodeReport {
                node_id: id,
                cluster_id: "c-1".into(),
                version: "0".into(),
                clock_ms: NOW,
                certificates: vec![CertificateExpiry {
                    role: "node".into(),
                    subject: format!("CN=node-{id}.sluice"),
                    not_after_ms: NOW + 365 * DAY_MS,
                    sha256: String::new(),
                }],
            }),
            rtt_ms: Some(2),
            clock_offset_ms: Some(offsets[id as usize - 1]),
        })
        .collect()
}

fn verdict_of(checks: &[Check], check: &str, node: Option<u64>) -> Verdict {
    checks
        .iter()
        .filter(|c| c.check == check && c.node == node)
        .map(|c| c.verdict)
        .max()
        .unwrap_or_else(|| panic!("no {check} check for {node:?}: {checks:?}"))
}

fn down(o: &mut Observation) {
    o.error = Some("connection refused".into());
    o.status = None;
    o.report = None;
    o.rtt_ms = None;
    o.clock_offset_ms = None;
}

#[test]
fn a_healthy_cluster_passes_every_check() {
    let checks = evaluate(
        &cluster([0, 3, -3], [Some(500), Some(499), Some(500)]),
        NOW,
        DoctorArgs::default(),
    );
    assert!(
        checks.iter().all(|c| c.verdict == Verdict::Ok),
        "{checks:#?}"
    );
    assert_eq!(verdict_of(&checks, "lag", Some(2)), Verdict::Ok);
    assert_eq!(verdict_of(&checks, "certificate", Some(3)), Verdict::Ok);
}

#[test]
fn quorum_holds_with_one_voter_down_and_fails_with_two() {
    let mut members = cluster([0; 3], [Some(500), None, Some(500)]);
    down(&mut members[1]);
    let checks = evaluate(&members, NOW, DoctorArgs::default());
    assert_eq!(verdict_of(&checks, "quorum", None), Verdict::Ok);
    assert_eq!(verdict_of(&checks, "reachable", Some(2)), Verdict::Warn);
    assert_eq!(verdict_of(&checks, "lag", Some(2)), Verdict::Warn);
    down(&mut members[2]);
    let checks = evaluate(&members, NOW, DoctorArgs::default());
    assert_eq!(verdict_of(&checks, "quorum", None), Verdict::Fail);
}

#[test]
fn voters_without_a_common_leader_are_no_quorum() {
    let mut members = cluster([0; 3], [Some(500); 3]);
    for (i, m) in members.iter_mut().enumerate() {
        m.status.as_mut().unwrap().leader_id = if i == 0 { None } else { Some(i as u64) };
    }
    let checks = evaluate(&members, NOW, DoctorArgs::default());
    assert_eq!(verdict_of(&checks, "quorum", None), Verdict::Fail);
}

#[test]
fn lag_beyond_the_limit_warns() {
    let checks = evaluate(
        &cluster([0; 3], [Some(500), Some(300), Some(500)]),
        NOW,
        DoctorArgs::default(),
    );
    assert_eq!(verdict_of(&checks, "lag", Some(2)), Verdict::Warn);
    assert_eq!(verdict_of(&checks, "lag", Some(3)), Verdict::Ok);
}

#[test]
fn skew_fails_only_beyond_the_round_trip_uncertainty() {
    let limits = DoctorArgs::default();
    let ok = evaluate(&cluster([0, 400, 0], [Some(500); 3]), NOW, limits);
    assert_eq!(verdict_of(&ok, "clock_skew", None), Verdict::Ok);
    let bad = evaluate(&cluster([-300, 400, 0], [Some(500); 3]), NOW, limits);
    assert_eq!(verdict_of(&bad, "clock_skew", None), Verdict::Fail);
    // 600 ms apart but each measured with a 300 ms round trip: maybe fine.
    let mut unsure = cluster([-300, 300, 0], [Some(500); 3]);
    for m in &mut unsure {
        m.rtt_ms = Some(300);
    }
    let unsure = evaluate(&unsure, NOW, limits);
    assert_eq!(verdict_of(&unsure, "clock_skew", None), Verdict::Warn);
}

#[test]
fn certificates_warn_under_thirty_days_and_fail_when_expired() {
    let mut members = cluster([0; 3], [Some(500); 3]);
    members[0].report.as_mut().unwrap().certificates[0].not_after_ms = NOW + 10 * DAY_MS;
    members[1].report.as_mut().unwrap().certificates[0].not_after_ms = NOW - 1;
    let checks = evaluate(&members, NOW, DoctorArgs::default());
    assert_eq!(verdict_of(&checks, "certificate", Some(1)), Verdict::Warn);
    assert_eq!(verdict_of(&checks, "certificate", Some(2)), Verdict::Fail);
    assert_eq!(verdict_of(&checks, "certificate", Some(3)), Verdict::Ok);
}
