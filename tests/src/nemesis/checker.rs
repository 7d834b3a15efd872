//! The checks after healing, Jepsen-style, from the client's side:
//!
//! * every acknowledged write is on every node exactly once, with the
//!   value of the last acknowledged update; an object acknowledged as
//!   deleted is absent; an ambiguous write (the last one of its object,
//!   see [`super::history`]) may or may not have taken effect, nothing else;
//! * every node holds the same state: equal state digests at one applied
//!   index, after a barrier write every node has applied;
//! * no term had two leaders (the [`super::monitor`]'s samples);
//! * no phase's quota'd key was admitted more than its bound
//!   (see [`super::traffic`]).
//!
//! Reads for the checks go to every member, each after it has applied the
//! barrier write, with `consistency=stale`: what that node itself holds.

use super::history::{Kind, Outcome, Record};
use super::monitor::Terms;
use super::run::{PhaseRecord, Run};
use super::traffic::QuotaTally;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A gap between two acknowledged writes longer than this counts as
/// unavailable time.
pub const UNAVAILABLE_GAP: Duration = Duration::from_secs(1);
/// How long every member gets to apply the barrier and agree on a digest.
const CONVERGE_BUDGET: Duration = Duration::from_secs(40);

/// Counts of one phase (writes by the phase they were invoked in).
#[derive(Debug, Clone, Default)]
pub struct PhaseCounts {
    pub attempted: u64,
    pub acked: u64,
    /// Definitely not applied (4xx, connection refused).
    pub failed: u64,
    pub ambiguous: u64,
    /// Acknowledged writes whose effect some node does not show.
    pub lost: u64,
    /// Time within the phase with no write acknowledged anywhere, counting
    /// gaps over [`UNAVAILABLE_GAP`].
    pub unavailable: Duration,
}

/// Everything the checks found.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// By phase index; writes after the last phase count in the last.
    pub phases: Vec<PhaseCounts>,
    /// One line per lost write.
    pub lost: Vec<String>,
    /// Duplicates, values nobody wrote, refusals that contradict the history.
    pub anomalies: Vec<String>,
    /// The applied index and digest every member agreed on, or why not.
    pub digest: Result<(u64, String), String>,
    pub terms: Terms,
    pub quota: BTreeMap<usize, QuotaTally>,
    /// Objects checked, and members read.
    pub objects: usize,
    pub members: Vec<u64>,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict {
            phases: Vec::new(),
            lost: Vec::new(),
            anomalies: Vec::new(),
            digest: Err("not checked".into()),
            terms: Terms::default(),
            quota: BTreeMap::new(),
            objects: 0,
            members: Vec::new(),
        }
    }
}

impl Verdict {
    /// Counts of phase `phase` (the last one for writes after it).
    fn counts(&mut self, phase: usize) -> &mut PhaseCounts {
        let last = self.phases.len() - 1;
        &mut self.phases[phase.min(last)]
    }

    /// Phases whose key was admitted more than its bound.
    pub fn quota_violations(&self) -> Vec<String> {
        self.quota
            .iter()
            .filter(|(_, t)| t.admitted > t.bound())
            .map(|(phase, t)| {
                format!(
                    "phase {phase}: admitted {} > bound {}",
                    t.admitted,
                    t.bound()
                )
            })
            .collect()
    }

    /// Panics, listing every finding, unless all checks passed.
    pub fn assert_clean(&self) {
        let mut problems = Vec::new();
        problems.extend(self.lost.iter().map(|l| format!("LOST {l}")));
        problems.extend(self.anomalies.iter().map(|a| format!("ANOMALY {a}")));
        if let Err(e) = &self.digest {
            problems.push(format!("DIGEST {e}"));
        }
        for (term, leaders) in self.terms.conflicts() {
            problems.push(format!("TWO LEADERS in term {term}: {leaders:?}"));
        }
        problems.extend(
            self.quota_violations()
                .into_iter()
                .map(|q| format!("QUOTA {q}")),
        );
        assert!(
            problems.is_empty(),
            "the checker found:\n{}",
            problems.join("\n")
        );
    }
}

