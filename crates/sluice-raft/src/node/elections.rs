//! When this node campaigns, and when it sends heartbeats: Sluice's failure
//! detector on top of openraft, whose own election timer and heartbeat
//! ticks are off (see `node/timing.rs`).
//!
//! * **Heartbeats**: while this node leads, it asks openraft for a round of
//!   heartbeats every `heartbeat_interval_ms`, on time.
//! * **Hearing the leader**: every AppendEntries from a leader whose vote is
//!   at least this node's own (heartbeat or entries) counts, when it arrives,
//!   before its entries are flushed. Granting a vote or a pre-vote restarts
//!   the election timer too, without counting as hearing a leader: the
//!   candidate gets a head start instead of a rival campaign that would
//!   split the vote.
//! * **Silence** is counted only while this node runs (`silence.rs`): a node
//!   that was not scheduled for a while has not been listening either, and
//!   must not take its own stall for the leader's.
//! * **Election timer**: once nothing was heard for a random time between
//!   `election_timeout_min_ms` and `election_timeout_max_ms` (drawn afresh for
//!   every attempt, so two followers that lost the same leader rarely try at
//!   the same moment), the node runs a **pre-vote**: it asks every other voter
//!   whether it would vote for it. A voter says yes only if it does not lead,
//!   has not heard a leader within the leader lease, and the candidate's log
//!   is at least as up to date as its own; if it runs a pre-vote of its own
//!   at that moment, only to a candidate with a longer log or, on equal logs,
//!   a lower id (and then it stands aside itself). A pre-vote changes nothing
//!   on either side: no term moves.
//! * **Campaign**: only with a majority of yes (of each half of a joint
//!   membership) does the node call openraft's election, which bumps the term
//!   and asks for real votes under openraft's own rules (including its lease
//!   check). Otherwise it waits a fresh timeout and tries again.
//!
//! So a node that misses heartbeats while the others still hear the leader
//! (a paused process, a cut link, a starved CPU) never bumps its term, and a
//! leader the majority still hears is never unseated. Raft's safety is
//! openraft's: this module only decides when to ask for an election.
//!
//! # Layout
//! * `silence`: [`Silence`], the clock of time without the leader.

mod silence;

use super::Inner;
use crate::rpc::{PreVoteRequest, Request, Response};
use crate::tls::node_server_name;
use crate::types::{LogId, NodeId, Vote};
use openraft::ServerState;
use rand::Rng;
use silence::Silence;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the detector knows about the leader's liveness, shared by the RPC
/// server (which hears the leader) and the detector task.
pub(crate) struct Elections {
    /// Time without the leader, counted while this node ran.
    silence: Mutex<Silence>,
    /// While set and in the future, this node does not campaign on its
    /// own (a leadership transfer is under way).
    hold_until: Mutex<Option<Instant>>,
    /// Set while this node hands its leadership over: no heartbeats.
    heartbeats_paused: AtomicBool,
    /// Set while this node runs a pre-vote of its own.
    pre_voting: AtomicBool,
    /// Pre-votes this node granted, in all.
    grants: AtomicU64,
    /// `sluice_raft_election_attempts_total`, by outcome: `campaigned` (a
    /// majority agreed the leader is gone), `no_majority` (it still hears
    /// one, or did not answer: an election the pre-vote prevented) or
    /// `stood_aside` (this node granted another candidate meanwhile).
    attempts: prometheus::IntCounterVec,
}

