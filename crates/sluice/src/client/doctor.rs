//! `sluice cluster doctor`: asks every member how it is and says what is
//! wrong: quorum (enough voters reachable and following one leader),
//! replication lag per member (from the leader's matched indexes), clock
//! skew between nodes, and certificate expiry.
//!
//! Gathering ([`observe`]) talks to each member's advertised admin URL;
//! judging ([`evaluate`]) is a pure function of what was seen, so every rule
//! is tested without a cluster. Clock skew: each node reports its wall clock
//! in `/admin/v1/node`; the client takes the node's clock minus the midpoint
//! of the call as the node's offset, known to within half the round trip. Two
//! nodes are skewed when their offsets differ by more than the limit even
//! after that uncertainty is allowed for; within it, only a warning.

use super::http::{v1_path as path, AdminClient};
use super::output::{Output, Table};
use anyhow::bail;
use serde::{Deserialize, Serialize};
use sluice_admin::cluster::{ClusterStatusView, MemberRoleView};
use sluice_admin::node::{CertificateExpiry, NodeReport};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one member may take to answer before it counts as unreachable.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(5);
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// `sluice cluster doctor`'s thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct DoctorArgs {
    /// Warn when a certificate expires within this many days.
    #[arg(long, default_value_t = 30)]
    pub cert_warn_days: u64,
    /// Largest acceptable clock difference between two nodes, in ms.
    #[arg(long, default_value_t = 500)]
    pub max_skew_ms: u64,
    /// Largest acceptable replication lag of a member, in log entries.
    #[arg(long, default_value_t = 100)]
    pub max_lag: u64,
}

impl Default for DoctorArgs {
    fn default() -> Self {
        DoctorArgs {
            cert_warn_days: 30,
            max_skew_ms: 500,
            max_lag: 100,
        }
    }
}

/// What the doctor saw of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub id: u64,
    pub voter: bool,
    pub admin_url: String,
    /// Why it could not be asked, when it could not.
    pub error: Option<String>,
    /// Its own view of the cluster.
    pub status: Option<ClusterStatusView>,
    /// Its report (clock, certificates).
    pub report: Option<NodeReport>,
    /// Round trip of the `/admin/v1/node` call, ms.
    pub rtt_ms: Option<u64>,
    /// Its clock minus ours at the midpoint of that call, ms.
    pub clock_offset_ms: Option<i64>,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// `quorum`, `leader`, `reachable`, `lag`, `clock_skew` or `certificate`.
    pub check: String,
    /// The member it is about, if one.
    pub node: Option<u64>,
    pub verdict: Verdict,
    pub detail: String,
}

/// Everything `--json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The worst verdict of any check.
    pub verdict: Verdict,
    pub checks: Vec<Check>,
    pub members: Vec<Observation>,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Asks the node at `client` for the membership, then every member for its
/// view and its report.
pub async fn observe(client: &AdminClient) -> anyhow::Result<Vec<Observation>> {
    let status: ClusterStatusView = serde_json::from_value(client.get(&path(&["cluster"])).await?)?;
    let mut observations = Vec::with_capacity(status.members.len());
    for member in status.members {
        let mut seen = Observation {
            id: member.id,
            voter: member.role == MemberRoleView::Voter,
            admin_url: member.addresses.admin_url.clone(),
            error: None,
            status: None,
            report: None,
            rtt_ms: None,
            clock_offset_ms: None,
        };
        let asked = async {
            let node = client.for_node(&seen.admin_url)?;
            let sent_ms = wall_ms();
            let started = Instant::now();
            let report: NodeReport = serde_json::from_value(node.get(&path(&["node"])).await?)?;
            let rtt = started.elapsed().as_millis() as u64;
            let midpoint = sent_ms + rtt / 2;
            let status: ClusterStatusView =
                serde_json::from_value(node.get(&path(&["cluster"])).await?)?;
            anyhow::Ok((report, rtt, midpoint, status))
        };
        match tokio::time::timeout(MEMBER_TIMEOUT, asked).await {
            Ok(Ok((report, rtt, midpoint, status))) => {
                seen.clock_offset_ms = Some(report.clock_ms as i64 - midpoint as i64);
                seen.rtt_ms = Some(rtt);
                seen.report = Some(report);
                seen.status = Some(status);
            }
            Ok(Err(err)) => seen.error = Some(format!("{err:#}")),
            Err(_) => seen.error = Some(format!("no answer within {} s", MEMBER_TIMEOUT.as_secs())),
        }
        observations.push(seen);
    }
    Ok(observations)
}