/// Stops the load, heals nothing (the runner did), and checks (see the
/// module doc).
pub fn check(run: &mut Run) -> Verdict {
    let (quota, terms) = run.stop_load();
    let members = run.members.clone();
    run.write(
        "/admin/v1/providers",
        &json!({"name": "nm-barrier", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}),
        Duration::from_secs(45),
    );
    // The member that acknowledged the barrier has applied it: the highest
    // applied index now is at or past it.
    let barrier = members
        .iter()
        .filter_map(|&id| node_state(run, id).map(|(index, _)| index))
        .max()
        .unwrap_or_else(|| run.cluster.fail("no member reports its state"));
    let digest = converge(run, &members, barrier);
    let records = run.history.records();
    let views: BTreeMap<u64, Objects> = members
        .iter()
        .map(|&id| (id, read_objects(run, id)))
        .collect();
    let mut verdict = Verdict {
        phases: vec![PhaseCounts::default(); run.phases.len().max(1)],
        digest,
        terms,
        quota,
        members,
        ..Verdict::default()
    };
    judge_objects(&records, &views, &mut verdict);
    count_phases(&records, &run.phases, &mut verdict);
    verdict
}

/// `GET /admin/v1/node/state` on node `id`: (applied index, digest).
fn node_state(run: &Run, id: u64) -> Option<(u64, String)> {
    let body: Value = run
        .http()
        .get(format!("{}/admin/v1/node/state", run.cluster.admin_url(id)))
        .bearer_auth(run.cluster.token())
        .send()
        .ok()?
        .json()
        .ok()?;
    Some((
        body["applied_index"].as_u64()?,
        body["digest"].as_str()?.to_string(),
    ))
}

/// Polls every member's (index, digest) until all were seen at one index
/// at or past `barrier` with one digest. A node publishes its state and
/// then its index: a read between the two may pair a state with the index
/// before it, so one mismatch alone is not a verdict; mismatches at two
/// distinct indexes are.
fn converge(run: &Run, members: &[u64], barrier: u64) -> Result<(u64, String), String> {
    let mut seen: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    let mut mismatches: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    let mut agreed = None;
    let _ = run.cluster.deadline().within(CONVERGE_BUDGET).poll("", || {
        for &id in members {
            if let Some((index, digest)) = node_state(run, id) {
                seen.entry(index).or_default().insert(id, digest);
            }
        }
        for (index, digests) in seen.range(barrier..).rev() {
            if digests.len() < members.len() {
                continue;
            }
            let distinct: BTreeSet<&String> = digests.values().collect();
            if distinct.len() == 1 {
                agreed = Some((*index, digests.values().next().cloned().unwrap_or_default()));
                return true;
            }
            mismatches.insert(*index, digests.clone());
        }
        mismatches.len() >= 2
    });
    match agreed {
        Some(agreed) => Ok(agreed),
        None if mismatches.is_empty() => Err(format!(
            "no applied index at or past the barrier ({barrier}) was seen on every member within {CONVERGE_BUDGET:?}"
        )),
        None => Err(format!("states differ at equal applied indexes: {mismatches:?}")),
    }
}

/// The workload's objects as one node holds them.
#[derive(Debug, Default)]
struct Objects {
    /// Route name → weights of every route by that name (one, or none).
    routes: BTreeMap<String, Vec<u32>>,
    /// Key name → enabled (1/0) of every key by that name.
    keys: BTreeMap<String, Vec<u32>>,
}

fn read_objects(run: &Run, id: u64) -> Objects {
    let get = |path: &str| -> Value {
        let url = format!("{}{path}?consistency=stale", run.cluster.admin_url(id));
        let mut body = Value::Null;
        run.cluster.wait_until(
            Duration::from_secs(20),
            format!("node {id}: GET {path}"),
            || {
                let answer = run
                    .http()
                    .get(&url)
                    .bearer_auth(run.cluster.token())
                    .send()
                    .and_then(|r| r.error_for_status())
                    .and_then(|r| r.json::<Value>());
                match answer {
                    Ok(value) => {
                        body = value;
                        true
                    }
                    Err(_) => false,
                }
            },
        );
        body
    };
    let mut objects = Objects::default();
    for route in get("/admin/v1/routes")["routes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(weight)) = (
            route["name"].as_str(),
            route["deployments"][0]["weight"].as_u64(),
        ) else {
            continue;
        };
        let weight = u32::try_from(weight).unwrap_or(u32::MAX);
        objects
            .routes
            .entry(name.to_string())
            .or_default()
            .push(weight);
    }
    for key in get("/admin/v1/keys")["keys"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(enabled)) = (key["name"].as_str(), key["enabled"].as_bool()) else {
            continue;
        };
        objects
            .keys
            .entry(name.to_string())
            .or_default()
            .push(u32::from(enabled));
    }
    objects
}