impl Elections {
    /// `step`: how often the detector's clock advances; a gap of more than
    /// two steps is this node's own stall and is not counted as silence.
    pub(crate) fn new(now: Instant, step: Duration) -> Self {
        let elections = Elections {
            silence: Mutex::new(Silence::new(now, step * 2)),
            hold_until: Mutex::new(None),
            heartbeats_paused: AtomicBool::new(false),
            pre_voting: AtomicBool::new(false),
            grants: AtomicU64::new(0),
            attempts: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "sluice_raft_election_attempts_total",
                    "Times this node's election timer ran out while it followed, by outcome: \
                     campaigned (a majority of voters agreed the leader is gone), no_majority \
                     (they still hear a leader or did not answer; no election was started) or \
                     stood_aside (it granted another candidate's pre-vote meanwhile).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        };
        // Both outcomes are scraped from the start, at 0.
        for outcome in ["campaigned", "no_majority", "stood_aside"] {
            elections.attempts.with_label_values(&[outcome]);
        }
        elections
    }

    /// The election attempt counters (for the node's metrics collector).
    pub(crate) fn attempts(&self) -> &prometheus::IntCounterVec {
        &self.attempts
    }

    fn silence(&self) -> std::sync::MutexGuard<'_, Silence> {
        // Durations only: a poisoned clock is still a clock.
        self.silence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A leader was heard at `now`: it is alive, and the timer restarts.
    pub(crate) fn heard_leader(&self, now: Instant) {
        self.silence().heard_leader(now);
    }

    /// Restarts the election timer (a vote granted, an attempt made).
    pub(crate) fn reset_timer(&self, now: Instant) {
        self.silence().reset_timer(now);
    }

    /// How long this node has gone without hearing a leader, as of `now`
    /// (`None`: it never heard one since it started).
    pub(crate) fn leader_silence(&self, now: Instant) -> Option<Duration> {
        self.silence().since_leader(now)
    }

    /// This node's own stalls so far (see `elections/silence.rs`).
    pub(crate) fn stalled(&self) -> Duration {
        self.silence().stalled()
    }

    /// Whether a leader was heard within `lease` before `now`.
    pub(crate) fn hears_leader(&self, now: Instant, lease: Duration) -> bool {
        self.leader_silence(now)
            .is_some_and(|silent| silent <= lease)
    }

    /// Keeps this node from campaigning on its own until `until`.
    pub(crate) fn hold(&self, until: Instant) {
        *self.hold_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    /// Ends a hold early.
    pub(crate) fn release(&self) {
        *self.hold_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn held(&self, now: Instant) -> bool {
        self.hold_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| until > now)
    }

    pub(crate) fn pause_heartbeats(&self, paused: bool) {
        self.heartbeats_paused.store(paused, Ordering::Release);
    }
}

/// The pre-vote rule, as the asked voter applies it: no to a candidate
/// while this node leads or hears its leader, or if the candidate's log is
/// behind this node's. `own_pre_vote`: this node's id while it runs a
/// pre-vote of its own; then, of two nodes asking at once, only the one
/// with the longer log (on equal logs, the lower id) gets the other's yes,
/// so they do not both campaign and split the vote.
pub(crate) fn grants_pre_vote(
    leads: bool,
    hears_leader: bool,
    candidate: (NodeId, Option<&LogId>),
    own_log: Option<&LogId>,
    own_pre_vote: Option<NodeId>,
) -> bool {
    let (candidate_id, candidate_log) = candidate;
    if leads || hears_leader || candidate_log < own_log {
        return false;
    }
    match own_pre_vote {
        None => true,
        Some(me) => candidate_log > own_log || candidate_id < me,
    }
}

/// Whether `granted` holds a majority of every voter set of `joint` (one
/// set, or two during a membership change).
pub(crate) fn is_quorum(joint: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    joint
        .iter()
        .all(|voters| voters.intersection(granted).count() * 2 > voters.len())
}

impl Inner {
    /// An AppendEntries carrying `vote` arrived: if it comes from a leader
    /// at least as new as the one this node knows, that leader is alive.
    pub(crate) fn heard_append_entries(&self, vote: &Vote) {
        if !vote.is_committed() {
            return;
        }
        let current = self.raft.metrics().borrow().vote;
        if *vote >= current {
            self.elections.heard_leader(Instant::now());
        }
    }

    /// Asks openraft for a round of heartbeats every interval while this
    /// node leads.
    pub(super) async fn send_heartbeats(self: Arc<Self>) {
        let mut ticks =
            tokio::time::interval(Duration::from_millis(self.timing.heartbeat_interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A round this late (the process or its runtime did not run the
        // task) eats half the followers' lease: worth a warning, it is how a
        // starved leader loses its followers.
        let late = Duration::from_millis(self.timing.leader_lease_ms() / 2);
        loop {
            let due = tokio::select! {
                _ = self.stop.cancelled() => return,
                due = ticks.tick() => due.into_std(),
            };
            let leads = self.raft.metrics().borrow().state == ServerState::Leader;
            if !leads || self.elections.heartbeats_paused.load(Ordering::Acquire) {
                continue;
            }
            let ran_late = Instant::now().saturating_duration_since(due);
            if ran_late > late {
                tracing::warn!(
                    late_ms = ran_late.as_millis() as u64,
                    "a heartbeat round went out late"
                );
            }
            // Queued for openraft's core; returns at once.
            if let Err(e) = self.raft.trigger().heartbeat().await {
                tracing::debug!(error = %e, "raft stopped; no more heartbeats");
                return;
            }
        }
    }

    /// The failure detector: advances the silence clock every step, and
    /// once the leader has been silent for a fresh random election timeout
    /// tries a pre-vote and, with a majority, an election.
    pub(super) async fn watch_leader(self: Arc<Self>) {
        let (min, max) = (
            self.timing.election_timeout_min_ms,
            self.timing
                .election_timeout_max_ms
                .max(self.timing.election_timeout_min_ms + 1),
        );
        let mut steps = tokio::time::interval(self.timing.detector_step());
        steps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut timeout = Duration::from_millis(rand::thread_rng().gen_range(min..max));
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = steps.tick() => {}
            }
            let now = Instant::now();
            let silent = self.elections.silence().tick(now);
            if silent < timeout {
                continue;
            }
            self.elections.reset_timer(now);
            timeout = Duration::from_millis(rand::thread_rng().gen_range(min..max));
            if let Err(e) = self.try_campaign(silent).await {
                tracing::error!(error = %e, "raft stopped; this node will not campaign any more");
                return;
            }
        }
    }

    /// One attempt: campaign if this node is a voter without a leader, not
    /// held, and a majority of voters agree the leader is gone. An error
    /// means openraft has stopped (a storage failure, shutdown).
    async fn try_campaign(
        self: &Arc<Self>,
        silent: Duration,
    ) -> Result<(), openraft::error::Fatal<NodeId>> {
        let m = self.metrics();
        if let Err(e) = &m.running_state {
            return Err(e.clone());
        }
        if m.state == ServerState::Leader || self.elections.held(Instant::now()) {
            return Ok(());
        }
        let membership = m.membership_config.membership();
        if !membership.voter_ids().any(|v| v == self.id) {
            return Ok(());
        }
        let joint = membership.get_joint_config().clone();
        let peers: Vec<(NodeId, String)> = membership
            .voter_ids()
            .filter(|v| *v != self.id)
            .filter_map(|v| membership.get_node(&v).map(|n| (v, n.raft_addr.clone())))
            .collect();
        let grants_before = self.elections.grants.load(Ordering::Acquire);
        let granted = if peers.is_empty() {
            BTreeSet::from([self.id])
        } else {
            let last_log_id = self.raft.data_metrics().borrow().last_log;
            self.elections.pre_voting.store(true, Ordering::Release);
            let granted = self.pre_vote(peers, &joint, last_log_id).await;
            self.elections.pre_voting.store(false, Ordering::Release);
            granted
        };
        if self.elections.grants.load(Ordering::Acquire) != grants_before {
            // Another candidate asked meanwhile and got this node's yes: it
            // is campaigning; a campaign here too would split the vote.
            self.elections
                .attempts
                .with_label_values(&["stood_aside"])
                .inc();
            tracing::debug!(
                silent_ms = silent.as_millis() as u64,
                "granted another candidate's pre-vote meanwhile; not campaigning"
            );
            return Ok(());
        }
        if !is_quorum(&joint, &granted) {
            self.elections
                .attempts
                .with_label_values(&["no_majority"])
                .inc();
            tracing::debug!(
                silent_ms = silent.as_millis() as u64,
                granted = ?granted,
                "no leader heard, but no majority agrees it is gone; not campaigning"
            );
            return Ok(());
        }
        self.elections
            .attempts
            .with_label_values(&["campaigned"])
            .inc();
        tracing::info!(
            silent_ms = silent.as_millis() as u64,
            term = m.current_term + 1,
            granted = ?granted,
            "no leader heard and a majority agrees: campaigning"
        );
        self.raft.trigger().elect().await
    }

    /// Asks every peer for a pre-vote; returns who granted it (this node
    /// included) once a majority did, every peer answered, or the round's
    /// time ran out.
    async fn pre_vote(
        self: &Arc<Self>,
        peers: Vec<(NodeId, String)>,
        joint: &[BTreeSet<NodeId>],
        last_log_id: Option<LogId>,
    ) -> BTreeSet<NodeId> {
        let timeout = self.timing.pre_vote_timeout();
        let mut granted = BTreeSet::from([self.id]);
        let mut calls = tokio::task::JoinSet::new();
        for (id, addr) in peers {
            let inner = Arc::clone(self);
            let request = Request::PreVote(PreVoteRequest {
                candidate: self.id,
                last_log_id,
            });
            calls.spawn(async move {
                let answer = inner
                    .peers
                    .call(&addr, &node_server_name(id), &request, timeout)
                    .await;
                let yes = match answer {
                    Ok(Response::PreVote { granted }) => granted,
                    // A node of a version before pre-votes cannot read the
                    // request. It still applies openraft's lease check to
                    // the real vote, so its silence is not a refusal.
                    Err(crate::network::CallError::Refused { .. }) => true,
                    Ok(_) | Err(_) => false,
                };
                (id, yes)
            });
        }
        // The calls end by their own timeout; dropping the set aborts the
        // ones still running once a majority is there.
        while let Some(answer) = calls.join_next().await {
            if let Ok((id, true)) = answer {
                granted.insert(id);
                if is_quorum(joint, &granted) {
                    break;
                }
            }
        }
        granted
    }

    /// A peer asks whether this node would vote for it.
    pub(crate) fn answer_pre_vote(&self, request: &PreVoteRequest) -> bool {
        let leads = self.raft.metrics().borrow().state == ServerState::Leader;
        let lease = Duration::from_millis(self.timing.leader_lease_ms());
        let hears_leader = self.elections.hears_leader(Instant::now(), lease);
        let own_log = self.raft.data_metrics().borrow().last_log;
        let pre_voting = self.elections.pre_voting.load(Ordering::Acquire);
        let granted = grants_pre_vote(
            leads,
            hears_leader,
            (request.candidate, request.last_log_id.as_ref()),
            own_log.as_ref(),
            pre_voting.then_some(self.id),
        );
        if granted {
            // Give the asker a head start: it campaigns a moment from now,
            // and a campaign of this node's own at the same time would
            // split the vote and cost both another timeout.
            self.elections.grants.fetch_add(1, Ordering::AcqRel);
            self.elections.reset_timer(Instant::now());
        }
        tracing::debug!(
            candidate = request.candidate,
            granted,
            leads,
            hears_leader,
            "pre-vote"
        );
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn grants(hears: bool, candidate: Option<LogId>, own: Option<LogId>) -> bool {
        grants_pre_vote(false, hears, (2, candidate.as_ref()), own.as_ref(), None)
    }

    #[test]
    fn a_voter_that_still_hears_its_leader_refuses_a_pre_vote() {
        assert!(!grants(true, log(2, 10), log(2, 10)));
        // The leader itself refuses too.
        assert!(!grants_pre_vote(
            true,
            false,
            (2, log(2, 10).as_ref()),
            log(2, 10).as_ref(),
            None
        ));
        assert!(grants(false, log(2, 10), log(2, 10)));
    }

    #[test]
    fn a_candidate_behind_this_voters_log_is_refused() {
        assert!(!grants(false, log(2, 9), log(2, 10)));
        // A later term beats a longer log of an older term.
        assert!(grants(false, log(3, 5), log(2, 10)));
        assert!(!grants(false, None, log(1, 1)));
        assert!(grants(false, None, None));
    }

    #[test]
    fn of_two_nodes_asking_at_once_only_one_gets_the_others_yes() {
        let same = log(2, 10);
        // Nodes 1 and 3 both run a pre-vote: 3 says yes to 1, 1 says no to 3.
        assert!(grants_pre_vote(
            false,
            false,
            (1, same.as_ref()),
            same.as_ref(),
            Some(3)
        ));
        assert!(!grants_pre_vote(
            false,
            false,
            (3, same.as_ref()),
            same.as_ref(),
            Some(1)
        ));
        // A longer log wins whatever the ids.
        let longer = log(2, 11);
        assert!(grants_pre_vote(
            false,
            false,
            (3, longer.as_ref()),
            same.as_ref(),
            Some(1)
        ));
    }

    #[test]
    fn a_quorum_needs_a_majority_of_each_joint_half() {
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<_>>();
        let one = vec![set(&[1, 2, 3])];
        assert!(!is_quorum(&one, &set(&[1])));
        assert!(is_quorum(&one, &set(&[1, 3])));
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!is_quorum(&joint, &set(&[1, 2])));
        assert!(is_quorum(&joint, &set(&[1, 3, 4])));
        assert!(is_quorum(&[set(&[1])], &set(&[1])));
    }

    #[test]
    fn the_leader_is_heard_within_the_lease_only() {
        let start = Instant::now();
        let step = Duration::from_millis(10);
        let elections = Elections::new(start, step);
        let lease = Duration::from_millis(250);
        assert!(!elections.hears_leader(start, lease), "never heard");
        elections.heard_leader(start);
        let mut now = start;
        for _ in 0..25 {
            now += step;
            elections.silence().tick(now);
        }
        assert!(elections.hears_leader(now, lease));
        now += step;
        elections.silence().tick(now);
        assert!(!elections.hears_leader(now, lease));
    }

    #[test]
    fn a_hold_keeps_the_node_from_campaigning_until_it_ends_or_is_released() {
        let start = Instant::now();
        let elections = Elections::new(start, Duration::from_millis(10));
        assert!(!elections.held(start));
        elections.hold(start + Duration::from_secs(1));
        assert!(elections.held(start + Duration::from_millis(999)));
        assert!(!elections.held(start + Duration::from_secs(1)));
        elections.release();
        assert!(!elections.held(start));
    }
}