/// Judges what was seen at `now_ms` (wall clock of the caller).
pub fn evaluate(members: &[Observation], now_ms: u64, limits: DoctorArgs) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |check: &str, node: Option<u64>, verdict, detail: String| {
        checks.push(Check {
            check: check.to_string(),
            node,
            verdict,
            detail,
        })
    };

    for m in members {
        match &m.error {
            Some(err) => push(
                "reachable",
                Some(m.id),
                Verdict::Warn,
                format!("{} does not answer: {err}", m.admin_url),
            ),
            None => push("reachable", Some(m.id), Verdict::Ok, m.admin_url.clone()),
        }
    }

    // Quorum: a majority of voters answer and follow the same leader.
    let voters: Vec<&Observation> = members.iter().filter(|m| m.voter).collect();
    let majority = voters.len() / 2 + 1;
    let leaders: Vec<Option<u64>> = voters
        .iter()
        .filter_map(|m| m.status.as_ref().map(|s| s.leader_id))
        .collect();
    let leader = leaders
        .iter()
        .flatten()
        .copied()
        .max_by_key(|id| leaders.iter().filter(|l| **l == Some(*id)).count());
    let following = leader.map_or(0, |id| leaders.iter().filter(|l| **l == Some(id)).count());
    let (verdict, detail) = if following >= majority {
        (
            Verdict::Ok,
            format!(
                "{following} of {} voters answer and follow leader {}; {majority} needed",
                voters.len(),
                leader.unwrap_or_default()
            ),
        )
    } else {
        (
            Verdict::Fail,
            format!(
                "only {following} of {} voters answer and follow one leader; {majority} needed: writes, quota grants and linearizable reads stop",
                voters.len()
            ),
        )
    };
    push("quorum", None, verdict, detail);
    for m in members {
        if let Some(s) = &m.status {
            if s.leader_id != leader {
                push(
                    "leader",
                    Some(m.id),
                    Verdict::Warn,
                    format!(
                        "follows leader {:?}, the majority follows {:?}",
                        s.leader_id, leader
                    ),
                );
            }
        }
    }

    // Lag: the leader's view of how far each member has replicated.
    let leader_view = leader.and_then(|id| {
        members
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.status.as_ref())
    });
    if let Some(view) = leader_view {
        let head = view.last_log_index.unwrap_or(0);
        for member in &view.members {
            if Some(member.id) == leader {
                continue;
            }
            match member.matched_index {
                Some(matched) => {
                    let lag = head.saturating_sub(matched);
                    let verdict = if lag > limits.max_lag {
                        Verdict::Warn
                    } else {
                        Verdict::Ok
                    };
                    push(
                        "lag",
                        Some(member.id),
                        verdict,
                        format!("{lag} entries behind the leader (limit {})", limits.max_lag),
                    );
                }
                None => push(
                    "lag",
                    Some(member.id),
                    Verdict::Warn,
                    "the leader has no replication progress for it (not caught up, or unreachable from the leader)".to_string(),
                ),
            }
        }
    }

    // Clock skew: the widest gap between two nodes' offsets.
    let clocks: Vec<(u64, i64, u64)> = members
        .iter()
        .filter_map(|m| Some((m.id, m.clock_offset_ms?, m.rtt_ms?)))
        .collect();
    if let (Some(ahead), Some(behind)) = (
        clocks.iter().max_by_key(|c| c.1),
        clocks.iter().min_by_key(|c| c.1),
    ) {
        let skew = ahead.1.abs_diff(behind.1);
        let uncertainty = ahead.2.div_ceil(2) + behind.2.div_ceil(2);
        let verdict = if skew.saturating_sub(uncertainty) > limits.max_skew_ms {
            Verdict::Fail
        } else if skew > limits.max_skew_ms {
            Verdict::Warn
        } else {
            Verdict::Ok
        };
        push(
            "clock_skew",
            None,
            verdict,
            format!(
                "node {} is {skew} ms ahead of node {} (± {uncertainty} ms; limit {} ms)",
                ahead.0, behind.0, limits.max_skew_ms
            ),
        );
    }

    // Certificates.
    for m in members {
        for cert in m.report.iter().flat_map(|r| &r.certificates) {
            let (verdict, detail) = certificate_verdict(cert, now_ms, limits.cert_warn_days);
            push("certificate", Some(m.id), verdict, detail);
        }
    }
    checks
}

fn certificate_verdict(cert: &CertificateExpiry, now_ms: u64, warn_days: u64) -> (Verdict, String) {
    let what = format!("{} certificate {}", cert.role, cert.subject);
    if cert.not_after_ms <= now_ms {
        return (Verdict::Fail, format!("{what} has expired"));
    }
    let days = (cert.not_after_ms - now_ms) / DAY_MS;
    let verdict = if days < warn_days {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    (verdict, format!("{what} expires in {days} days"))
}

/// Runs the doctor; fails (exit 1) when any check is not OK.
pub(super) async fn run(
    client: &AdminClient,
    out: Output,
    limits: DoctorArgs,
) -> anyhow::Result<()> {
    let members = observe(client).await?;
    let checks = evaluate(&members, wall_ms(), limits);
    let verdict = checks
        .iter()
        .map(|c| c.verdict)
        .max()
        .unwrap_or(Verdict::Ok);
    let report = Report {
        verdict,
        checks,
        members,
    };
    if out.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut table = Table::new(&["CHECK", "NODE", "RESULT", "DETAIL"]);
        for c in &report.checks {
            table.row(vec![
                c.check.clone(),
                c.node.map_or_else(|| "-".into(), |n| n.to_string()),
                match c.verdict {
                    Verdict::Ok => "ok",
                    Verdict::Warn => "WARN",
                    Verdict::Fail => "FAIL",
                }
                .to_string(),
                c.detail.clone(),
            ]);
        }
        table.print();
    }
    let count = |v| report.checks.iter().filter(|c| c.verdict == v).count();
    match report.verdict {
        Verdict::Ok => Ok(()),
        _ => bail!(
            "the doctor found {} failures and {} warnings",
            count(Verdict::Fail),
            count(Verdict::Warn)
        ),
    }
}

#[cfg(test)]
mod tests;
