//! What a node reports about itself: cluster status, readiness, and the
//! durability watermark it keeps on disk.

use super::{index_of, state_name, Inner};
use crate::api::{ClusterStatus, MemberRole, MemberStatus, Readiness};
use crate::types::NodeId;
use openraft::ServerState;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Inner {
    /// Every second, records how far the log is committed and on disk (see
    /// `DataDir::verify_store`).
    pub(super) async fn keep_watermark(self: Arc<Self>) {
        let mut written = None;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            self.write_watermark(&mut written);
        }
    }

    pub(super) fn write_watermark(&self, written: &mut Option<u64>) {
        let Some(durable) = self.log.durable_committed() else {
            return;
        };
        if written.is_some_and(|w| w >= durable) {
            return;
        }
        match self.data_dir.write_watermark(durable) {
            Ok(()) => *written = Some(durable),
            Err(e) => tracing::warn!(error = %e, "cannot write the durability watermark"),
        }
    }

    pub(super) fn status(&self) -> ClusterStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                id: *id,
                role: if voters.contains(id) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                },
                addresses: node.clone(),
                matched_index: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map(|l| l.index),
            })
            .collect();
        ClusterStatus {
            cluster_id: self.cluster_id.clone(),
            node_id: self.id,
            leader_id: m.current_leader,
            term: m.current_term,
            state: state_name(m.state).to_string(),
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            log_entries: self.log.len() as u64,
            members,
        }
    }

    pub(super) fn readiness(&self) -> Readiness {
        let m = self.metrics();
        let applied = self.published.applied_index();
        let commit = match (
            index_of(&self.committed_hint),
            index_of(&self.leader_commit_heard),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let lease_ms = self.timing.election_timeout_max_ms;
        // A follower cut off from its leader does not campaign without a
        // majority (see `elections.rs`), so it keeps naming the leader it
        // last heard: its silence is what says it is cut off. Twice the
        // longest election timeout: a failover elsewhere never trips it.
        let silence = self
            .elections
            .leader_silence(Instant::now())
            .filter(|s| *s > Duration::from_millis(lease_ms * 2));
        let reason = if self.stopping.load(Ordering::Acquire) {
            Some("shutting down".to_string())
        } else if self.warming_up.load(Ordering::Acquire) {
            Some("warming up".to_string())
        } else if m.current_leader.is_none() {
            Some("no leader known".to_string())
        } else if let (true, Some(silence)) = (m.state != ServerState::Leader, silence) {
            Some(format!(
                "no word from leader {} for {} ms",
                m.current_leader.unwrap_or_default(),
                silence.as_millis()
            ))
        } else if m.state == ServerState::Leader
            && m.millis_since_quorum_ack.is_none_or(|ms| ms > lease_ms)
        {
            // A node restarted from a leader's vote believes it leads until a
            // peer says otherwise; it is ready once a quorum has confirmed it.
            Some("leadership not yet confirmed by a quorum".to_string())
        } else if !self.is_member() {
            Some("not a member of the cluster yet".to_string())
        } else if commit.is_none() {
            Some("has not heard a commit index yet".to_string())
        } else if applied < commit {
            Some(format!("applied {applied:?} of committed {commit:?}"))
        } else if !self.leader_reached.load(Ordering::Acquire) {
            Some("has not yet reached the leader with a call of its own".to_string())
        } else {
            None
        };
        Readiness {
            ready: reason.is_none(),
            leader_id: m.current_leader,
            applied_index: applied,
            leader_commit_index: commit,
            reason,
        }
    }
}