/// What an object's history allows its final state to be.
#[derive(Debug)]
struct Allowed {
    kind: Kind,
    /// After the last acknowledged write (`None`: absent).
    acked: Option<u32>,
    /// The phase of that write.
    acked_phase: Option<usize>,
    /// After the trailing ambiguous write, if there is one.
    ambiguous: Option<Option<u32>>,
}

impl Allowed {
    fn from(records: &[&Record], verdict: &mut Verdict) -> Allowed {
        let mut allowed = Allowed {
            kind: records[0].kind,
            acked: None,
            acked_phase: None,
            ambiguous: None,
        };
        for r in records {
            match &r.outcome {
                Outcome::Acked => {
                    allowed.acked = r.op.effect();
                    allowed.acked_phase = Some(r.phase);
                }
                Outcome::Ambiguous(_) => allowed.ambiguous = Some(r.op.effect()),
                Outcome::Failed(why) if why.starts_with("not sent") => {}
                Outcome::Failed(why) => {
                    let phase = allowed.acked_phase.unwrap_or(r.phase);
                    let line = format!(
                        "{} ({:?} through node {}, phase {}): refused with {why}; acknowledged state was {:?}",
                        r.object, r.op, r.node, r.phase, allowed.acked
                    );
                    if why.starts_with("404") && allowed.acked.is_some() {
                        verdict.lost.push(line);
                        verdict.counts(phase).lost += 1;
                    } else {
                        verdict.anomalies.push(line);
                    }
                }
            }
        }
        allowed
    }

    fn permits(&self, observed: Option<u32>) -> bool {
        observed == self.acked || self.ambiguous == Some(observed)
    }
}

fn judge_objects(records: &[Record], views: &BTreeMap<u64, Objects>, verdict: &mut Verdict) {
    let mut by_object: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_object.entry(&r.object).or_default().push(r);
    }
    verdict.objects = by_object.len();
    for (object, history) in by_object {
        let allowed = Allowed::from(&history, verdict);
        let mut wrong = Vec::new();
        for (node, view) in views {
            let held = match allowed.kind {
                Kind::Route => view.routes.get(object),
                Kind::Key => view.keys.get(object),
            };
            let held: &[u32] = held.map(Vec::as_slice).unwrap_or(&[]);
            if held.len() > 1 {
                verdict.anomalies.push(format!(
                    "{object}: {} copies on node {node}: {held:?}",
                    held.len()
                ));
            }
            let observed = held.first().copied();
            if !allowed.permits(observed) {
                wrong.push(format!("node {node} holds {observed:?}"));
            }
        }
        if wrong.is_empty() {
            continue;
        }
        let line = format!(
            "{object}: acknowledged {:?}{}, but {}; history: {:?}",
            allowed.acked,
            allowed
                .ambiguous
                .map(|a| format!(" (or {a:?}, ambiguous)"))
                .unwrap_or_default(),
            wrong.join(", "),
            history
                .iter()
                .map(|r| (r.op, &r.outcome, r.node, r.phase))
                .collect::<Vec<_>>()
        );
        match allowed.acked_phase {
            Some(phase) => {
                verdict.counts(phase).lost += 1;
                verdict.lost.push(line);
            }
            // Never acknowledged, yet not what the ambiguous write did.
            None => verdict.anomalies.push(line),
        }
    }
}

fn count_phases(records: &[Record], phases: &[PhaseRecord], verdict: &mut Verdict) {
    let last = verdict.phases.len() - 1;
    for r in records {
        let counts = &mut verdict.phases[r.phase.min(last)];
        counts.attempted += 1;
        match r.outcome {
            Outcome::Acked => counts.acked += 1,
            Outcome::Failed(_) => counts.failed += 1,
            Outcome::Ambiguous(_) => counts.ambiguous += 1,
        }
    }
    let mut acks: Vec<Instant> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .map(|r| r.completed)
        .collect();
    acks.sort();
    for (i, phase) in phases.iter().enumerate() {
        let from = phase.started;
        let to = phases
            .get(i + 1)
            .map_or(phase.healed + phase.recovery, |p| p.started);
        verdict.phases[i].unavailable = unavailable(&acks, from, to);
    }
}

/// Sum of the gaps over [`UNAVAILABLE_GAP`] between acknowledgements
/// (sorted) within `[from, to]`, counting its ends as boundaries.
fn unavailable(acks: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut total = Duration::ZERO;
    let mut previous = from;
    for &at in acks.iter().filter(|&&a| a > from && a < to).chain([&to]) {
        let gap = at.saturating_duration_since(previous);
        if gap > UNAVAILABLE_GAP {
            total += gap;
        }
        previous = at;
    }
    total
}

#[cfg(test)]
mod tests;
